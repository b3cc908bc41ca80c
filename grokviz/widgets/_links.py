"""Linking views: one checkpoint, one pathway definition and one palette for every linked view.

:func:`link` ties the ``checkpoint`` trait of grokviz views both ways in the kernel
(``traitlets.link``, so Python sees every view follow at once, and the browser follows Python). An
exported HTML page has no kernel: there the same pairs are tied in the browser instead
(``ipywidgets.jslink``, made when the page is written, see :class:`BrowserLink`). A live session
never has both: with a link in the kernel and one in the browser, changes made faster than a round
trip crossed in flight and the views kept swapping between two checkpoints. :func:`link` also gives
every linked view the pathway definition (``tau`` / ``top_k``) of the first one that has one, and
one palette covering all their groups.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import traitlets

from grokviz.errors import InputError

__all__ = ["BrowserLink", "link"]


def _has(view: Any, name: str) -> bool:
    return hasattr(view, "traits") and name in view.traits()


def _is_widget(view: Any) -> bool:
    return getattr(view, "comm", None) is not None or hasattr(view, "model_id")


class BrowserLink:
    """Two widgets' traits to tie in the browser when they are exported together.

    :func:`grokviz.widgets._base.html_page` turns it into an ``ipywidgets.jslink`` for the page
    alone and closes that link again once the page is written.
    """

    def __init__(self, source: tuple[Any, str], target: tuple[Any, str]) -> None:
        self.source = source
        self.target = target

    def jslink(self) -> Any:
        from ipywidgets import jslink

        return jslink(self.source, self.target)

    def __repr__(self) -> str:
        ends = " <-> ".join(f"{type(w).__name__}.{name}" for w, name in (self.source, self.target))
        return f"BrowserLink({ends})"


class PathwayLink:
    """Keeps ``tau`` / ``top_k`` equal across views, set atomically so no view sees neither."""

    def __init__(self, views: list[Any]) -> None:
        self.views = views
        self._busy = False
        for view in views:
            view.observe(self._changed, names=["tau", "top_k"])

    def _changed(self, change: dict[str, Any]) -> None:
        if self._busy:
            return
        owner = change["owner"]
        if (owner.tau is None) == (owner.top_k is None):
            return  # mid-update of the owner itself (it changes one, then the other)
        self._busy = True
        try:
            for view in self.views:
                if view is not owner:
                    view.set_pathways(tau=owner.tau, top_k=owner.top_k)
        finally:
            self._busy = False

    def unlink(self) -> None:
        for view in self.views:
            view.unobserve(self._changed, names=["tau", "top_k"])


def unify_palettes(views: Iterable[Any]) -> Any:
    """Give every view with a palette one palette covering all their groups; return it.

    The base is the first palette given explicitly by the user, else the first derived from a
    samples table, else the first one: its domains keep their hues, the others' groups are added.
    """
    with_palette = [
        v
        for v in views
        if hasattr(v, "palette") and getattr(v, "_palette_groups", None) is not None
    ]
    if not with_palette:
        return None
    rank = {"explicit": 0, "samples": 1, "groups": 2}
    ordered = sorted(
        with_palette, key=lambda v: rank.get(getattr(v, "_palette_source", "groups"), 3)
    )
    merged = ordered[0].palette
    for view in ordered[1:]:
        merged = merged.merged(view.palette)
    for view in with_palette:
        view.palette = merged
    return merged


def link(*views: Any) -> list[Any]:
    """Link grokviz views: one checkpoint, one pathway definition and one palette.

    Parameters
    ----------
    *views
        Views with a ``checkpoint`` trait (``PathwayDiagram``, ``SimilarityMatrix``,
        ``Timeline``, or any ``traitlets.HasTraits``). A view whose ``checkpoint`` is an integer
        trait is linked to the first view's ``step`` instead.

    Returns
    -------
    list
        The link objects (``traitlets.link``, :class:`BrowserLink` records of the pairs to tie in
        exported pages, and the pathway link); the first view keeps them too, so ``write_html``
        exports the pairs with the views.

    Examples
    --------
    >>> from grokviz.widgets import link  # doctest: +SKIP
    >>> link(timeline, diagram, matrix)  # doctest: +SKIP
    """
    if len(views) < 2:
        return []
    first, *others = views
    links: list[Any] = []
    for view in others:
        trait = view.traits().get("checkpoint") if hasattr(view, "traits") else None
        if trait is None:
            msg = f"{type(view).__name__} has no 'checkpoint' trait to link"
            raise InputError(msg)
        mine = "step" if isinstance(trait, traitlets.Int) and _has(first, "step") else "checkpoint"
        theirs = getattr(view, "checkpoint", None)
        if getattr(first, mine) is None and theirs is not None:
            # traitlets.link copies ours over theirs: keep a view's choice when we have none.
            setattr(first, mine, theirs)
        links.append(traitlets.link((first, mine), (view, "checkpoint")))
        if (
            mine == "checkpoint"
            and _is_widget(first)
            and _is_widget(view)
            and _synced(first)
            and _synced(view)
        ):
            links.append(BrowserLink((first, "checkpoint"), (view, "checkpoint")))
    pathway_views = [v for v in views if hasattr(v, "set_pathways")]
    if len(pathway_views) > 1:
        lead = pathway_views[0]
        for view in pathway_views[1:]:
            view.set_pathways(tau=lead.tau, top_k=lead.top_k)
        links.append(PathwayLink(pathway_views))
    unify_palettes(views)
    kept = getattr(first, "_grokviz_links", None)
    if kept is None:
        try:
            first._grokviz_links = kept = []
        except AttributeError:  # pragma: no cover - a view that takes no attributes
            kept = []
    kept.extend(links)
    return links


def _synced(view: Any) -> bool:
    """Whether the view's ``checkpoint`` trait is synced to the browser (jslink needs that)."""
    trait = view.traits().get("checkpoint")
    return bool(trait is not None and trait.metadata.get("sync"))


def unlink(view: Any) -> None:
    """Undo every link :func:`link` made with ``view`` first."""
    for item in getattr(view, "_grokviz_links", []) or []:
        if hasattr(item, "unlink"):
            item.unlink()
        elif hasattr(item, "close"):
            item.close()
    if hasattr(view, "_grokviz_links"):
        view._grokviz_links = []
