"""Render times of the grokviz widgets in headless Chromium, and their bytes on the wire.

Loads the real bundle (``grokviz/static/widgets.js``) into a static page with a minimal
anywidget model that holds the exact state the Python widget would send, so the figures time the
front end alone (no kernel, no JupyterLab). Reported against the targets, the named baselines:

* PathwayDiagram, 2,000 samples x 16 layers x 64 experts, in its default mode (route bundles
  sized by the share of each group's samples): first draw < 300 ms, hover redraw < 16 ms (one
  frame at 60 Hz); the compare mode (two panels) is timed too;
* SimilarityMatrix, 2,000 x 2,000: first draw < 300 ms, in its default mode (group means while
  cells would be under one pixel) and showing every pair;
* bytes on the wire (JSON state + binary buffers) / raw value bytes of the arrays sent <= 1.2.

Each figure is printed with its ratio to the target (below 1 meets it); the diagram's figures
also against a baseline drawn in the same run on the same data: one line per sample
(``aggregate="never"``), so that a slow, shared machine shows as both slowing down. Run::

    .venv/bin/python benchmarks/widget_render.py [--samples 2000] [--repeat 5]

Needs Debian's chromium at /usr/bin/chromium (or ``GROKVIZ_CHROMIUM``) and Playwright for Python.
Nothing leaves the machine: every request is answered from memory and anything else is aborted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from grokviz import schema  # noqa: E402

CHROMIUM = os.environ.get("GROKVIZ_CHROMIUM", "/usr/bin/chromium")
ORIGIN = "http://bench.invalid"
TARGETS = {"first draw": 300.0, "hover redraw": 16.0, "wire ratio": 1.2}

PAGE = """<!doctype html><html><head><meta charset="utf-8">
<link rel="stylesheet" href="/widgets.css"></head><body><div id="host"></div>
<script type="module">
import widget from "/widgets.js";

// The part of an anywidget model the views use, over state decoded from the benchmark's JSON.
class Model {
  constructor(state) { this.state = state; this.handlers = new Map(); }
  get(name) { return this.state[name]; }
  set(name, value) {
    this.state[name] = value;
    for (const cb of this.handlers.get(`change:${name}`) ?? []) cb();
  }
  save_changes() {}
  on(name, cb) { if (!this.handlers.has(name)) this.handlers.set(name, []); this.handlers.get(name).push(cb); }
  off(name, cb) { const l = this.handlers.get(name) ?? []; const i = l.indexOf(cb); if (i >= 0) l.splice(i, 1); }
  send() {}
}

function decode(payload) {
  const state = { ...payload.state };
  for (const [key, b64] of Object.entries(payload.buffers)) {
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    state[key] = new DataView(bytes.buffer);  // how ipywidgets hands binary traits over
  }
  return state;
}

window.renderOnce = async (name) => {
  const payload = await (await fetch(`/${name}.json`)).json();
  const host = document.getElementById("host");
  host.replaceChildren();
  const el = document.createElement("div");
  host.append(el);
  const model = new Model(decode(payload));
  const started = performance.now();
  const cleanup = widget.render({ model, el });
  // Reading a pixel back makes Chromium rasterize the deferred canvas drawing now: the time at
  // which the pixels really exist, not just the draw calls.
  for (const canvas of el.querySelectorAll("canvas")) canvas.getContext("2d").getImageData(0, 0, 1, 1);
  const pixels = performance.now() - started;
  await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
  const wall = performance.now() - started;
  window.current = { el, model, cleanup };
  const root = el.firstElementChild;
  return {
    renderMs: Number(el.dataset.renderMs ?? root?.dataset.renderMs ?? NaN),
    rasterMs: Number(el.dataset.rasterMs ?? root?.dataset.rasterMs ?? NaN),
    pixelsMs: pixels,
    wallMs: wall,
  };
};

