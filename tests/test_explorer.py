"""The Explorer: list a series, pick samples, trace in a thread, feed the views, show errors."""

from __future__ import annotations

from pathlib import Path

import ipywidgets
import polars as pl
import pytest
import traitlets

from grokviz.testing import char_tokenizer, tiny_dense, tiny_moe
from grokviz.widgets._serialization import ipc_to_table
from grokviz.widgets.explorer import Explorer

SAMPLES = pl.DataFrame(
    {
        "sample_id": ["m1", "m2", "m3", "c1", "c2"],
        "text": ["1+1=2", "2*3=6", "7-4=3", "def f(x): return x", "print('hi')"],
        "domain": ["math", "math", "math", "code", "code"],
        "split": "train",
    }
)


class _View(ipywidgets.DOMWidget):
    """Stands in for PathwayDiagram/SimilarityMatrix: built from routing, selects samples."""

    selected_samples = traitlets.List(traitlets.Unicode())
    selected_pair = traitlets.List(traitlets.Unicode())

    def __init__(self, routing: pl.DataFrame, token_routing: pl.DataFrame) -> None:
        super().__init__()
        self.routing = routing
        self.token_routing = token_routing


class _Views:
    """A view factory remembering every view it built, in order."""

    def __init__(self) -> None:
        self.made: list[_View] = []

    def __call__(
        self, routing: pl.DataFrame, token_routing: pl.DataFrame, samples: pl.DataFrame
    ) -> list[_View]:
        self.made.append(_View(routing, token_routing))
        return [self.made[-1]]

    @property
    def last(self) -> _View:
        return self.made[-1]

    @property
    def heights(self) -> list[int]:
        return [v.routing.height for v in self.made]


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tiny OLMoE checkpoints (2 MoE layers of 8 experts) saved like a training run."""
    root = tmp_path_factory.mktemp("run")
    tokenizer = char_tokenizer()
    for seed, step in enumerate((100, 200)):
        folder = root / f"step-{step:06d}"
        tiny_moe("olmoe", seed=seed).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return root


@pytest.fixture(scope="module")
def dense(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dense")
    folder = root / "step-000100"
    tiny_dense().save_pretrained(folder)
    char_tokenizer().save_pretrained(folder)
    return root


def _explorer(source: Path | str | None) -> tuple[Explorer, _Views]:
    views = _Views()
    explorer = Explorer(None if source is None else str(source), SAMPLES, make_views=views)
    return explorer, views


def test_source_lists_the_series_and_defaults_to_its_last_checkpoint(series: Path) -> None:
    explorer, views = _explorer(series)
    assert explorer.checkpoints == ["step-000100", "step-000200"]
    assert explorer.checkpoint == "step-000200"
    explorer.set_state({"checkpoint": "step-000100"})  # the menu in the browser
    assert explorer.checkpoint == "step-000100"
    explorer.checkpoint = "step-000200"  # as a linked Timeline would
    assert explorer.get_state("checkpoint") == {"checkpoint": "step-000200"}
    assert views.made == []  # nothing traced: the placeholder, no views
    assert explorer._views == []
    with pytest.raises(traitlets.TraitError, match="not in this widget's data"):
        explorer.checkpoint = "step-000300"


def test_search_filters_the_list_and_keeps_hidden_selections(series: Path) -> None:
    explorer, _ = _explorer(series)
    explorer.search = "MATH"
    assert [v for _, v in explorer.options] == ["m1", "m2", "m3"]
    shown = ipc_to_table(explorer._options)
    assert shown.column("sample_id").to_pylist() == ["m1", "m2", "m3"]
    assert shown.column("label").to_pylist()[1] == "m2 · math · 2*3=6"
    explorer.selected_samples = ["m2"]
    explorer.search = "print"
    assert [v for _, v in explorer.options] == ["c2"]
    assert explorer.selected_samples == ["m2"]  # filtering is not a choice: nothing deselected
    explorer.selected_samples = ["m2", "c2"]  # the front end merges hidden and shown choices
    explorer.search = ""
    assert sorted(explorer.selected_samples) == ["c2", "m2"]


def test_trace_streams_routing_for_the_selected_samples(series: Path) -> None:
    explorer, views = _explorer(series)
    explorer.batch_size = 2
    explorer.selected_samples = ["m1", "m2", "c1"]
    explorer.set_state({"_clicks": 1})  # what the front end's Trace button sends
    assert explorer.running or explorer.progress == [3, 3]
    explorer.wait(timeout=120)
    assert not explorer.running
    assert explorer.messages == []
    assert explorer.progress == [3, 3]
    assert explorer.progress_style == "success"
    assert explorer.status == "traced 3 samples through step-000200"

    routing = explorer.routing
    assert sorted(routing["sample_id"].unique()) == ["c1", "m1", "m2"]
    assert routing["checkpoint"].unique().to_list() == ["step-000200"]
    assert routing.height == 3 * 2  # 3 samples x 2 MoE layers
    # Full-softmax weights over 8 experts, summing to 1 (DESIGN.md §1).
    for weights in routing["weights"]:
        assert len(weights) == 8
        assert sum(weights) == pytest.approx(1.0, abs=1e-5)
    assert explorer.losses.height == 3
    assert set(explorer.token_routing["sample_id"].unique()) == {"c1", "m1", "m2"}

    # The views filled batch by batch (2 + 1 samples), ending with every row, and only the
    # latest views are shown.
    assert views.heights == [4, 6]
    assert explorer._views == [f"anywidget:{views.last.model_id}"]  # what the browser renders
    assert explorer.views == [views.last]
    assert set(views.last.token_routing["sample_id"]) == {"c1", "m1", "m2"}


def test_selection_is_shared_with_the_views(series: Path) -> None:
    explorer, views = _explorer(series)
    explorer.selected_samples = ["m1", "c1"]
    explorer.trace().join(120)  # type: ignore[union-attr]
    view = views.last
    assert sorted(view.selected_samples) == ["c1", "m1"]
    view.selected_samples = ["c1"]  # a click in the diagram
    assert explorer.selected_samples == ["c1"]
    view.selected_pair = ["m1", "c1"]  # a click in the similarity matrix
    assert sorted(explorer.selected_samples) == ["c1", "m1"]


def test_nothing_is_traced_twice_and_checkpoints_accumulate(series: Path) -> None:
    explorer, views = _explorer(series)
    explorer.selected_samples = ["m1"]
    explorer.trace().join(120)  # type: ignore[union-attr]
    explorer.selected_samples = ["m1", "m2"]
    explorer.trace().join(120)  # type: ignore[union-attr]
    assert explorer.progress == [1, 1]  # only m2 was new
    assert explorer.routing.filter(pl.col("sample_id") == "m1").height == 2
    assert explorer.trace() is None  # all traced already
    explorer.checkpoint = "step-000100"
    assert explorer.views == []  # nothing traced at this checkpoint yet
    explorer.trace().join(120)  # type: ignore[union-attr]
    assert sorted(explorer.routing["checkpoint"].unique()) == ["step-000100", "step-000200"]
    assert views.last.routing.height == 4
    assert views.last.routing["checkpoint"].unique().to_list() == ["step-000100"]
    explorer.checkpoint = "step-000200"  # back: its rows are still there
    assert views.last.routing["checkpoint"].unique().to_list() == ["step-000200"]
    # Different weights route differently: the two checkpoints' rows are not copies.
    a, b = (
        explorer.routing.filter((pl.col("checkpoint") == c) & (pl.col("sample_id") == "m1"))
        .sort("layer")["weights"]
        .to_list()
        for c in ("step-000100", "step-000200")
    )
    assert a != b


def test_empty_selection_says_what_to_do(series: Path) -> None:
    explorer, _ = _explorer(series)
    assert explorer.trace() is None
    assert len(explorer.messages) == 1
    assert "no samples selected" in explorer.messages[0]
    assert explorer.errors == explorer.messages  # the synced list the front end shows in red


def test_wrong_path_is_reported(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    explorer, _ = _explorer(missing)
    assert explorer.checkpoints == []
    assert len(explorer.messages) == 1
    assert str(missing) in explorer.messages[0]
    explorer.selected_samples = ["m1"]
    assert explorer.trace() is None
    assert "choose a checkpoint first" in explorer.messages[-1]


def test_dense_model_fails_in_red_and_keeps_what_was_traced(series: Path, dense: Path) -> None:
    explorer, _ = _explorer(series)
    explorer.selected_samples = ["m1"]
    explorer.trace().join(120)  # type: ignore[union-attr]
    explorer.source = str(dense)
    assert explorer.checkpoint == "step-000100"
    thread = explorer.trace()
    assert thread is not None
    thread.join(120)
    assert not explorer.running
    assert explorer.progress_style == "danger"
    assert len(explorer.messages) == 1
    assert "NotMoEError" in explorer.messages[0]
    # The routing of the MoE series is still there, and not mixed up with the dense series'
    # checkpoint of the same label.
    assert explorer.routing.filter(pl.col("sample_id") == "m1").height == 2
    assert explorer.views == []
    explorer.source = str(series)
    explorer.checkpoint = "step-000200"
    assert explorer.current_routing().height == 2


def test_stop_ends_the_trace_after_the_batch_in_flight(series: Path) -> None:
    explorer, _ = _explorer(series)
    explorer.batch_size = 1
    explorer.selected_samples = list(SAMPLES["sample_id"])

    def press_stop_after_the_first_batch(change: dict) -> None:
        # Runs in the trace thread as the first batch lands, before the loop asks whether to
        # stop: a user pressing Stop then must get exactly one of the five samples traced.
        if change["new"][0] == 1:
            explorer.set_state({"_clicks": explorer._clicks + 1})  # the Stop button

    explorer.observe(press_stop_after_the_first_batch, names="progress")
    thread = explorer.trace()
    assert thread is not None and explorer.running
    thread.join(120)
    assert not explorer.running
    assert explorer.progress == [1, 5]
    assert explorer.losses.height == 1
    assert explorer.status == "stopped after 1 of 5 samples"
    assert explorer.progress_style == ""  # not "success": it did not finish


def _record_messages(widget: ipywidgets.Widget) -> list[set[str]]:
    """The trait names of every state message ``widget`` sends from now on, one set each."""
    sent: list[set[str]] = []
    send = widget.send_state

    def record(key: str | list[str] | None = None) -> None:
        names = widget.keys if key is None else [key] if isinstance(key, str) else key
        sent.append(set(names))
        send(key)

    widget.send_state = record  # type: ignore[method-assign]
    return sent


def test_each_batch_reaches_the_browser_as_one_message_per_widget(series: Path) -> None:
    """The progress bar and every view's data move together, batch by batch: one message each."""
    explorer = Explorer(str(series), SAMPLES, batch_size=1)
    diagram, matrix = explorer.views  # made with the Explorer, empty, updated from then on
    explorer.selected_samples = ["m1", "c1"]  # linked to the diagram's selection
    sent = _record_messages(explorer)
    to_diagram, to_matrix = _record_messages(diagram), _record_messages(matrix)
    explorer.trace().join(120)  # type: ignore[union-attr]
    assert explorer.messages == []
    assert explorer.views == [diagram, matrix]
    batches = [keys for keys in sent if "progress" in keys][1:]  # after the start
    assert len(batches) == 2, sent  # [done, total] in one trait, one message per batch
    # One message per view per batch, carrying everything that batch changed.
    assert len(to_diagram) == 2 and all({"_paths", "_samples"} <= keys for keys in to_diagram)
    assert len(to_matrix) == 2 and all({"_matrices", "_samples"} <= keys for keys in to_matrix)
    assert {"checkpoints", "checkpoint", "_n_layers"} <= to_diagram[0]  # its first data


