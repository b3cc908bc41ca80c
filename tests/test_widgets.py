"""PathwayDiagram and SimilarityMatrix, Python side: the data they put on the wire and its updates.

Every synced table is decoded back with pyarrow / numpy and compared with an independent
computation from the routing weights; browser behaviour is tested in tests/browser/.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
import traitlets

from grokviz.widgets import PathwayDiagram, SimilarityMatrix
from grokviz.widgets._serialization import ipc_to_table, raw_nbytes

CHECKPOINTS = [
    ("step-0", 0),
    ("step-500", 500),
    ("step-100", 100),
]  # deliberately not in step order
N_SAMPLES, N_LAYERS, N_EXPERTS = 5, 3, 6


def make_weights(seed: int, n: int = N_SAMPLES, layers: int = N_LAYERS, k: int = N_EXPERTS):
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(k, 0.4), size=(n, layers)).astype(np.float32)


def make_routing(n: int = N_SAMPLES, layers: int = N_LAYERS, k: int = N_EXPERTS) -> pl.DataFrame:
    frames = []
    for seed, (name, step) in enumerate(CHECKPOINTS):
        w = make_weights(seed, n, layers, k)
        frames.append(
            pl.DataFrame(
                {
                    "checkpoint": [name] * (n * layers),
                    "step": [step] * (n * layers),
                    "sample_id": [f"s{i}" for i in range(n) for _ in range(layers)],
                    "layer": [layer for _ in range(n) for layer in range(layers)],
                    "weights": w.reshape(n * layers, k).tolist(),
                }
            )
        )
    return pl.concat(frames)


WEIGHTS = {name: make_weights(seed) for seed, (name, _) in enumerate(CHECKPOINTS)}
ORDER = ["step-0", "step-100", "step-500"]
SAMPLES = pl.DataFrame(
    {
        "sample_id": [f"s{i}" for i in range(N_SAMPLES)],
        "text": ["x"] * N_SAMPLES,
        "domain": ["math", "code", "math", "web", "code"],
        "split": ["train"] * N_SAMPLES,
        "group": ["Pretrain@100"] * 2 + ["Pretrain@500"] * 3,
    }
)


def reference_pathway(
    w: np.ndarray, tau: float | None, top_k: int | None = None
) -> list[tuple[int, float]]:
    """Experts of one layer by weight, kept until the running sum first exceeds tau (or top_k)."""
    ranked = sorted(range(len(w)), key=lambda e: (-float(w[e]), e))
    if top_k is not None:
        return [(e, float(w[e])) for e in ranked[:top_k]]
    assert tau is not None
    out, total = [], 0.0
    for e in ranked:
        out.append((e, float(w[e])))
        total += float(w[e])
        if total > tau:
            break
    return out


def reference_rows(
    checkpoints: list[int], tau: float | None, top_k: int | None = None
) -> list[tuple[int, int, int, int, float]]:
    rows = []
    for c in checkpoints:
        w = WEIGHTS[ORDER[c]]
        for s in range(N_SAMPLES):
            for layer in range(N_LAYERS):
                for e, weight in reference_pathway(w[s, layer], tau, top_k):
                    rows.append((c, s, layer, e, weight))
    return rows


def decoded_rows(data: bytes) -> list[tuple[int, int, int, int, float]]:
    table = ipc_to_table(data)
    cols = [
        table.column(c).to_pylist() for c in ("checkpoint", "sample", "layer", "expert", "weight")
    ]
    return list(zip(*cols, strict=True))


def same_rows(got, want) -> bool:
    return len(got) == len(want) and all(
        g[:4] == w[:4] and abs(g[4] - w[4]) < 1e-6 for g, w in zip(got, want, strict=True)
    )


# -- PathwayDiagram -----------------------------------------------------------------------------


def test_diagram_sends_every_pathway_in_rank_order() -> None:
    d = PathwayDiagram(make_routing(), samples=SAMPLES)
    assert d.checkpoints == ORDER
    assert d.checkpoint == "step-500"
    assert (d._n_layers, d._n_experts) == (N_LAYERS, N_EXPERTS)
    table = ipc_to_table(d._paths)
    assert table.schema.field("sample").type == pa.uint32()
    assert table.schema.field("weight").type == pa.float32()
    # Small data: every checkpoint is on the wire at once, so the slider morphs without Python.
    assert same_rows(decoded_rows(d._paths), reference_rows([0, 1, 2], 0.7))


def test_diagram_samples_and_groups() -> None:
    d = PathwayDiagram(make_routing(), samples=SAMPLES, color_by="domain")
    table = ipc_to_table(d._samples)
    assert table.column("sample_id").to_pylist() == [f"s{i}" for i in range(N_SAMPLES)]
    assert table.column("group").to_pylist() == ["math", "code", "math", "web", "code"]
    d.color_by = "group"
    groups = ipc_to_table(d._samples).column("group").to_pylist()
    assert groups == ["Pretrain@100"] * 2 + ["Pretrain@500"] * 3
    with pytest.raises(ValueError, match="color_by='nope'"):
        PathwayDiagram(make_routing(), samples=SAMPLES, color_by="nope")


def test_diagram_selection_rule_changes_update_the_paths() -> None:
    d = PathwayDiagram(make_routing())
    d.tau = 0.5
    assert same_rows(decoded_rows(d._paths), reference_rows([0, 1, 2], 0.5))
    d.top_k = 2
    assert d.tau is None
    rows = decoded_rows(d._paths)
    assert len(rows) == 3 * N_SAMPLES * N_LAYERS * 2
    for c, s, layer, e, _ in rows[::2]:
        w = WEIGHTS[ORDER[c]][s, layer]
        assert e == int(np.argmax(w))
    d.tau = 0.7
    assert d.top_k is None
    assert same_rows(decoded_rows(d._paths), reference_rows([0, 1, 2], 0.7))
    assert d.pathway("s3", "step-0") == [
        [e for e, _ in reference_pathway(WEIGHTS["step-0"][3, layer], 0.7)] for layer in range(3)
    ]


def test_large_data_sends_a_window_that_follows_the_checkpoint(monkeypatch) -> None:
    monkeypatch.setattr(PathwayDiagram, "_PRELOAD_CELLS", 0)
    d = PathwayDiagram(make_routing(), checkpoint="step-0")
    assert same_rows(decoded_rows(d._paths), reference_rows([0, 1], 0.7))
    sent = []
    d.observe(lambda change: sent.append(change["name"]), names=["_paths"])
    d.checkpoint = "step-100"
    assert same_rows(decoded_rows(d._paths), reference_rows([1, 2], 0.7))
    d.checkpoint = "step-500"  # the last one: it and its predecessor
    assert same_rows(decoded_rows(d._paths), reference_rows([1, 2], 0.7))
    assert sent == ["_paths"]  # the second change needed no new data


def test_checkpoint_must_exist() -> None:
    d = PathwayDiagram(make_routing())
    with pytest.raises(traitlets.TraitError, match="step-999"):
        d.checkpoint = "step-999"


def make_token_routing() -> pl.DataFrame:
    rows = []
    for name, step in CHECKPOINTS:
        for sample in ("s1", "s3"):
            for ti, token in enumerate(["The", " cat", " sat"]):
                for layer in range(N_LAYERS):
                    e0 = (ti + layer + step // 100 + int(sample[1])) % N_EXPERTS
                    rows.append(
                        {
                            "checkpoint": name,
                            "step": step,
                            "sample_id": sample,
                            "token_index": ti,
                            "token": token,
                            "layer": layer,
                            "experts": [e0, (e0 + 1) % N_EXPERTS],
                            "weights": [0.6, 0.3],
                        }
                    )
    return pl.DataFrame(rows)


def test_token_mode_data_follows_sample_selection_and_checkpoint() -> None:
    d = PathwayDiagram(make_routing(), token_routing=make_token_routing(), mode="tokens")
    assert d.token_sample == "s1"
    tokens = ipc_to_table(d._tokens)
    assert tokens.column("token").to_pylist() == ["The", " cat", " sat"]
    routes = ipc_to_table(d._token_routes)
    got = list(
        zip(
            *(routes.column(c).to_pylist() for c in ("token_index", "layer", "expert")), strict=True
        )
    )
    want = []
    for ti in range(3):
        for layer in range(N_LAYERS):
            e0 = (ti + layer + 5 + 1) % N_EXPERTS  # step-500, sample s1
            want += [(ti, layer, e0), (ti, layer, (e0 + 1) % N_EXPERTS)]
    assert got == want
    d.selected_token = 1
    d.selected_samples = ["s3"]  # selecting a sample with tokens shows its tokens
    assert d.token_sample == "s3"
    assert d.selected_token is None
    first = ipc_to_table(d._token_routes).column("expert").to_pylist()[0]
    assert first == (0 + 0 + 5 + 3) % N_EXPERTS
    d.checkpoint = "step-0"
    assert ipc_to_table(d._token_routes).column("expert").to_pylist()[0] == 3
    d.selected_samples = ["s3", "s0"]  # s0 has no tokens: the token view stays on s3
    assert d.token_sample == "s3"


def test_token_mode_needs_token_routing() -> None:
    with pytest.raises(ValueError, match="token_routing"):
        PathwayDiagram(make_routing(), mode="tokens")


def test_diagram_reads_pandas_and_pyarrow() -> None:
    frame = make_routing()
    want = PathwayDiagram(frame)._paths
    assert PathwayDiagram(frame.to_arrow())._paths == want
    pytest.importorskip("pandas")
    assert PathwayDiagram(frame.to_pandas())._paths == want


def test_diagram_bytes_on_the_wire_are_close_to_the_raw_arrays() -> None:
    n, layers, k = 300, 8, 16
    frame = make_routing(n, layers, k)
    d = PathwayDiagram(frame)
    table = ipc_to_table(d._paths)
    raw = raw_nbytes({name: table.column(name).to_numpy() for name in table.column_names})
    assert len(d._paths) <= 1.2 * raw
    ids = ipc_to_table(d._samples).column("sample_id").to_pylist()
    assert len(d._samples) <= 1.2 * raw_nbytes({"sample_id": ids, "group": [""] * n})


def first_samples(frame: pl.DataFrame, n: int) -> pl.DataFrame:
    """The rows of samples s0..s{n-1}: a first batch of a trace that streams the rest later."""
    return frame.filter(pl.col("sample_id").is_in([f"s{i}" for i in range(n)]))


def test_diagram_update_keeps_the_settings_and_sends_the_new_data() -> None:
    routing, tokens = make_routing(), make_token_routing()
    d = PathwayDiagram(
        first_samples(routing, 2), samples=SAMPLES, token_routing=first_samples(tokens, 2)
    )
    assert d.token_sample == "s1"
    d.pathway("s0", "step-0")  # fills the per-checkpoint caches with the old data
    d.mode, d.color_by, d.tau, d.checkpoint = "tokens", "group", 0.5, "step-0"
    d.selected_samples, d.width, d.selected_token = ["s1", "s9"], 500, 2
    d.update(routing, samples=SAMPLES, token_routing=tokens)
    assert (d.mode, d.color_by, d.tau, d.top_k, d.checkpoint) == (
        "tokens",
        "group",
        0.5,
        None,
        "step-0",
    )
    assert (d.selected_samples, d.width, d.token_sample, d.selected_token) == (
        ["s1", "s9"],
        500,
        "s1",
        2,
    )
    assert d.sample_ids == [f"s{i}" for i in range(N_SAMPLES)]
    assert same_rows(decoded_rows(d._paths), reference_rows([0, 1, 2], 0.5))
    groups = ipc_to_table(d._samples).column("group").to_pylist()
    assert groups == ["Pretrain@100"] * 2 + ["Pretrain@500"] * 3
    assert d.pathway("s4", "step-0") == [
        [e for e, _ in reference_pathway(WEIGHTS["step-0"][4, layer], 0.5)] for layer in range(3)
    ]
    fresh = PathwayDiagram(
        routing,
        samples=SAMPLES,
        token_routing=tokens,
        tau=0.5,
        color_by="group",
        checkpoint="step-0",
        mode="tokens",
    )
    for name in ("_paths", "_samples", "_tokens", "_token_routes", "_n_layers", "_n_experts"):
        assert getattr(d, name) == getattr(fresh, name), name


def test_diagram_update_falls_back_where_the_old_choice_is_gone(monkeypatch) -> None:
    monkeypatch.setattr(PathwayDiagram, "_PRELOAD_CELLS", 0)  # send a window, not everything
    routing, tokens = make_routing(), make_token_routing()
    d = PathwayDiagram(routing, token_routing=tokens, checkpoint="step-0")
    d.token_sample, d.selected_token = "s3", 1
    later = routing.filter(pl.col("checkpoint") != "step-0")
    d.update(later, token_routing=tokens.filter(pl.col("sample_id") != "s3"))
    assert d.checkpoints == ["step-100", "step-500"]
    assert d.checkpoint == "step-500"  # step-0 is gone: the last one
    assert (d.token_sample, d.selected_token) == ("s1", None)
    # The window is recomputed on the new checkpoint list: indices 0 and 1 are now
    # step-100 and step-500.
    want = [(c - 1, *rest) for c, *rest in reference_rows([1, 2], 0.7)]
    assert same_rows(decoded_rows(d._paths), want)


def test_diagram_update_rejects_an_empty_table_and_keeps_its_data() -> None:
    from grokviz.errors import EmptyInputError

    d = PathwayDiagram(make_routing(), token_routing=make_token_routing(), mode="tokens")
    before = (d._paths, d._samples, d._tokens, d.checkpoints)
    with pytest.raises(EmptyInputError, match="empty"):
        d.update(make_routing().clear())
    with pytest.raises(ValueError, match="mode='tokens' needs token_routing"):
        d.update(make_routing())
    assert (d._paths, d._samples, d._tokens, d.checkpoints) == before
    d.tau = 0.5  # the observers still work on the kept data
    assert same_rows(decoded_rows(d._paths), reference_rows([0, 1, 2], 0.5))


# -- SimilarityMatrix ---------------------------------------------------------------------------


def levenshtein(a: list[int], b: list[int]) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def reference_distances(
    checkpoint: str, tau: float | None = 0.7, top_k: int | None = None
) -> np.ndarray:
    w = WEIGHTS[checkpoint]
    seqs = []
    for s in range(N_SAMPLES):
        seq: list[int] = []
        for layer in range(N_LAYERS):
            if layer:
                seq.append(-1)
            seq += [e for e, _ in reference_pathway(w[s, layer], tau, top_k)]
        seqs.append(seq)
    return np.array([[levenshtein(a, b) for b in seqs] for a in seqs])


def decoded_matrix(m: SimilarityMatrix, checkpoint: str | None = None) -> np.ndarray:
    """The matrix the browser shows for ``checkpoint`` (default the current one)."""
    values = np.frombuffer(m._matrices, dtype=np.dtype(m._dtype).newbyteorder("<"))
    stack = values.reshape(len(m._loaded), m._n, m._n)
    index = m.checkpoints.index(checkpoint or m.checkpoint) if m.checkpoints else 0
    return stack[m._loaded.index(index)]


def test_matrix_from_routing_matches_reference_distances() -> None:
    m = SimilarityMatrix(routing=make_routing(), samples=SAMPLES, order="group")
    assert m.checkpoint == "step-500"
    ref = reference_distances("step-500")
    ids = [f"s{i}" for i in range(N_SAMPLES)]
    np.testing.assert_array_equal(m.distances(), ref)
    # Display order: by group (first appearance), stable inside a group.
    assert m.sample_ids == ["s0", "s2", "s1", "s4", "s3"]
    assert ipc_to_table(m._samples).column("sample_id").to_pylist() == m.sample_ids
    assert ipc_to_table(m._samples).column("group").to_pylist() == ["math"] * 2 + ["code"] * 2 + [
        "web"
    ]
    order = [ids.index(s) for s in m.sample_ids]
    assert m._dtype == "uint16"
    np.testing.assert_array_equal(decoded_matrix(m), ref[np.ix_(order, order)])
    # The pathways for the pair alignment are indexed by display position.
    rows = decoded_rows(m._paths)
    shown = ORDER.index("step-500")
    first = [(layer, e) for c, s, layer, e, _ in rows if s == 0 and c == shown]
    want = [
        (layer, e)
        for layer in range(3)
        for e, _ in reference_pathway(WEIGHTS["step-500"][0, layer], 0.7)
    ]
    assert first == want


def test_matrix_checkpoint_change_recomputes() -> None:
    m = SimilarityMatrix(routing=make_routing(), order="none")
    m.checkpoint = "step-0"
    np.testing.assert_array_equal(decoded_matrix(m), reference_distances("step-0"))
    assert same_rows(
        [r for r in decoded_rows(m._paths) if r[0] == 0],
        reference_rows([0], 0.7),
    )


def test_matrix_cluster_order_puts_similar_samples_together() -> None:
    rng = np.random.default_rng(3)
    cluster = np.array([0, 1, 0, 1, 0, 1, 1, 0])
    d = np.where(cluster[:, None] == cluster[None, :], 1.0, 10.0) + rng.uniform(0, 0.5, (8, 8))
    d = (d + d.T) / 2
    np.fill_diagonal(d, 0)
    m = SimilarityMatrix(d, sample_ids=[f"x{i}" for i in range(8)], order="cluster")
    labels = [cluster[int(s[1:])] for s in m.sample_ids]
    assert sorted(m.sample_ids) == sorted(f"x{i}" for i in range(8))
    assert labels in ([0] * 4 + [1] * 4, [1] * 4 + [0] * 4)
    assert m._dtype == "float32"
    order = [int(s[1:]) for s in m.sample_ids]
    np.testing.assert_allclose(decoded_matrix(m), d[np.ix_(order, order)].astype(np.float32))
    m.order = "none"
    assert m.sample_ids == [f"x{i}" for i in range(8)]


def test_matrix_bytes_on_the_wire_are_the_raw_array() -> None:
    rng = np.random.default_rng(0)
    d = rng.integers(400, 700, size=(300, 300))
    m = SimilarityMatrix(d, groups=["a"] * 300)
    assert (
        m._dtype == "uint16"
        and len(m._matrices) == 300 * 300 * 2 <= 1.2 * d.astype(np.uint16).nbytes
    )
    f = SimilarityMatrix(rng.random((50, 50)))
    assert f._dtype == "float32" and len(f._matrices) == 50 * 50 * 4


def test_matrix_selected_pair_is_validated() -> None:
    m = SimilarityMatrix(np.zeros((3, 3)), sample_ids=["a", "b", "c"])
    m.selected_pair = ["a", "c"]
    assert m.selected_pair == ["a", "c"]
    with pytest.raises(traitlets.TraitError):
        m.selected_pair = ["a"]
    with pytest.raises(traitlets.TraitError, match="zz"):
        m.selected_pair = ["a", "zz"]
    with pytest.raises(ValueError, match="square"):
        SimilarityMatrix(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="routing"):
        SimilarityMatrix()


def test_matrix_update_keeps_the_settings_and_sends_the_new_matrix() -> None:
    routing = make_routing()
    m = SimilarityMatrix(routing=first_samples(routing, 3), samples=SAMPLES, order="cluster")
    m.order, m.checkpoint, m.size, m.selected_pair = "none", "step-0", 300, ["s2", "s0"]
    assert m.distances().shape == (3, 3)  # cached for step-0
    m.update(routing, samples=SAMPLES)
    assert (m.order, m.checkpoint, m.size, m.selected_pair) == ("none", "step-0", 300, ["s2", "s0"])
    assert m.sample_ids == [f"s{i}" for i in range(N_SAMPLES)]
    np.testing.assert_array_equal(m.distances(), reference_distances("step-0"))
    np.testing.assert_array_equal(decoded_matrix(m), reference_distances("step-0"))
    fresh = SimilarityMatrix(routing=routing, samples=SAMPLES, order="none", checkpoint="step-0")
    for name in (
        "_matrices",
        "_loaded",
        "_range",
        "_dtype",
        "_n",
        "_samples",
        "_paths",
        "_n_layers",
    ):
        assert getattr(m, name) == getattr(fresh, name), name
    m.order = "group"  # the observers act on the new data
    assert m.sample_ids == ["s0", "s2", "s1", "s4", "s3"]


def test_matrix_update_drops_what_the_new_data_lacks() -> None:
    from grokviz.errors import EmptyInputError

    routing = make_routing()
    m = SimilarityMatrix(routing=routing, checkpoint="step-0", order="none")
    m.selected_pair = ["s4", "s1"]
    m.update(first_samples(routing, 3).filter(pl.col("checkpoint") != "step-0"))
    assert m.checkpoint == "step-500" and m.selected_pair == []
    np.testing.assert_array_equal(decoded_matrix(m), reference_distances("step-500")[:3, :3])
    before = (m._matrices, m._samples, m._paths)
    with pytest.raises(EmptyInputError, match="empty"):
        m.update(routing.clear())
    with pytest.raises(EmptyInputError, match="empty"):
        SimilarityMatrix(routing=routing.clear())
    assert (m._matrices, m._samples, m._paths) == before


# -- export and packaging -----------------------------------------------------------------------


def test_to_html_is_offline_and_carries_the_state(tmp_path: Path) -> None:
    d = PathwayDiagram(make_routing(), samples=SAMPLES, theme="dark")
    out = d.to_html(tmp_path / "diagram.html")
    html = out.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*\bsrc=", html)  # everything inline
    assert not re.search(r"""(src|href)=["']https?://""", html)
    match = re.search(
        r'<script type="application/vnd.jupyter.widget-state\+json">(.*?)</script>', html, re.S
    )
    assert match is not None
    state = json.loads(match.group(1))["state"]
    ours = [m for m in state.values() if m["state"].get("_view") == "pathway_diagram"]
    assert len(ours) == 1
    model = ours[0]
    assert model["state"]["theme"] == "dark"  # drop_defaults=False keeps every trait
    assert model["state"]["checkpoints"] == ORDER
    assert "widgets.js" not in model["state"]["_esm"][:200]  # the bundle itself, not a path
    assert {b["path"][0] for b in model["buffers"]} >= {"_paths", "_samples"}
    assert 'define("anywidget"' in html
    # Only this widget's state, not every widget alive in the kernel.
    other = SimilarityMatrix(np.zeros((2, 2)))
    html2 = d.to_html(tmp_path / "again.html").read_text(encoding="utf-8")
    assert other.model_id not in html2 and d.model_id in html2


