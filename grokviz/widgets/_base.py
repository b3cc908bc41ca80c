"""The base class of grokviz's anywidgets: shared traits, the palette, the bundle, HTML export.

Every grokviz view is rendered by one bundle, ``grokviz/static/widgets.js`` (built from ``js/``),
which picks the view from the ``_view`` trait. Views share a ``theme`` trait, a palette (one colour
per group, :mod:`grokviz.widgets.palette`) and, where they show one checkpoint at a time,
``checkpoint`` / ``checkpoints`` traits that :func:`grokviz.widgets.link` ties together.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import anywidget
import traitlets as t

from grokviz.errors import InputError
from grokviz.widgets.palette import Palette, coerce, palette_for

STATIC = Path(__file__).resolve().parent.parent / "static"

__all__ = ["STATIC", "GrokvizWidget", "html_page", "write_html"]


class GrokvizWidget(anywidget.AnyWidget):
    """Base class of grokviz's widgets (not used directly)."""

    _esm = STATIC / "widgets.js"
    _css = STATIC / "widgets.css"

    _view = t.Unicode("").tag(sync=True)
    """str: which view of the bundle renders this widget (js/src/index.ts)."""

    theme = t.Enum(["auto", "light", "dark"], default_value="auto").tag(sync=True)
    """str: ``"auto"`` (follow JupyterLab / the host page), ``"light"`` or ``"dark"``. Default ``"auto"``."""

    checkpoints = t.List(t.Unicode(), read_only=True).tag(sync=True)
    """list[str]: the checkpoints the data covers, in training order (set from the data)."""

    checkpoint = t.Unicode(None, allow_none=True).tag(sync=True)
    """str | None: the checkpoint shown; one of ``checkpoints``. Default: the last one."""

    _palette = t.Dict(allow_none=True, default_value=None).tag(sync=True)
    """dict | None: the palette's colours for this view's groups (``Palette.to_json``)."""

    # Set by _use_palette: the groups this view draws, and where its palette came from
    # ("explicit": given by the user, "samples": a samples table's column, "groups": its own data).
    _palette_groups: list[str] | None = None
    _palette_source = "groups"
    _palette_obj: Palette | None = None
    # The palette the view was given (or linked to since), kept when later data arrives.
    _given_palette: Palette | Sequence[str] | None = None

    @property
    def palette(self) -> Palette:
        """The :class:`~grokviz.widgets.Palette` colouring this view's groups (shared by links).

        Assign a palette to recolour the view; it is extended to the view's groups if needed.
        """
        if self._palette_obj is None:
            self._palette_obj = Palette.from_groups(self._palette_groups or [])
        return self._palette_obj

    @palette.setter
    def palette(self, value: Palette | Sequence[str]) -> None:
        chosen = coerce(value)
        if chosen is None:
            msg = "palette must be a grokviz.widgets.Palette or a list of groups in hue order"
            raise InputError(msg)
        groups = self._palette_groups or []
        self._palette_obj = chosen.covering(groups)
        if hasattr(self, "_given_palette"):
            # Later data (a new checkpoint, an update) keeps this palette, not the first one.
            self._given_palette = self._palette_obj
        self._palette = self._palette_obj.to_json()

    def _use_palette(
        self,
        given: Palette | Sequence[str] | None,
        groups: Iterable[str],
        *,
        samples: Any = None,
        by: str | None = None,
    ) -> None:
        """Colour ``groups``: with the given palette, else one from ``samples[by]``, else own."""
        names = [str(g) for g in dict.fromkeys(groups)]
        self._palette_groups = names
        explicit = coerce(given)
        if explicit is not None:
            self._palette_source = "explicit"
        elif samples is not None and by:
            self._palette_source = "samples"
        else:
            self._palette_source = "groups"
        if explicit is None and self._palette_obj is not None:
            explicit = self._palette_obj  # keep the palette a link or the user gave
        self._palette_obj = palette_for(explicit, names, samples=samples, by=by)
        self._palette = self._palette_obj.to_json()

    def _prepare_export(self) -> None:
        """Load whatever the view would otherwise ask the kernel for (HTML has no kernel)."""

    def _export_children(self) -> list[Any]:
        """Widgets this view shows inside itself, exported with it."""
        return []

    @t.validate("checkpoint")
    def _check_checkpoint(self, proposal: dict[str, Any]) -> str | None:
        value = proposal["value"]
        known = list(self.checkpoints)
        if value is not None and known and value not in known:
            msg = f"checkpoint {value!r} is not in this widget's data; choose one of {known}"
            raise t.TraitError(msg)
        return value

    def to_html(self, path: str | os.PathLike[str], *, title: str | None = None) -> Path:
        """Write a standalone HTML page showing this widget, working offline.

        The page carries the widget's state and inlines RequireJS, the Jupyter widgets HTML
        manager and anywidget's front end, so it needs no kernel, no network and no CDN.
        Interactions that need Python (loading other checkpoints' data) are limited to what the
        state holds.

        Parameters
        ----------
        path
            Where to write the ``.html`` file.
        title
            The page title; defaults to the widget's class name.

        Returns
        -------
        pathlib.Path
            The written file.

        Examples
        --------
        >>> diagram.to_html("pathways.html")  # doctest: +SKIP
        PosixPath('pathways.html')
        """
        return write_html([self], path, title=title or type(self).__name__)

    def link(self, *views: Any) -> Any:
        """Link this view to ``views``: one checkpoint, pathway definition and palette.

        See :func:`grokviz.widgets.link`. Returns ``self``.
        """
        from grokviz.widgets._links import link

        link(self, *views)
        return self


