"""analyze(), correlate() and `grokviz metrics` on synthetic traces with a known story.

Memorized samples' routing is made progressively more shared across checkpoints while their loss
stays flat and low, so pathway distance must fall and consistency rise (the issue's requirement).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from grokviz import schema
from grokviz.errors import EmptyInputError
from grokviz.metrics import analyze, correlate

STEPS = [0, 100, 200, 300, 400, 500]
N_MEM, N_LATE, N_NEVER, L, K, D = 10, 6, 8, 4, 8, 6


class MemoryTrace:
    """A TraceSource held in memory: what analyze() reads from a TraceStore."""

    def __init__(self, samples, losses, weights, routers):
        self._samples, self._losses = samples, losses
        self._weights, self._routers = weights, routers  # {label: [N,L,K]}, {label: [L,K,D]}

    def checkpoints(self) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "checkpoint": [f"step{s}" for s in STEPS],
                "step": STEPS,
                "tokens": None,
                "source": "mem",
                "revision": None,
                "sha": None,
            }
        )

    def samples(self) -> pl.DataFrame:
        return self._samples

    def losses(self) -> pl.DataFrame:
        return self._losses

    def routing_array(self, checkpoint, *, sample_ids=None):
        ids = self._samples["sample_id"].to_list()
        want = ids if sample_ids is None else list(sample_ids)
        pos = {s: i for i, s in enumerate(ids)}
        return self._weights[checkpoint][[pos[s] for s in want]], want

    def router_array(self, checkpoint):
        return self._routers[checkpoint]


def _story(seed: int = 0) -> MemoryTrace:
    rng = np.random.default_rng(seed)
    n = N_MEM + N_LATE + N_NEVER
    ids = [f"s{i:02d}" for i in range(n)]
    domains = ["math" if i % 2 else "code" for i in range(n)]
    samples = pl.DataFrame({"sample_id": ids, "text": ids, "domain": domains, "split": "train"})
    # losses: N_MEM memorized from step 200, N_LATE from 300, the rest never (high, noisy)
    rows = []
    for i, sid in enumerate(ids):
        for j, step in enumerate(STEPS):
            if i < N_MEM:
                loss = 4.0 if j < 2 else 0.3 + 0.001 * i
            elif i < N_MEM + N_LATE:
                loss = 4.0 if j < 3 else 0.5 + 0.001 * i
            else:
                loss = 3.0 + rng.uniform(-0.5, 0.5)
            rows.append(
                {
                    "checkpoint": f"step{step}",
                    "step": step,
                    "sample_id": sid,
                    "loss": loss,
                    "n_tokens": 16,
                }
            )
    losses = pl.DataFrame(rows)
    # routing: each sample's own random routing, mixed ever more with one shared peaked route
    private = rng.dirichlet(np.ones(K) * 2.0, size=(n, L))
    shared_expert = rng.integers(0, K, size=L)
    shared = np.full((L, K), 0.02)
    shared[np.arange(L), shared_expert] = 1 - 0.02 * (K - 1)
    # the shared experts' router rows point the same way, so the shared route is smooth
    routers = rng.normal(size=(L, K, D))
    u = rng.normal(size=D)
    routers[np.arange(L), shared_expert] = u * 3
    weights, router_by = {}, {}
    for j, step in enumerate(STEPS):
        a = j / len(STEPS)  # 0 .. 0.83
        weights[f"step{step}"] = ((1 - a) * private + a * shared[None]).astype(np.float32)
        router_by[f"step{step}"] = routers.astype(np.float32)
    return MemoryTrace(samples, losses, weights, router_by)


def _series(metrics: pl.DataFrame, group: str, metric: str) -> np.ndarray:
    part = metrics.filter(pl.col("group") == group, pl.col("metric") == metric).sort("step")
    assert part["step"].to_list() == STEPS
    return part["value"].to_numpy()


@pytest.fixture(scope="module")
def story() -> MemoryTrace:
    return _story()


@pytest.fixture(scope="module")
def metrics(story: MemoryTrace) -> pl.DataFrame:
    return analyze(story, eps=1.0, progress=False, n_boot=200)


def test_distance_falls_and_consistency_rises(metrics: pl.DataFrame) -> None:
    for group in ("global", "code", "math", "Pretrain@200", "Pretrain@300"):
        assert np.all(np.diff(_series(metrics, group, "distance")) < 0), group
        assert np.all(np.diff(_series(metrics, group, "consistency")) > 0), group
        np.testing.assert_allclose(
            _series(metrics, group, "complexity"), 1 - _series(metrics, group, "consistency")
        )


def test_frame_shape_groups_and_schema(metrics: pl.DataFrame) -> None:
    assert metrics.schema == pl.Schema(schema.METRICS)
    assert set(metrics["group"]) == {"global", "code", "math", "Pretrain@200", "Pretrain@300"}
    assert set(metrics["metric"]) == {"distance", "consistency", "complexity", "loss", "entropy"}
    # one row per checkpoint x group x metric
    assert metrics.height == len(STEPS) * 5 * 5
    assert metrics.select("checkpoint", "group", "metric").is_unique().all()


def test_only_memorized_samples_are_analyzed(story: MemoryTrace, metrics: pl.DataFrame) -> None:
    # the global loss is the mean over the 16 memorized samples only, never the flat-3.0 ones
    losses = story.losses().filter(pl.col("step") == 400)
    memorized = [f"s{i:02d}" for i in range(N_MEM + N_LATE)]
    expected = losses.filter(pl.col("sample_id").is_in(memorized))["loss"].mean()
    got = metrics.filter(group="global", metric="loss", step=400)["value"][0]
    assert got == pytest.approx(expected)
    late = [f"s{i:02d}" for i in range(N_MEM, N_MEM + N_LATE)]
    expected = losses.filter(pl.col("sample_id").is_in(late))["loss"].mean()
    got = metrics.filter(group="Pretrain@300", metric="loss", step=400)["value"][0]
    assert got == pytest.approx(expected)


def _levenshtein(a: list[int], b: list[int]) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def _pathway(g: np.ndarray, tau: float) -> list[int]:
    out: list[int] = []
    for layer, w in enumerate(g):
        order = np.argsort(-w, kind="stable")
        keep = int(np.searchsorted(np.cumsum(w[order]) > tau, True)) + 1
        out += ([K] if layer else []) + order[:keep].tolist()
    return out


def test_distance_and_consistency_values_match_references(
    story: MemoryTrace, metrics: pl.DataFrame
) -> None:
    ids = [f"s{i:02d}" for i in range(N_MEM)]
    g, _ = story.routing_array("step300", sample_ids=ids)
    paths = [_pathway(x.astype(np.float64), 0.7) for x in g]
    expected = np.mean([_levenshtein(a, b) for a, b in itertools.combinations(paths, 2)])
    row = metrics.filter(group="Pretrain@200", metric="distance", step=300).row(0, named=True)
    assert row["value"] == pytest.approx(expected)
    assert row["ci_low"] is None  # exact over all pairs: no interval

    w = story.router_array("step300").astype(np.float64)
    emb = np.einsum("nlk,lkd->nld", g.astype(np.float64), w)
    cos = np.array(
        [
            [
                e[j] @ e[j + 1] / np.linalg.norm(e[j]) / np.linalg.norm(e[j + 1])
                for j in range(L - 1)
            ]
            for e in emb
        ]
    )
    cons = (cos / (cos.max(axis=1, keepdims=True) + 1e-8)).mean(axis=1)
    row = metrics.filter(group="Pretrain@200", metric="consistency", step=300).row(0, named=True)
    assert row["value"] == pytest.approx(cons.mean(), rel=1e-5)
    assert row["ci_low"] < row["value"] < row["ci_high"]

    from scipy.stats import entropy

    expected = np.mean([[entropy(x[j]) for j in range(L)] for x in g.astype(np.float64)])
    row = metrics.filter(group="Pretrain@200", metric="entropy", step=300).row(0, named=True)
    assert row["value"] == pytest.approx(expected, rel=1e-5)


def test_per_layer_groups_and_options(story: MemoryTrace) -> None:
    out = analyze(
        story, eps=1.0, groups="global", per_layer=True, layers=[0, 2, 3], n_boot=0, progress=False
    )
    assert set(out["group"]) == {"global"}
    assert {"distance@L0", "distance@L2", "distance@L3"} <= set(out["metric"])
    assert "distance@L1" not in set(out["metric"])
    assert (
        out.filter(pl.col("metric") != "distance")["ci_low"].null_count()
        == out.filter(pl.col("metric") != "distance").height
    )
    # a layer's distance is that of the layer's expert lists alone (reference: tests' Levenshtein)
    ids = [f"s{i:02d}" for i in range(N_MEM + N_LATE)]
    g, _ = story.routing_array("step500", sample_ids=ids)
    lists = [_pathway(x[2:3].astype(np.float64), 0.7) for x in g]
    expected = np.mean([_levenshtein(a, b) for a, b in itertools.combinations(lists, 2)])
    assert out.filter(step=500, metric="distance@L2")["value"][0] == pytest.approx(expected)
    # aligning layer by layer, the whole-path distance is at most the sum over layers
    at = out.filter(step=500)
    total = at.filter(metric="distance")["value"][0]
    per = float(at.filter(pl.col("metric").str.starts_with("distance@"))["value"].sum())
    assert total <= per + 1e-9
    top = analyze(story, eps=1.0, groups=["global"], top_k=1, n_pairs=20, progress=False)
    row = top.filter(metric="distance", step=0).row(0, named=True)
    assert row["ci_low"] is not None and row["ci_low"] <= row["value"] <= row["ci_high"]


def test_memorized_only_false_and_no_memorized_error(story: MemoryTrace) -> None:
    everyone = analyze(story, eps=1.0, groups="global", memorized_only=False, progress=False)
    losses = story.losses().filter(pl.col("step") == 0)["loss"].mean()
    assert everyone.filter(metric="loss", step=0)["value"][0] == pytest.approx(losses)
    with pytest.raises(EmptyInputError, match="memorized_only=False"):
        analyze(story, eps=0.1, progress=False)
    with pytest.raises(ValueError, match="groups must be"):
        analyze(story, eps=1.0, groups="tokens", progress=False)  # type: ignore[arg-type]


def test_accuracy_rows_and_correlate(story: MemoryTrace) -> None:
    acc = pl.DataFrame(
        {
            "checkpoint": [f"step{s}" for s in STEPS],
            "step": STEPS,
            "task": "math",
            "accuracy": [0.05, 0.1, 0.2, 0.35, 0.5, 0.6],
        }
    )
    out = analyze(story, eps=1.0, groups="global", accuracy=acc, progress=False)
    assert out.filter(metric="accuracy")["value"].to_list() == acc["accuracy"].to_list()
    corr = correlate(out, acc)
    dist = corr.filter(metric="distance").row(0, named=True)
    assert dist["spearman_r"] == pytest.approx(-1.0)
    assert dist["pearson_r"] < -0.9
    assert corr.filter(metric="consistency")["spearman_r"][0] == pytest.approx(1.0)
    assert "accuracy" not in set(corr["metric"])


# --- a real TraceStore on disk, and the CLI ---------------------------------------------------


def _write_store(story: MemoryTrace, path: Path) -> Path:
    """Write the story as a trace store folder, through the store's public writer."""
    from grokviz.store import StoreWriter

    samples = story.samples()
    store = StoreWriter.create_or_open(path, samples, params={}, shard_size=samples.height)
    for step in STEPS:
        label = f"step{step}"
        identity = {
            "label": label,
            "step": step,
            "tokens": None,
            "source": "synthetic",
            "revision": None,
            "sha": f"sha{step}",
        }
        info = {"model_type": "olmoe", "num_layers": L, "num_experts": K, "top_k": 2}
        store.add_checkpoint(identity, info)
        w = story.router_array(label)
        store.write_routers(
            label,
            pl.DataFrame(
                {
                    "checkpoint": label,
                    "step": step,
                    "layer": np.repeat(np.arange(L), K),
                    "expert": np.tile(np.arange(K), L),
                    "vector": w.reshape(L * K, D).tolist(),
                },
            ).pipe(schema.conform, schema.ROUTERS, name="routers"),
        )
        g, ids = story.routing_array(label)
        routing = pl.DataFrame(
            {
                "checkpoint": label,
                "step": step,
                "sample_id": np.repeat(ids, L),
                "layer": np.tile(np.arange(L), len(ids)),
                "weights": g.reshape(-1, K).tolist(),
            }
        ).pipe(schema.conform, schema.ROUTING, name="routing")
        losses = story.losses().filter(pl.col("checkpoint") == label)
        empty = pl.DataFrame(schema=schema.TOKEN_ROUTING)
        store.write_part(
            label,
            0,
            {
                "losses": schema.conform(losses, schema.LOSSES, name="l"),
                "routing": routing,
                "token_routing": empty,
            },
        )
    return path