def test_default_views_are_the_pathway_diagram_and_the_similarity_matrix(series: Path) -> None:
    from grokviz.widgets.pathway_diagram import PathwayDiagram
    from grokviz.widgets.similarity_matrix import SimilarityMatrix

    explorer = Explorer(str(series), SAMPLES)
    explorer.selected_samples = ["m1", "m2", "c1"]
    explorer.trace().join(120)  # type: ignore[union-attr]
    assert explorer.messages == []
    diagram, matrix = explorer.views
    assert isinstance(diagram, PathwayDiagram)
    assert isinstance(matrix, SimilarityMatrix)
    assert sorted(diagram.sample_ids) == ["c1", "m1", "m2"]
    assert diagram.checkpoint == "step-000200"
    assert matrix.distances().shape == (3, 3)
    matrix.selected_pair = ["m2", "c1"]
    assert sorted(explorer.selected_samples) == ["c1", "m2"]
    assert sorted(diagram.selected_samples) == ["c1", "m2"]


def test_default_views_update_in_place_while_a_trace_streams(series: Path) -> None:
    from grokviz.widgets.explorer import default_views
    from grokviz.widgets.pathway_diagram import PathwayDiagram
    from grokviz.widgets.similarity_matrix import SimilarityMatrix

    built: list[list[ipywidgets.DOMWidget]] = []

    def counting(routing: pl.DataFrame, tokens: pl.DataFrame, samples: pl.DataFrame):
        built.append(default_views(routing, tokens, samples))
        return built[-1]

    explorer = Explorer(str(series), SAMPLES, make_views=counting)
    explorer.batch_size = 1
    changed: list[int] = []

    def user_changes_settings(change: dict) -> None:
        # Runs in the trace thread after batch 1 was drawn and before batch 2 is: as a user
        # clicking while the trace streams.
        if change["new"][0] == 2 and not changed:
            diagram, matrix = explorer.views
            diagram.mode = "tokens"
            diagram.color_by = "split"
            diagram.width = 333
            matrix.order = "none"
            changed.append(len(diagram.sample_ids))

    explorer.observe(user_changes_settings, names="progress")
    explorer.selected_samples = ["m1", "c1", "m3"]
    explorer.trace().join(120)  # type: ignore[union-attr]
    assert explorer.messages == []
    assert changed == [1]  # the settings changed when one sample was drawn
    assert len(built) == 1  # built for the first batch only, then updated
    diagram, matrix = explorer.views
    assert explorer.views == built[0]
    assert explorer._views == [f"anywidget:{view.model_id}" for view in built[0]]
    assert isinstance(diagram, PathwayDiagram) and isinstance(matrix, SimilarityMatrix)
    assert sorted(diagram.sample_ids) == ["c1", "m1", "m3"]
    assert sorted(matrix.sample_ids) == ["c1", "m1", "m3"]
    assert (diagram.mode, diagram.color_by, diagram.width) == ("tokens", "split", 333)
    assert matrix.order == "none"
    # What streamed in equals views built at once from everything traced.
    routing, tokens = explorer.current_routing(), explorer.token_routing
    fresh = PathwayDiagram(
        routing,
        samples=SAMPLES,
        token_routing=tokens,
        mode="tokens",
        color_by="split",
        token_sample=diagram.token_sample,
    )
    for name in ("_paths", "_samples", "_tokens", "_token_routes"):
        assert getattr(diagram, name) == getattr(fresh, name), name
    fresh_matrix = SimilarityMatrix(routing=routing, samples=SAMPLES, order="none")
    for name in ("_matrices", "_loaded", "_samples", "_paths"):
        assert getattr(matrix, name) == getattr(fresh_matrix, name), name

    # A second trace of the same checkpoint updates the same widgets too, and the selection
    # stays linked through one link per view and one pair observer.
    explorer.selected_samples = ["m1", "c1", "m3", "c2"]
    explorer.trace().join(120)  # type: ignore[union-attr]
    assert explorer.views == [diagram, matrix] and len(built) == 1
    assert sorted(diagram.sample_ids) == ["c1", "c2", "m1", "m3"]
    assert matrix.distances().shape == (4, 4)
    assert len(explorer._links) == 1  # the diagram's selected_samples (the matrix has none)
    assert len(matrix._trait_notifiers["selected_pair"]["change"]) == 1
    matrix.selected_pair = ["c2", "m3"]
    assert sorted(explorer.selected_samples) == ["c2", "m3"]
    assert sorted(diagram.selected_samples) == ["c2", "m3"]