// Dispatch pointer moves over the overlay canvas and time each synchronous redraw.
window.hoverTimes = (testid, n) => {
  const canvas = document.querySelector(`[data-testid=${testid}]`);
  const box = canvas.getBoundingClientRect();
  const times = [];
  const own = [];
  for (let k = 0; k < n; k++) {
    const x = box.left + box.width * (0.1 + 0.8 * ((k * 0.618) % 1));
    const y = box.top + box.height * (0.1 + 0.8 * ((k * 0.381) % 1));
    const t0 = performance.now();
    canvas.dispatchEvent(new PointerEvent("pointermove", { clientX: x, clientY: y, bubbles: true }));
    canvas.getContext("2d").getImageData(0, 0, 1, 1);  // rasterize, as for the first draw
    times.push(performance.now() - t0);
    const ms = Number(window.current.el.dataset.hoverMs);
    if (!Number.isNaN(ms)) own.push(ms);
  }
  return { times, own };
};
</script></body></html>"""


def _routing(n_samples: int, n_layers: int, n_experts: int, *, seed: int = 0) -> pl.DataFrame:
    """Routing rows of one checkpoint: per-domain favourite experts, Dirichlet noise."""
    rng = np.random.default_rng(seed)
    n_domains = 4
    favourite = rng.integers(0, n_experts, size=(n_domains, n_layers, 6))
    alpha = np.full((n_samples, n_layers, n_experts), 0.05, dtype=np.float64)
    domain = np.arange(n_samples) % n_domains
    for d in range(n_domains):
        for layer in range(n_layers):
            alpha[np.ix_(domain == d, [layer], favourite[d, layer])] += 1.5
    weights = rng.gamma(alpha).astype(np.float32)
    weights /= weights.sum(axis=-1, keepdims=True)
    ids = [f"s{i:05d}" for i in range(n_samples)]
    return pl.DataFrame(
        {
            "checkpoint": "step1000",
            "step": 1000,
            "sample_id": np.repeat(ids, n_layers),
            "layer": np.tile(np.arange(n_layers), n_samples),
            "weights": list(weights.reshape(-1, n_experts)),
        }
    ).pipe(schema.conform, schema.ROUTING, name="routing")


def _samples(routing: pl.DataFrame) -> pl.DataFrame:
    ids = routing["sample_id"].unique(maintain_order=True)
    return pl.DataFrame(
        {"sample_id": ids, "domain": [f"domain{i % 4}" for i in range(len(ids))], "text": "x"}
    )


def _payload(widget: Any) -> tuple[dict[str, Any], int, int]:
    """The widget's state as the page loads it, its bytes on the wire, and raw value bytes."""
    import base64

    import pyarrow as pa
    from ipywidgets.widgets.widget import _remove_buffers

    state, paths, buffers = _remove_buffers(widget.get_state())
    wire = len(json.dumps(state, separators=(",", ":"))) + sum(len(b) for b in buffers)
    raw = 0
    binary: dict[str, str] = {}
    for path, buffer in zip(paths, buffers, strict=True):
        data = bytes(buffer)
        binary[path[0]] = base64.b64encode(data).decode()
        if path[0] == "_matrices":
            raw += len(data)  # already raw little-endian values
            continue
        if not data:
            continue
        table = pa.ipc.open_stream(data).read_all()
        for column in table.columns:
            if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
                raw += sum(len(s.encode()) for s in column.to_pylist())
            else:
                raw += column.type.bit_width // 8 * len(column)
    return {"state": state, "buffers": binary}, wire, raw


def _report(
    name: str, value: float, target: float, unit: str, baseline: float | None = None
) -> None:
    against = (
        "" if baseline is None else f"   {value / baseline:5.2f}x the baseline's {baseline:.1f}"
    )
    print(
        f"{name:<52} {value:9.2f} {unit:<3} target {target:6.1f} ratio {value / target:5.2f}{against}"
    )