def test_widgets_package_imports_lazily() -> None:
    code = (
        "import sys, grokviz.widgets as w; assert 'anywidget' not in sys.modules; "
        "assert {'PathwayDiagram', 'SimilarityMatrix', 'Timeline', 'Explorer'} <= set(dir(w))"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- views made empty, compared checkpoints, one pathway definition, exports --------------------


def test_views_made_empty_say_so_and_fill_on_update() -> None:
    d = PathwayDiagram.empty(samples=SAMPLES, top_k=2)
    assert (d.checkpoints, d.sample_ids, d._paths, d._n_layers) == ([], [], b"", 0)
    assert ipc_to_table(d._samples).num_rows == 0
    assert d._palette["groups"] == sorted(SAMPLES["domain"].unique())  # colours known already
    d.update(make_routing(), samples=SAMPLES)
    assert d.checkpoints == ORDER and d.top_k == 2
    assert same_rows(decoded_rows(d._paths), reference_rows([0, 1, 2], None, top_k=2))
    d.clear()
    assert (d.checkpoints, d.checkpoint, d.sample_ids, d._paths) == ([], None, [], b"")
    m = SimilarityMatrix.empty(samples=SAMPLES)
    assert (m._n, m._matrices, m._loaded, m.checkpoints) == (0, b"", [], [])
    m.update(make_routing(), samples=SAMPLES)
    order = [m._ids.index(s) for s in m.sample_ids]
    np.testing.assert_array_equal(
        decoded_matrix(m), reference_distances("step-500")[np.ix_(order, order)]
    )
    m.clear()
    assert (m._n, m.checkpoints, m.selected_pair) == (0, [], [])


def test_compare_loads_the_compared_checkpoint_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PathwayDiagram, "_PRELOAD_CELLS", 0)  # large data: a window only
    d = PathwayDiagram(make_routing(), samples=SAMPLES, checkpoint="step-500")
    assert sorted({r[0] for r in decoded_rows(d._paths)}) == [1, 2]
    d.compare = "step-0"
    assert sorted({r[0] for r in decoded_rows(d._paths)}) == [0, 1, 2]
    with pytest.raises(traitlets.TraitError, match="compare='nope'"):
        d.compare = "nope"
    # An HTML page has no kernel to ask: exporting sends every checkpoint.
    d.compare = None
    d._prepare_export()
    assert sorted({r[0] for r in decoded_rows(d._paths)}) == [0, 1, 2]