@pytest.fixture(scope="module")
def store_path(story: MemoryTrace, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_store(story, tmp_path_factory.mktemp("store") / "trace")


def test_trace_store_gives_the_same_metrics(store_path: Path, metrics: pl.DataFrame) -> None:
    from_disk = analyze(str(store_path), eps=1.0, progress=False, n_boot=200)
    joined = from_disk.join(metrics, on=["step", "group", "metric"], suffix="_mem")
    assert joined.height == metrics.height
    np.testing.assert_allclose(joined["value"], joined["value_mem"], rtol=1e-6)


def test_cli_writes_frame_and_prints_summary(
    store_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from grokviz.cli import main

    acc = tmp_path / "acc.csv"
    pl.DataFrame(
        {
            "checkpoint": [f"step{s}" for s in STEPS],
            "step": STEPS,
            "task": "math",
            "accuracy": [0.05, 0.1, 0.2, 0.35, 0.5, 0.6],
        }
    ).write_csv(acc)
    out = tmp_path / "m.parquet"
    rc = main(
        [
            "metrics",
            str(store_path),
            "--eps",
            "1.0",
            "--accuracy",
            str(acc),
            "--out",
            str(out),
            "--per-layer",
            "--no-progress",
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "distance" in printed and "consistency" in printed and "spearman" in printed
    frame = pl.read_parquet(out)
    assert {"distance@L0", "distance"} <= set(frame["metric"])
    csv = tmp_path / "m.csv"
    assert (
        main(
            [
                "metrics",
                str(store_path),
                "--eps",
                "1.0",
                "--out",
                str(csv),
                "--top-k",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    assert pl.read_csv(csv).height > 0


def test_cli_errors_are_one_line_exit_2(
    store_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from grokviz.cli import main

    assert main(["metrics", str(tmp_path / "nowhere"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("grokviz metrics: ") and "\n" not in err
    assert main(["metrics", str(store_path), "--eps", "0.05", "--no-progress"]) == 2
    assert "larger eps" in capsys.readouterr().err


def test_real_trace_of_tiny_olmoe_checkpoints(tmp_path: Path) -> None:
    """End to end: tiny OLMoE checkpoints -> grokviz.trace -> analyze, checked by hand."""
    torch = pytest.importorskip("torch")
    from grokviz import trace
    from grokviz.metrics.consistency import consistency
    from grokviz.testing import char_tokenizer, tiny_moe

    tok = char_tokenizer()
    for i, step in enumerate([10, 20, 30]):
        model = tiny_moe("olmoe", num_hidden_layers=3)
        with torch.no_grad():  # nearby weights: losses move by far less than delta
            for p in model.parameters():
                p.add_(1e-5 * i * torch.randn_like(p))
        model.save_pretrained(tmp_path / "run" / f"step{step}")
        tok.save_pretrained(tmp_path / "run" / f"step{step}")
    texts = [f"sample {i}: {'abc' * (i % 4)} xyz" for i in range(10)]
    samples = pl.DataFrame(
        {
            "sample_id": [f"s{i}" for i in range(10)],
            "text": texts,
            "domain": ["a", "b"] * 5,
            "split": "train",
        }
    )
    store = trace(str(tmp_path / "run"), samples, tmp_path / "store", progress=False)
    out = analyze(store, eps=10.0, progress=False, n_boot=50)
    assert set(out["group"]) == {"global", "a", "b", "Pretrain@10"}
    assert set(out["step"]) == {10, 20, 30}
    g, _ = store.routing_array("step20")
    paths = [_pathway(x.astype(np.float64), 0.7) for x in g]
    expected = np.mean([_levenshtein(a, b) for a, b in itertools.combinations(paths, 2)])
    assert out.filter(group="global", metric="distance", step=20)["value"][0] == pytest.approx(
        expected
    )
    cons = consistency(g, store.router_array("step20")).mean()
    got = out.filter(group="global", metric="consistency", step=20)["value"][0]
    assert got == pytest.approx(cons, rel=1e-6)
    losses = store.losses().filter(pl.col("step") == 20)["loss"].mean()
    assert out.filter(group="global", metric="loss", step=20)["value"][0] == pytest.approx(losses)


class _PaperSized:
    """Two checkpoints of 230 samples routed like the paper's model (16 layers x 64 experts)."""

    def __init__(self) -> None:
        rng = np.random.default_rng(3)
        self.ids = [f"p{i:03d}" for i in range(230)]
        self.weights = {
            f"c{c}": rng.dirichlet(np.full(64, 2.0), size=(230, 16)).astype(np.float32)
            for c in range(2)
        }
        self.routers = rng.normal(size=(16, 64, 8)).astype(np.float32)

    def checkpoints(self) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "checkpoint": ["c0", "c1"],
                "step": [0, 100],
                "tokens": None,
                "source": "mem",
                "revision": None,
                "sha": None,
            }
        )

    def samples(self) -> pl.DataFrame:
        return pl.DataFrame(
            {"sample_id": self.ids, "text": self.ids, "domain": "d", "split": "train"}
        )

    def losses(self) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "checkpoint": ["c0"] * 230 + ["c1"] * 230,
                "step": [0] * 230 + [100] * 230,
                "sample_id": self.ids * 2,
                "loss": [1.0] * 460,
                "n_tokens": [8] * 460,
            }
        )

    def routing_array(self, checkpoint, *, sample_ids=None):
        return self.weights[checkpoint], self.ids

    def router_array(self, checkpoint):
        return self.routers


def test_default_distance_is_exact_when_affordable_and_sampled_with_its_error_otherwise(
    story: MemoryTrace, metrics: pl.DataFrame
) -> None:
    import warnings

    from grokviz.metrics.distance import SampledDistanceWarning

    # the story's short pathways: every distance is exact by default, and nothing is said
    with warnings.catch_warnings():
        warnings.simplefilter("error", SampledDistanceWarning)
        exact_story = analyze(story, eps=1.0, progress=False, n_boot=200, n_pairs=None)
    from polars.testing import assert_frame_equal

    assert_frame_equal(metrics, exact_story)
    # 230 pathways of about 467 symbols: 26,335 pairs, more than "auto" affords, so about
    # 20,000 of them are sampled; the row states its interval, which holds the exact mean
    source = _PaperSized()
    kwargs = {"groups": "global", "memorized_only": False, "eps": 2.0, "n_boot": 0}
    kwargs["progress"] = False
    with pytest.warns(SampledDistanceWarning, match=r"2 of 2 distance values .* 20,1\d\d-20,1\d\d"):
        sampled = analyze(source, **kwargs)
    exact = analyze(source, n_pairs=None, **kwargs)
    rows = [
        f.filter(metric="distance").sort("step").iter_rows(named=True) for f in (sampled, exact)
    ]
    for s, e in zip(*rows, strict=True):
        assert e["ci_low"] is None and s["ci_low"] is not None
        assert s["ci_low"] < e["value"] < s["ci_high"]
        assert s["ci_high"] - s["ci_low"] < 0.01 * e["value"]
        assert s["value"] != e["value"]  # really an estimate