def test_the_default_views_stay_across_checkpoints_and_keep_their_settings(series: Path) -> None:
    explorer = Explorer(str(series), SAMPLES)
    views = list(explorer.views)
    diagram, matrix = views
    assert diagram.checkpoints == [] and matrix._n == 0  # made empty, before any trace
    assert explorer._views == [f"anywidget:{v.model_id}" for v in views]
    explorer.selected_samples = ["m1", "c1"]
    explorer.trace().join(120)  # type: ignore[union-attr]
    diagram.mode = "tokens"
    diagram.compare = None
    explorer.checkpoint = "step-000100"
    assert explorer.views == views  # the same widgets, now empty: nothing traced here yet
    assert diagram.checkpoints == [] and diagram.sample_ids == [] and matrix._n == 0
    assert diagram.mode == "tokens"  # the user's settings stay
    explorer.selected_samples = ["m1"]
    explorer.trace().join(120)  # type: ignore[union-attr]
    assert explorer.views == views and diagram.checkpoints == ["step-000100"]
    assert diagram.sample_ids == ["m1"] and diagram.mode == "tokens"
    explorer.checkpoint = "step-000200"  # back: refilled from the rows kept
    assert explorer.views == views
    assert diagram.checkpoints == ["step-000200"]
    assert sorted(diagram.sample_ids) == ["c1", "m1"] and matrix.distances().shape == (2, 2)
    assert all(view.comm is not None for view in views)  # never closed


def test_a_custom_view_factory_is_rebuilt_when_the_checkpoint_changes(series: Path) -> None:
    explorer, made = _explorer(series)
    explorer.selected_samples = ["m1", "c1"]
    explorer.trace().join(120)  # type: ignore[union-attr]
    first = made.last
    explorer.checkpoint = "step-000100"
    assert explorer.views == [] and first.comm is None  # nothing traced here: closed, none shown
    explorer.checkpoint = "step-000200"
    assert explorer.views == [made.last] and made.last is not first
    assert made.last.routing.height == 4
