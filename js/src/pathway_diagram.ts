// PathwayDiagram view. Python side: grokviz/widgets/pathway_diagram.py (trait names mirror it).
//
// Layers run left to right, experts top to bottom. Each sample's pathway is drawn as edges between
// the experts it uses in consecutive layers, width from the product of the two routing weights,
// colour from its group. Many samples are drawn as per-group edge bundles (one batched path per
// colour and width level) instead of one polyline each; the hovered and selected samples are drawn
// on an overlay canvas so hovering never redraws the bundles. The checkpoint slider morphs between
// two loaded checkpoints by interpolating edge and node weights. Large batches are rasterized as
// layered hairlines (raster.ts): Chromium's software rasterizer takes ~1 s to fill wide strokes of
// tens of thousands of segments. The data side (decoding, cached derived values) is pathway_data.ts.
import { categorical, type Theme } from "./color";
import { aggregate, bracket, edgeCount, entries, ease, mix, type GapEdges, type GapIndex, type Snapshot } from "./pathways";
import {
  axes,
  buffers,
  bundleSegments,
  LEVELS,
  linesInto,
  MARGIN,
  nodeDots,
  pathwaySegments,
  routeInto,
  sampleSegments,
} from "./diagram_scene";
import { derived, gapsOf, hoverIndex, loadData, type Derived } from "./pathway_data";
import { band, segmentDistance2, type Band } from "./scales";
import { emptyScene, renderCanvas, type SegmentBuffer, type Scene } from "./scene";
import {
  coalesce,
  Disposer,
  Layer,
  download,
  element,
  hideTooltip,
  now,
  rasterize,
  shell,
  showTooltip,
  toPng,
  toSvgUrl,
  type ModelLike,
} from "./view";

interface Hit {
  sample: number;
  layer: number;
  expert: number;
  weight: number;
  /** How many samples share the hovered edge. */
  shared: number;
}