def test_linked_views_share_one_pathway_definition() -> None:
    from grokviz.widgets import link

    d = PathwayDiagram(make_routing(), samples=SAMPLES, top_k=2)
    m = SimilarityMatrix(routing=make_routing(), samples=SAMPLES)  # tau=0.7 by default
    link(d, m)
    assert (m.tau, m.top_k) == (None, 2)  # the first view's definition
    np.testing.assert_array_equal(m.distances(), reference_distances("step-500", tau=None, top_k=2))
    m.set_pathways(tau=0.5)
    assert (d.tau, d.top_k) == (0.5, None)
    assert same_rows(decoded_rows(d._paths), reference_rows([0, 1, 2], 0.5))
    d.top_k = 3  # setting a trait directly works too
    assert (m.tau, m.top_k) == (None, 3)
    with pytest.raises(ValueError, match="exactly one"):
        d.set_pathways(tau=0.5, top_k=2)


def test_matrix_colour_range_is_fixed_across_checkpoints() -> None:
    m = SimilarityMatrix(routing=make_routing(), samples=SAMPLES)
    ranges = []
    for name in ORDER:
        d = reference_distances(name)
        off = d[~np.eye(N_SAMPLES, dtype=bool)]
        ranges.append((off.min(), off.max()))
    assert m._range == [min(r[0] for r in ranges), max(r[1] for r in ranges)]
    m.checkpoint = "step-0"
    assert m._range == [min(r[0] for r in ranges), max(r[1] for r in ranges)]
    per = SimilarityMatrix(routing=make_routing(), samples=SAMPLES, color_range="checkpoint")
    assert per._range is None
    given = SimilarityMatrix(routing=make_routing(), color_range=(0, 40))
    assert given._range == [0.0, 40.0]
    with pytest.raises(ValueError, match="color_range"):
        SimilarityMatrix(routing=make_routing(), color_range="wide")


def test_matrix_range_of_many_samples_comes_from_a_fixed_subset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(SimilarityMatrix, "_RANGE_SAMPLES", 3)
    monkeypatch.setattr(SimilarityMatrix, "_PRELOAD_CELLS", 0)  # only the shown matrix is computed
    m = SimilarityMatrix(routing=make_routing(), samples=SAMPLES)
    assert m._loaded == [ORDER.index(m.checkpoint)]
    lo, hi = m._range
    shown = m.distances()[~np.eye(N_SAMPLES, dtype=bool)]
    # The shown checkpoint's own pairs are in, the subset's of every checkpoint too.
    assert lo <= shown.min() and hi >= shown.max()
    subset_ranges = []
    rng = np.random.default_rng(0)
    subset = sorted(rng.choice(N_SAMPLES, 3, replace=False))
    for name in ORDER:
        d = reference_distances(name)[np.ix_(subset, subset)]
        off = d[~np.eye(3, dtype=bool)]
        subset_ranges.append((off.min(), off.max()))
    want = (
        min(min(r[0] for r in subset_ranges), shown.min()),
        max(max(r[1] for r in subset_ranges), shown.max()),
    )
    assert (lo, hi) == want