_PLACEHOLDER = "grokviz-inline-widget-manager"


def _script(code: str) -> str:
    # "</script" inside inlined code would end the element early; "<\/" means the same to JS.
    return "<script>" + code.replace("</script", "<\\/script") + "</script>"


@cache
def _manager_scripts() -> str:
    """RequireJS + anywidget's AMD front end + the HTML widget manager, as inline scripts."""
    import anywidget as aw

    require = gzip.decompress((STATIC / "require.js.gz").read_bytes()).decode()
    manager = gzip.decompress((STATIC / "html-manager-embed-amd.js.gz").read_bytes()).decode()
    front = Path(aw.__file__).parent / "nbextension" / "index.js"
    code = front.read_text(encoding="utf-8")
    # anywidget ships an anonymous AMD module; the HTML manager asks RequireJS for "anywidget".
    anonymous = 'define(["@jupyter-widgets/base"]'
    if anonymous not in code:
        msg = (
            f"anywidget {aw.__version__}'s front end at {front} no longer starts with "
            f"{anonymous!r}; offline HTML export needs updating for this anywidget version"
        )
        raise RuntimeError(msg)
    code = code.replace(anonymous, 'define("anywidget", ["@jupyter-widgets/base"]', 1)
    return "\n".join(_script(part) for part in (require, code, manager))


def _exported(widgets: Sequence[Any]) -> tuple[list[Any], list[Any]]:
    """``widgets`` and every grokviz view shown inside them, plus browser links between those.

    Returns the widgets and, apart, the ``ipywidgets.jslink`` links made for the export from the
    :class:`~grokviz.widgets._links.BrowserLink` pairs whose two ends are both exported: the
    caller closes them once the page is written (a live session keeps its links in the kernel).
    """
    from grokviz.widgets._links import BrowserLink

    seen: dict[str, Any] = {}
    todo = list(widgets)
    while todo:
        widget = todo.pop(0)
        key = getattr(widget, "model_id", None) or str(id(widget))
        if key in seen:
            continue
        seen[key] = widget
        if isinstance(widget, GrokvizWidget):
            todo.extend(widget._export_children())
        todo.extend(getattr(widget, "children", ()) or ())

    out = list(seen.values())
    links: list[Any] = []
    for widget in list(out):
        for item in getattr(widget, "_grokviz_links", None) or []:
            if not isinstance(item, BrowserLink):
                continue  # a kernel-side link: the page has no kernel to run it
            ends = (item.source[0], item.target[0])
            if all((getattr(end, "model_id", None) or str(id(end))) in seen for end in ends):
                links.append(item.jslink())
    return out, links


