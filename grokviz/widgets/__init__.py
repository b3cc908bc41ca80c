"""grokviz's Jupyter widgets (anywidget): pathways, distances, and their evolution over training.

Imported lazily, so ``import grokviz.widgets`` does not load anywidget until a widget is used.
The front end is one bundle, ``grokviz/static/widgets.js``, built from ``js/`` (``make bundle``).

Examples
--------
>>> from grokviz.widgets import PathwayDiagram, SimilarityMatrix  # doctest: +SKIP
>>> palette = Palette.from_samples(samples)  # one colour per domain, shared by every view
>>> diagram = PathwayDiagram(store, samples=samples, palette=palette)  # doctest: +SKIP
>>> timeline = Timeline(metrics, accuracy=accuracy, palette=palette).link(diagram)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from grokviz._lazy import lazy_exports

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "PathwayDiagram": "grokviz.widgets.pathway_diagram",
    "SimilarityMatrix": "grokviz.widgets.similarity_matrix",
    "Timeline": "grokviz.widgets.timeline",
    "Explorer": "grokviz.widgets.explorer",
    "Palette": "grokviz.widgets.palette",
    "link": "grokviz.widgets._links",
    "write_html": "grokviz.widgets._base",
    "write_report": "grokviz.widgets.report",
}

__all__ = [
    "Explorer",
    "Palette",
    "PathwayDiagram",
    "SimilarityMatrix",
    "Timeline",
    "link",
    "write_html",
    "write_report",
]

if TYPE_CHECKING:  # pragma: no cover
    from grokviz.widgets._base import write_html
    from grokviz.widgets._links import link
    from grokviz.widgets.explorer import Explorer
    from grokviz.widgets.palette import Palette
    from grokviz.widgets.pathway_diagram import PathwayDiagram
    from grokviz.widgets.report import write_report
    from grokviz.widgets.similarity_matrix import SimilarityMatrix
    from grokviz.widgets.timeline import Timeline


__getattr__, __dir__ = lazy_exports(
    __name__,
    _EXPORTS,
    extras={
        "anywidget": "widgets",
        "ipywidgets": "widgets",
        "traitlets": "widgets",
        "altair": "widgets",
    },
)
