"""The base class of grokviz's anywidgets: shared traits, the bundle, and offline HTML export.

Every grokviz view is rendered by one bundle, ``grokviz/static/widgets.js`` (built from ``js/``),
which picks the view from the ``_view`` trait. Views share a ``theme`` trait and, where they show
one checkpoint at a time, ``checkpoint`` / ``checkpoints`` traits a Timeline can drive with
``traitlets.link`` or ``observe``.
"""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import anywidget
import traitlets as t

STATIC = Path(__file__).resolve().parent.parent / "static"

__all__ = ["STATIC", "GrokvizWidget", "write_html"]


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


def write_html(
    widgets: Sequence[Any], path: str | os.PathLike[str], *, title: str = "grokviz"
) -> Path:
    """Write a standalone, offline HTML page showing ``widgets`` (any ipywidgets, composed or not).

    Uses :func:`ipywidgets.embed.embed_minimal_html` with ``drop_defaults=False`` and replaces
    its CDN script tag with inlined copies of the widget manager shipped in ``grokviz/static``.

    Examples
    --------
    >>> write_html([diagram, matrix], "views.html")  # doctest: +SKIP
    PosixPath('views.html')
    """
    from ipywidgets.embed import dependency_state, embed_minimal_html

    buffer = io.StringIO()
    views = list(widgets)
    embed_minimal_html(
        buffer,
        views=views,
        # Only these widgets and what they reference, not every widget alive in the kernel.
        state=dependency_state(views, drop_defaults=False),
        title=title,
        drop_defaults=False,
        requirejs=False,
        embed_url=_PLACEHOLDER,
        cors=False,
    )
    html = buffer.getvalue()
    tag = f'<script src="{_PLACEHOLDER}"></script>'
    if tag not in html:
        msg = f"ipywidgets' embed template changed: {tag!r} not found; cannot inline the manager"
        raise RuntimeError(msg)
    html = html.replace(tag, _manager_scripts(), 1)
    out = Path(path)
    out.write_text(html, encoding="utf-8")
    return out