export function render({ model, el }: { model: ModelLike; el: HTMLElement }): () => void {
  const renderStarted = now();
  const disposer = new Disposer();
  const base = new Layer("pathway-base");
  const overlay = new Layer("pathway-overlay", true);
  let data = loadData(model);
  let position = indexOf(model);
  let scene: Scene | null = null;
  let overlayScene: Scene | null = null;
  let hover: Hit | null = null;
  let firstDraw = true;
  let frame = 0;
  let animation = 0;
  /** True while the slider is dragged or playing: the view, not the trait, leads the position. */
  let steering = false;
  let x: Band = band(1, [0, 1]);
  let y: Band = band(1, [0, 1]);

  const ui = shell(el, model, disposer, {
    testid: "grokviz-pathway-diagram",
    onExport,
    onTheme: () => draw(),
  });
  const legend = element("div", { class: "grokviz-legend", "data-testid": "group-legend" });
  ui.toolbar.prepend(legend);
  const tokenStrip = element("div", { class: "grokviz-tokens", "data-testid": "token-strip" });
  ui.stage.before(tokenStrip);
  ui.stage.append(base.canvas, overlay.canvas);
  const slider = element("div", { class: "grokviz-slider" });
  const play = element("button", { class: "grokviz-button", "data-testid": "play", title: "Play through checkpoints" }, "▶");
  const range = element("input", { type: "range", min: "0", step: "0.01", "data-testid": "checkpoint-slider" });
  const label = element("span", { class: "grokviz-label", "data-testid": "checkpoint-label" });
  slider.append(play, range, label);
  ui.root.append(slider);

  function checkpoints(): string[] {
    return (model.get("checkpoints") as string[] | null) ?? [];
  }

  function loaded(): number[] {
    return [...data.snapshots.keys()];
  }

  function bundled(snap: Snapshot): boolean {
    const setting = String(model.get("aggregate") ?? "auto");
    if (setting === "always") return true;
    if (setting === "never") return false;
    return edgeCount(snap) > 40_000;
  }

  function colorOf(g: number, theme: Theme): string {
    return data.groupNames.length <= 1 ? (theme.dark ? "#8ab4f8" : "#4e79a7") : categorical(g);
  }

  function layout(): void {
    const width = Number(model.get("width") ?? 760) || 760;
    const height = Number(model.get("height") ?? 440) || 440;
    if (base.width !== width || base.height !== height) {
      base.resize(width, height);
      overlay.resize(width, height);
    }
    x = band(data.nLayers, [MARGIN.left, width - MARGIN.right]);
    y = band(data.nExperts, [MARGIN.top, height - MARGIN.bottom]);
  }

  function buildScene(): Scene {
    const theme = ui.theme;
    const s = emptyScene(base.width, base.height, theme.background, theme.font);
    axes(s, x, y, theme);
    const [a, b, t0] = bracket(position, loaded());
    const snapA = data.snapshots.get(a);
    const snapB = data.snapshots.get(b);
    const L = data.nLayers;
    const K = data.nExperts;
    if (snapA == null || snapB == null || L === 0 || K === 0) return s;
    const t = ease(t0);
    const G = Math.max(1, data.groupNames.length);
    const maxWidth = Math.max(1.5, Math.min(10, y.step * 0.9));
    let segments: SegmentBuffer[];
    if (bundled(snapA) || bundled(snapB)) {
      const dA = derived(data, a) as Derived;
      const dB = derived(data, b) as Derived;
      dA.flow ??= aggregate(snapA, data.groupOf, G, K);
      dB.flow ??= aggregate(snapB, data.groupOf, G, K);
      const flow = t === 0 ? dA.flow : t === 1 ? dB.flow : mix(dA.flow, dB.flow, t);
      segments = bundleSegments(flow, G, L - 1, x, y);
    } else {
      // Per-sample edges; during a morph the two checkpoints' edges cross-fade.
      segments = buffers(G * LEVELS);
      for (const [c, f] of [
        [a, 1 - t],
        [b, t],
      ] as const) {
        if (f <= 0) continue;
        const all = Array.from({ length: L - 1 }, (_, l) => gapsOf(data, c, l) as GapEdges);
        sampleSegments(segments, all, data.groupOf, f, x, y);
      }
    }
    const alpha = data.sampleIds.length > 50 ? 0.35 : 0.6;
    for (let g = 0; g < G; g++) {
      linesInto(s, segments.slice(g * LEVELS, (g + 1) * LEVELS), colorOf(g, theme), alpha, maxWidth);
    }
    const massA = (derived(data, a) as Derived).mass;
    const massB = (derived(data, b) as Derived).mass;
    nodeDots(s, t === 0 ? massA : mix(massA, massB, t), x, y, theme.muted);
    return s;
  }

  /**
   * The sample under the pointer: the nearest drawn edge (among the K×K distinct segments of the gap
   * under x) within a few pixels, reported for the sample with the largest weight on it.
   */
  function hitTest(px: number, py: number): Hit | null {
    if (data.nLayers < 2) return null;
    const [a, b, t] = bracket(position, loaded());
    const c = t < 0.5 ? a : b;
    const snap = data.snapshots.get(c);
    if (snap == null) return null;
    const l = Math.floor((px - x(0)) / x.step);
    if (l < 0 || l >= data.nLayers - 1) return null;
    const index = hoverIndex(data, c, l) as GapIndex;
    const K = data.nExperts;
    const x0 = x(l);
    const x1 = x(l + 1);
    let best = 36; // squared pixels
    let bestP = -1;
    let bestT = 0;
    for (let p = 0; p < K * K; p++) {
      if (index.count[p] === 0) continue;
      const [d2, along] = segmentDistance2(px, py, x0, y((p / K) | 0), x1, y(p % K));
      if (d2 < best || (d2 === best && bestP >= 0 && index.bestWeight[p] > index.bestWeight[bestP])) {
        best = d2;
        bestP = p;
        bestT = along;
      }
    }
    if (bestP < 0) return null;
    const s = index.best[bestP];
    const layer = bestT < 0.5 ? l : l + 1;
    const expert = bestT < 0.5 ? (bestP / K) | 0 : bestP % K;
    const { expert: ex, weight: wx } = entries(snap, s, layer);
    let weight = 0;
    for (let i = 0; i < ex.length; i++) if (ex[i] === expert) weight = wx[i];
    return { sample: s, layer, expert, weight, shared: index.count[bestP] };
  }

  function drawOverlay(since?: number): void {
    const started = since ?? now();
    const theme = ui.theme;
    const s = emptyScene(overlay.width, overlay.height, "transparent", theme.font);
    const [a, b, t] = bracket(position, loaded());
    const snap = data.snapshots.get(t < 0.5 ? a : b);
    const maxWidth = Math.max(2.5, Math.min(12, y.step));
    const index = new Map(data.sampleIds.map((id, i) => [id, i]));
    const selected = ((model.get("selected_samples") as string[] | null) ?? [])
      .map((id) => index.get(id))
      .filter((i): i is number => i != null);
    const emit = (samples: number[], color: string, alpha: number) => {
      if (snap == null || samples.length === 0) return;
      const out = buffers(LEVELS);
      for (const smp of samples) pathwaySegments(out, snap, smp, x, y);
      linesInto(s, out, color, alpha, maxWidth);
    };
    emit(selected, theme.foreground, 0.85);
    if (hover != null) emit([hover.sample], theme.accent, 0.95);
    const token = model.get("selected_token") as number | null;
    if (model.get("mode") === "tokens" && token != null) {
      routeInto(s, data.routes.get(token) ?? [], x, y, theme.accent, theme.background);
    }
    if (hover != null) {
      s.dots.push({
        color: theme.accent,
        alpha: 1,
        xyr: new Float32Array([x(hover.layer), y(hover.expert), Math.max(3, Math.min(7, y.step * 0.5))]),
        count: 1,
        stroke: theme.background,
      });
    }
    renderCanvas(overlay.ctx, s);
    overlayScene = s;
    const ms = now() - started;
    ui.root.dataset.hoverMs = ms.toFixed(2);
    el.dataset.hoverMs = ms.toFixed(2);
  }

  function draw(): void {
    const started = now();
    layout();
    scene = buildScene();
    renderCanvas(base.ctx, scene);
    base.canvas.style.opacity = model.get("mode") === "tokens" ? "0.35" : "1";
    drawOverlay();
    const ms = now() - started;
    ui.root.dataset.drawMs = ms.toFixed(2);
    el.dataset.drawMs = ms.toFixed(2);
    if (firstDraw) {
      // First draw is timed from render() start (decoding the data is part of it) until the pixels
      // exist: Chromium defers canvas rasterization, and reading a pixel back forces it now.
      firstDraw = false;
      const drawn = now();
      rasterize(base, overlay);
      const end = now();
      for (const node of [ui.root, el]) {
        node.dataset.renderMs = (end - renderStarted).toFixed(2);
        node.dataset.rasterMs = (end - drawn).toFixed(2);
      }
    }
    ui.root.dataset.drawCount = String(Number(ui.root.dataset.drawCount ?? 0) + 1);
    updateLabel();
  }

  function schedule(): void {
    if (frame) return;
    frame = requestAnimationFrame(() => {
      frame = 0;
      draw();
    });
  }

  function updateLabel(): void {
    const names = checkpoints();
    const [a, b, t] = bracket(position, loaded());
    const name = (i: number) => names[i] ?? String(i);
    label.textContent = a < 0 ? "no data" : t > 0 && a !== b ? `${name(a)} → ${name(b)} (${Math.round(t * 100)}%)` : name(a);
  }

  function updateLegend(): void {
    const items = data.groupNames.length > 1 ? data.groupNames : [];
    legend.replaceChildren(
      ...items.map((name, g) => {
        const item = element("span", {}, "");
        const sw = element("span", { class: "grokviz-swatch" });
        sw.style.background = categorical(g);
        item.append(sw, document.createTextNode(name || "(none)"));
        return item;
      }),
    );
  }

  function updateSlider(): void {
    const n = checkpoints().length;
    range.max = String(Math.max(0, n - 1));
    range.disabled = n < 2;
    play.disabled = n < 2;
    range.value = String(position);
  }

  function updateTokens(): void {
    const on = model.get("mode") === "tokens";
    tokenStrip.style.display = on ? "flex" : "none";
    if (!on) return;
    const current = model.get("selected_token") as number | null;
    tokenStrip.replaceChildren(
      ...data.tokens.index.map((ti, k) => {
        const chip = element("span", { class: "grokviz-token", "data-token-index": String(ti), role: "button" }, data.tokens.text[k] ?? "");
        chip.setAttribute("aria-pressed", String(ti === current));
        return chip;
      }),
    );
  }

  /** Ask Python for the checkpoints around `pos` when they are not loaded yet. */
  function request(pos: number): void {
    const names = checkpoints();
    const lo = Math.max(0, Math.min(names.length - 1, Math.floor(pos)));
    const hi = Math.min(names.length - 1, lo + 1);
    const have = loaded();
    if ((!have.includes(lo) || !have.includes(hi)) && model.get("checkpoint") !== names[lo]) {
      model.set("checkpoint", names[lo]);
      model.save_changes();
    }
  }

  function animateTo(target: number, ms: number): void {
    cancelAnimationFrame(animation);
    const from = position;
    const started = now();
    const step = () => {
      const f = Math.min(1, (now() - started) / ms);
      position = from + (target - from) * f;
      range.value = String(position);
      draw();
      if (f < 1) animation = requestAnimationFrame(step);
      else animation = 0;
    };
    animation = requestAnimationFrame(step);
  }

  function onExport(kind: "png" | "svg"): void {
    if (scene == null) return;
    const name = `pathways-${checkpoints()[Math.round(position)] ?? "diagram"}`;
    if (kind === "png") download(`${name}.png`, toPng(scene, overlay));
    else download(`${name}.svg`, toSvgUrl(overlayScene ? [scene, overlayScene] : [scene]));
  }

  disposer.listen(overlay.canvas, "pointermove", (ev) => {
    const started = now();
    const rect = overlay.canvas.getBoundingClientRect();
    const px = ev.clientX - rect.left;
    const py = ev.clientY - rect.top;
    const hit = hitTest(px, py);
    const changed = hit?.sample !== hover?.sample || hit?.layer !== hover?.layer || hit?.expert !== hover?.expert;
    hover = hit;
    if (hit == null) hideTooltip(ui.tooltip);
    else
      showTooltip(ui.tooltip, px, py, [
        `sample ${data.sampleIds[hit.sample]}` + (data.groupNames.length > 1 ? ` (${data.groupNames[data.groupOf[hit.sample]]})` : ""),
        `layer ${hit.layer} · expert ${hit.expert}`,
        `weight ${hit.weight.toFixed(3)}`,
        ...(hit.shared > 1 ? [`edge shared by ${hit.shared} samples`] : []),
      ]);
    if (changed) drawOverlay(started);
  });
  disposer.listen(overlay.canvas, "pointerleave", () => {
    hover = null;
    hideTooltip(ui.tooltip);
    drawOverlay();
  });
  disposer.listen(overlay.canvas, "click", (ev) => {
    const current = (model.get("selected_samples") as string[] | null) ?? [];
    let next: string[];
    if (hover == null) next = ev.shiftKey ? current : [];
    else {
      const id = data.sampleIds[hover.sample];
      const has = current.includes(id);
      next = ev.shiftKey || ev.metaKey || ev.ctrlKey ? (has ? current.filter((v) => v !== id) : [...current, id]) : has && current.length === 1 ? [] : [id];
    }
    model.set("selected_samples", next);
    model.save_changes();
  });
  disposer.listen(tokenStrip, "click", (ev) => {
    const target = (ev.target as HTMLElement | null)?.closest("[data-token-index]") as HTMLElement | null;
    if (target == null) return;
    const ti = Number(target.dataset.tokenIndex);
    model.set("selected_token", model.get("selected_token") === ti ? null : ti);
    model.save_changes();
  });
  disposer.listen(range, "input", () => {
    steering = true;
    cancelAnimationFrame(animation);
    position = Number(range.value);
    request(position);
    schedule();
  });
  disposer.listen(range, "change", () => {
    steering = false;
    const names = checkpoints();
    const snapped = Math.round(Number(range.value));
    animateTo(snapped, 150);
    if (names[snapped] != null && model.get("checkpoint") !== names[snapped]) {
      model.set("checkpoint", names[snapped]);
      model.save_changes();
    }
  });
  disposer.listen(play, "click", () => {
    const names = checkpoints();
    if (names.length < 2) return;
    const start = position >= names.length - 1 ? 0 : position;
    position = start;
    const began = now();
    cancelAnimationFrame(animation);
    steering = true;
    const step = () => {
      position = Math.min(names.length - 1, start + (now() - began) / 1200);
      range.value = String(position);
      request(position);
      draw();
      if (position < names.length - 1) animation = requestAnimationFrame(step);
      else {
        animation = 0;
        steering = false;
        model.set("checkpoint", names[names.length - 1]);
        model.save_changes();
      }
    };
    animation = requestAnimationFrame(step);
  });

  const reload = coalesce(() => {
    data = loadData(model);
    updateLegend();
    updateTokens();
    schedule();
    warm();
  });
  disposer.on(model, ["_paths", "_samples", "_n_layers", "_n_experts", "_tokens", "_token_routes"], reload);
  disposer.on(model, ["checkpoint"], () => {
    // While the user drags or plays, checkpoint changes are this view asking for data: follow the
    // user, not the trait.
    if (steering) return;
    const target = indexOf(model);
    if (Math.abs(target - position) >= 0.5) animateTo(target, 400);
  });
  disposer.on(model, ["checkpoints"], () => {
    updateSlider();
    schedule();
  });
  disposer.on(model, ["aggregate", "width", "height"], () => schedule());
  disposer.on(model, ["mode", "selected_token"], () => {
    updateTokens();
    draw();
  });
  disposer.on(model, ["selected_samples"], () => drawOverlay());
  disposer.add(() => {
    cancelAnimationFrame(frame);
    cancelAnimationFrame(animation);
  });

  /** Precompute hover indexes while idle, one gap per task, nearest checkpoint first. */
  let warmTimer = 0;
  function warm(): void {
    clearTimeout(warmTimer);
    // The checkpoint shown first, then the others loaded (the slider may go there next).
    const order = loaded().sort((p, q) => Math.abs(p - position) - Math.abs(q - position));
    for (const c of order) {
      const d = derived(data, c);
      if (d == null) continue;
      for (let l = 0; l + 1 < data.nLayers; l++) {
        if (!d.index.has(l)) {
          warmTimer = window.setTimeout(() => {
            hoverIndex(data, c, l);
            warm();
          }, 0);
          return;
        }
      }
    }
  }
  disposer.add(() => clearTimeout(warmTimer));

  updateLegend();
  updateSlider();
  updateTokens();
  draw();
  warm();
  return () => disposer.dispose();
}

function indexOf(model: ModelLike): number {
  const names = (model.get("checkpoints") as string[] | null) ?? [];
  const i = names.indexOf(String(model.get("checkpoint") ?? ""));
  return i < 0 ? 0 : i;
}