def _measure(page: Any, name: str, testid: str, repeat: int, hovers: int) -> dict[str, Any]:
    """Median first draw over ``repeat`` renders (and the cold first one), hover times."""
    runs = [page.evaluate("name => renderOnce(name)", name) for _ in range(repeat)]
    hover = page.evaluate("([t, n]) => hoverTimes(t, n)", [testid, hovers])
    times = sorted(hover["times"])
    return {
        "first": statistics.median(r["renderMs"] for r in runs),
        "cold": runs[0]["renderMs"],
        "pixels": statistics.median(r["pixelsMs"] for r in runs),
        "hover": statistics.median(times),
        "p95": times[int(0.95 * (len(times) - 1))],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--experts", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--hovers", type=int, default=300)
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} not found: install Debian's chromium", file=sys.stderr)
        return 2

    from grokviz.widgets import PathwayDiagram, SimilarityMatrix

    routing = _routing(args.samples, args.layers, args.experts)
    samples = _samples(routing)
    n = args.samples
    rng = np.random.default_rng(1)
    # A symmetric integer distance matrix in the range the paper's OLMoE figures show (480-690).
    upper = rng.integers(480, 690, size=(n, n))
    distances = np.triu(upper, 1) + np.triu(upper, 1).T
    widgets = {
        # The new default: route bundles sized by the share of each group's samples.
        "diagram": PathwayDiagram(routing, samples=samples, width=1100),
        # Two checkpoints side by side (here the same one twice: the data has one checkpoint).
        "compare": PathwayDiagram(routing, samples=samples, width=1100, compare="step1000"),
        # The baseline, measured in the same run: one line per sample (aggregate="never").
        "lines": PathwayDiagram(routing, samples=samples, width=1100, aggregate="never"),
        # Default: group means while cells would be under one pixel; and every pair of samples.
        "matrix": SimilarityMatrix(distances, routing=routing, samples=samples, size=520),
        "matrix_samples": SimilarityMatrix(
            distances, routing=routing, samples=samples, size=520, display="samples"
        ),
    }
    files: dict[str, bytes] = {
        "widgets.js": (REPO / "grokviz/static/widgets.js").read_bytes(),
        "widgets.css": (REPO / "grokviz/static/widgets.css").read_bytes(),
        "index.html": PAGE.encode(),
    }
    sizes: dict[str, tuple[int, int]] = {}
    for name, widget in widgets.items():
        payload, wire, raw = _payload(widget)
        files[f"{name}.json"] = json.dumps(payload).encode()
        sizes[name] = (wire, raw)

    from playwright.sync_api import sync_playwright

    outside: list[str] = []

    def serve(route: Any) -> None:
        url = route.request.url
        if not url.startswith(ORIGIN):
            outside.append(url)
            route.abort()
            return
        name = url[len(ORIGIN) + 1 :] or "index.html"
        kind = {"js": "text/javascript", "css": "text/css", "json": "application/json"}
        mime = kind.get(name.rsplit(".", 1)[-1], "text/html")
        route.fulfill(status=200, body=files[name], content_type=mime)

    print(
        f"grokviz widget render benchmark: {n} samples x {args.layers} layers x "
        f"{args.experts} experts, 4 groups; headless {CHROMIUM}; median of {args.repeat} renders, "
        f"{args.hovers} hovers"
    )
    results: dict[str, dict[str, Any]] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.route("**/*", serve)
        page.goto(f"{ORIGIN}/index.html")
        page.wait_for_function("() => typeof window.renderOnce === 'function'")
        for name in widgets:
            testid = "matrix-overlay" if name.startswith("matrix") else "pathway-overlay"
            results[name] = _measure(page, name, testid, args.repeat, args.hovers)
        browser.close()

    base = results["lines"]
    labels = {
        "diagram": "PathwayDiagram, default (bundles)",
        "compare": "PathwayDiagram, compare (two panels)",
        "lines": "PathwayDiagram, per-sample lines (baseline)",
        "matrix": "SimilarityMatrix, default (group means)",
        "matrix_samples": "SimilarityMatrix, every pair",
    }
    for name, r in results.items():
        against = base if name in ("diagram", "compare") else None
        _report(
            f"{labels[name]}: first draw to pixels",
            r["first"],
            TARGETS["first draw"],
            "ms",
            None if against is None else against["first"],
        )
        _report(
            f"{labels[name]}: cold first draw",
            r["cold"],
            TARGETS["first draw"],
            "ms",
            None if against is None else against["cold"],
        )
        _report(
            f"{labels[name]}: hover redraw, median",
            r["hover"],
            TARGETS["hover redraw"],
            "ms",
            None if against is None else against["hover"],
        )
        _report(
            f"{labels[name]}: hover redraw, p95",
            r["p95"],
            TARGETS["hover redraw"],
            "ms",
            None if against is None else against["p95"],
        )
    for name, (wire, raw) in sizes.items():
        print(
            f"{labels[name] + ': wire / raw bytes':<52} {wire / raw:9.2f}     target "
            f"{TARGETS['wire ratio']:6.1f} ratio {wire / raw / TARGETS['wire ratio']:5.2f}"
            f"   ({wire:,} B on the wire, {raw:,} B raw)"
        )
    if outside:
        print("requests that would have left the machine (aborted):", *outside, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