def html_page(
    widgets: Sequence[Any],
    *,
    title: str = "grokviz",
    before: str = "",
    between: Sequence[str] = (),
    after: str = "",
) -> str:
    """A standalone, offline HTML page showing ``widgets``, with HTML around them.

    ``before`` goes above the first widget, ``between[i]`` above widget ``i + 1`` and ``after``
    below the last; each widget is prepared for a page without a kernel first (every checkpoint
    it can show is loaded), and views linked with :func:`grokviz.widgets.link` stay linked in the
    page (by ``jslink`` links made for it).
    """
    from ipywidgets.embed import dependency_state, embed_snippet

    views = list(widgets)
    exported, links = _exported(views)
    try:
        for widget in exported:
            if isinstance(widget, GrokvizWidget):
                widget._prepare_export()
        snippet = embed_snippet(
            views,
            # Only these widgets, what they reference and show, not every widget in the kernel.
            state=dependency_state(exported + links, drop_defaults=False),
            drop_defaults=False,
            indent=None,
            requirejs=False,
            embed_url=_PLACEHOLDER,
            cors=False,
        )
    finally:
        for item in links:
            item.close()
    tag = f'<script src="{_PLACEHOLDER}"></script>'
    if tag not in snippet:
        msg = f"ipywidgets' embed template changed: {tag!r} not found; cannot inline the manager"
        raise RuntimeError(msg)
    snippet = snippet.replace(tag, "", 1)
    # The snippet is the state script, then one view script per widget: interleave the HTML.
    marker = '<script type="application/vnd.jupyter.widget-view+json">'
    head, *parts = snippet.split(marker)
    body = [head, before]
    for i, part in enumerate(parts):
        if i > 0 and i - 1 < len(between):
            body.append(between[i - 1])
        body.append(f'<div class="grokviz-page-view">{marker}{part}</div>')
    body.append(after)
    style = (
        "body{margin:0 auto;max-width:1200px;padding:16px 20px;font:14px system-ui,sans-serif;"
        "background:#fff;color:#212121}@media (prefers-color-scheme: dark){body{background:#111;"
        "color:#e6e6e6}body{--jp-layout-color0:#111111;--jp-ui-font-color0:#e6e6e6;"
        "--jp-ui-font-color2:#a0a0a0;--jp-border-color2:#333333}}"
        ".grokviz-page-view{margin:12px 0 24px}"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="UTF-8">\n'
        f"<title>{html_escape(title)}</title>\n<style>{style}</style>\n{_manager_scripts()}\n"
        "</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


def html_escape(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def write_html(
    widgets: Sequence[Any], path: str | os.PathLike[str], *, title: str = "grokviz"
) -> Path:
    """Write a standalone, offline HTML page showing ``widgets`` (any ipywidgets, composed or not).

    Views linked with :func:`grokviz.widgets.link` (or ``Timeline.link``) stay linked in the
    page: choosing a checkpoint on the Timeline moves the other views with no kernel. Every
    checkpoint a view can show is put into the page, so the page can be larger than the widgets'
    live state. The widget manager (RequireJS, the Jupyter widgets HTML manager, anywidget's front
    end) is inlined from ``grokviz/static``: nothing is fetched from a CDN.

    Examples
    --------
    >>> write_html([timeline, diagram, matrix], "views.html")  # doctest: +SKIP
    PosixPath('views.html')
    """
    out = Path(path)
    out.write_text(html_page(list(widgets), title=title), encoding="utf-8")
    return out
