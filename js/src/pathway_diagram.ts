// PathwayDiagram view. Python side: grokviz/widgets/pathway_diagram.py (traits: models.ts).
//
// Layers run left to right, experts top to bottom. By default each group's samples are drawn as
// route bundles between the experts of adjacent layers, each as wide as the share of the group's
// samples taking that route, over expert dots sized by load, with a strip under the routes showing
// per layer how many experts a group's samples spread over. `compare` draws a second checkpoint
// beside the current one, so scattered routes turning into shared ones show at a glance. Hovering a
// legend entry, an expert or a route highlights its samples' routes and dims the rest; clicking
// selects those samples, drawn as lines of their own. The slider morphs between checkpoints.
// Few samples (or aggregate="never") are drawn as per-sample lines instead of bundles.
//
// The decoded data and its caches live in pathway_data.ts, hit-testing in diagram_state.ts, the
// drawing in diagram_scene.ts; this file holds the view's state and wires events to them.
import {
  axes,
  buffers,
  expertNodes,
  flowLines,
  flowSegments,
  LEVELS,
  linesInto,
  maxBundle,
  panel,
  pathwaySegments,
  routeInto,
  sampleSegments,
  spreadStrip,
  STRIP,
  TITLE_ROOM,
  type Panel,
} from "./diagram_scene";
import { describe, drawnRoutes, highlightFlow, hitFlows, hitLines, hitSamples, type Hit } from "./diagram_state";
import { pathwayRule } from "./describe";
import { framed } from "./frame";
import type { DiagramModel } from "./models";
import { derived, flowOf, gapsOf, hoverIndex, loadData, spreadOf, type Data } from "./pathway_data";
import { bracket, ease, mix, type GapEdges } from "./pathways";
import { emptyScene, renderCanvas, type Scene } from "./scene";
import { CheckpointSlider } from "./slider";
import {
  coalesce,
  Disposer,
  download,
  fitWidth,
  hideTooltip,
  Layer,
  now,
  rasterize,
  shell,
  showTooltip,
  stamp,
  toPng,
  toSvgUrl,
  type LegendItem,
} from "./view";

/** Below this many samples the default draws each sample's own lines instead of bundles. */
const FEW_SAMPLES = 24;

/** Height of the routes area when the `height` trait is None: taller for more experts. */
export function autoHeight(nExperts: number): number {
  const wanted = nExperts <= 16 ? nExperts * 40 : nExperts * 8;
  return Math.max(260, Math.min(520, wanted));
}

export function render({ model, el }: { model: DiagramModel; el: HTMLElement }): () => void {
  const renderStarted = now();
  const disposer = new Disposer();
  const base = new Layer("pathway-base");
  const overlay = new Layer("pathway-overlay", true);
  let scene: Scene | null = null;
  let overlayScene: Scene | null = null;
  let panels: { p: Panel; checkpoint: () => number }[] = [];
  let hover: Hit | null = null;
  let hoverGroup: string | null = null;
  let firstDraw = true;
  let frame = 0;
  let animation = 0;
  /** The checkpoint an animation is heading to (the slider's keys step from it), else null. */
  let goal: number | null = null;
  /** True while the slider is dragged or playing: the view, not the trait, leads the position. */
  let steering = false;

  const ui = shell(el, model, disposer, {
    testid: "grokviz-pathway-diagram",
    onExport,
    onTheme: () => {
      data = loadData(model, ui.palette.order);
      highlightCache.clear();
      updateLegend();
      draw();
    },
    onResize: () => schedule(),
    onLegendHover: (group) => {
      hoverGroup = group;
      drawOverlay();
    },
  });
  let data: Data = loadData(model, ui.palette.order);
  let position = indexOf(model);
  const tokenStrip = document.createElement("div");
  tokenStrip.className = "grokviz-tokens";
  tokenStrip.dataset.testid = "token-strip";
  ui.stage.before(tokenStrip);
  ui.stage.append(base.canvas, overlay.canvas);
  const compareButton = document.createElement("button");
  compareButton.className = "grokviz-button";
  compareButton.dataset.testid = "compare";
  ui.controls.append(compareButton);
  const slider = new CheckpointSlider(disposer, {
    onInput: (pos) => {
      steering = true;
      cancelAnimationFrame(animation);
      goal = null;
      position = pos;
      request(pos);
      schedule();
    },
    onChange: (index) => {
      steering = false;
      choose(index, 150);
    },
    onPlay: play,
  });
  ui.root.append(slider.el);

  const names = (): string[] => model.get("checkpoints") ?? [];
  const loaded = (): number[] => [...data.snapshots.keys()];
  const groupCount = (): number => Math.max(1, data.groupNames.length);
  const minShare = (): number => Math.max(0, Number(model.get("min_share") ?? 0.02));
  const colorOf = (g: number): string => (data.groupNames.length <= 1 && !data.groupNames[0] ? ui.theme.accent : ui.palette.color(data.groupNames[g]));
  const compareIndex = (): number | null => {
    const name = model.get("compare");
    const i = name == null ? -1 : names().indexOf(name);
    return i < 0 ? null : i;
  };

  function bundled(): boolean {
    const setting = model.get("aggregate") ?? "auto";
    if (setting === "always") return true;
    if (setting === "never") return false;
    return data.sampleIds.length > FEW_SAMPLES;
  }

  function current(): [number, number, number] {
    return bracket(position, loaded());
  }

  function layout(): { width: number; height: number } {
    const width = fitWidth(model.get("width"), ui.width, 760, 240);
    const routes = model.get("height") ?? (data.nExperts > 0 ? autoHeight(data.nExperts) : 140);
    const strip = bundled() && data.nLayers > 0;
    const cmp = compareIndex();
    const panelHeight = routes + (strip ? STRIP.height + STRIP.gap : 0) + (cmp != null ? TITLE_ROOM : 0);
    // Side by side while each panel keeps room for its layers, else one above the other.
    const side = cmp != null && width >= 2 * Math.max(300, 36 * data.nLayers) + 16;
    const stacked = cmp != null && !side;
    const height = stacked ? 2 * panelHeight + 12 : panelHeight;
    if (width !== base.width || height !== base.height) highlightCache.clear();
    base.resize(width, height);
    overlay.resize(width, height);
    const L = data.nLayers;
    const K = data.nExperts;
    panels = [];
    if (cmp == null) {
      panels.push({ p: panel(0, 0, width, panelHeight, L, K, strip), checkpoint: () => nearest() });
    } else if (side) {
      const w = Math.floor((width - 16) / 2);
      panels.push({ p: panel(0, 0, w, panelHeight, L, K, strip, true), checkpoint: () => cmp });
      panels.push({ p: panel(w + 16, 0, w, panelHeight, L, K, strip, true), checkpoint: () => nearest() });
    } else {
      panels.push({ p: panel(0, 0, width, panelHeight, L, K, strip, true), checkpoint: () => cmp });
      panels.push({ p: panel(0, panelHeight + 12, width, panelHeight, L, K, strip, true), checkpoint: () => nearest() });
    }
    return { width, height };
  }

  function nearest(): number {
    const [a, b, t] = current();
    return t < 0.5 ? a : b;
  }

  function name(i: number): string {
    return names()[i] ?? String(i);
  }

  /** Draw panel `p` at the (possibly fractional) slider state, or at checkpoint `fixed`. */
  function drawPanel(s: Scene, p: Panel, fixed: number | null, title: string | undefined): void {
    const theme = ui.theme;
    axes(s, p, theme, title);
    const [a0, b0, t0] = fixed == null ? current() : [fixed, fixed, 0];
    const snapA = data.snapshots.get(a0);
    const snapB = data.snapshots.get(b0);
    const G = groupCount();
    if (snapA == null || snapB == null || data.nLayers === 0 || data.nExperts === 0) {
      const text = data.sampleIds.length === 0 ? "nothing to draw yet: no samples traced" : "loading this checkpoint…";
      s.labels.push({ x: p.left + p.width / 2, y: p.top + p.height / 2, text, color: theme.muted, align: "center" });
      return;
    }
    const t = ease(t0);
    if (bundled()) {
      const fa = flowOf(data, a0) as Float32Array;
      const fb = flowOf(data, b0) as Float32Array;
      const flow = t === 0 ? fa : t === 1 ? fb : mix(fa, fb, t);
      flowLines(s, flowSegments(flow, G, data.nLayers - 1, p.x, p.y, minShare()), G, colorOf, maxBundle(p.y));
    } else {
      const segments = buffers(G * LEVELS);
      for (const [c, f] of [
        [a0, 1 - t],
        [b0, t],
      ] as const) {
        if (f <= 0) continue;
        const all = Array.from({ length: data.nLayers - 1 }, (_, l) => gapsOf(data, c, l) as GapEdges);
        sampleSegments(segments, all, data.groupOf, f, p.x, p.y);
      }
      const alpha = data.sampleIds.length > 50 ? 0.35 : 0.6;
      const width = Math.max(1.5, Math.min(10, p.y.step * 0.9));
      for (let g = 0; g < G; g++) linesInto(s, segments.slice(g * LEVELS, (g + 1) * LEVELS), colorOf(g), alpha, width);
    }
    const la = (derived(data, a0) ?? { load: new Float32Array(0) }).load;
    const lb = (derived(data, b0) ?? { load: new Float32Array(0) }).load;
    expertNodes(s, t === 0 ? la : mix(la, lb, t), p.x, p.y, theme);
    if (p.strip != null) {
      const sa = spreadOf(data, a0) as Float32Array;
      const sb = spreadOf(data, b0) as Float32Array;
      spreadStrip(s, t === 0 ? sa : mix(sa, sb, t), G, p.x, p.strip, data.nExperts, colorOf, theme, p.left);
    }
  }

  function buildScene(): Scene {
    const theme = ui.theme;
    const s = emptyScene(base.width, base.height, theme.background, theme.font);
    const cmp = compareIndex();
    panels.forEach(({ p }, i) => {
      const isRef = cmp != null && i === 0;
      const title = cmp == null ? undefined : isRef ? `${name(cmp)} (compared)` : label();
      drawPanel(s, p, isRef ? cmp : null, title);
    });
    return s;
  }

  function label(): string {
    const [a, b, t] = current();
    if (a < 0) return "no data";
    return t > 0 && a !== b ? `${name(a)} → ${name(b)}` : name(a);
  }

  function updateTitle(): void {
    const cmp = compareIndex();
    const rule = pathwayRule(model.get("tau"), model.get("top_k"));
    const what = bundled()
      ? `bundle width = share of a group's samples taking that route (under ${Math.round(minShare() * 100)} % not drawn); dot area = share of samples at that expert`
      : "one line per sample, width from its routing weights";
    if (names().length === 0) {
      ui.setTitle("Pathways", `${rule} · nothing traced yet`);
    } else {
      const title = cmp == null ? `Pathways at ${label()}` : `Pathways at ${name(cmp)} and ${label()}`;
      ui.setTitle(title, `${rule} · ${what}`);
    }
    compareButton.textContent = cmp == null ? "compare" : "single";
    compareButton.title = cmp == null ? "Show the first checkpoint beside the current one" : "Show the current checkpoint alone";
  }

  function overlayFor(s: Scene, p: Panel, c: number): void {
    const theme = ui.theme;
    const snap = data.snapshots.get(c);
    if (snap == null) return;
    const G = groupCount();
    const maxW = maxBundle(p.y);
    const panelIndex = panels.findIndex((q) => q.p === p);
    let key: string | null = null;
    let highlighted: (() => Float32Array | null) | null = null;
    if (hover != null && hover.kind !== "sample" && hover.panel === panelIndex) {
      const hit = hover;
      key = `${panelIndex}:${c}:${JSON.stringify(hit)}`;
      highlighted = () => highlightFlow(data, c, hitSamples(data, hit));
    } else if (hoverGroup != null && bundled()) {
      const g = data.groupNames.indexOf(hoverGroup);
      key = `${panelIndex}:${c}:group:${g}`;
      highlighted = () => {
        const flow = flowOf(data, c);
        if (g < 0 || flow == null) return null;
        const size = (data.nLayers - 1) * data.nExperts * data.nExperts;
        const only = new Float32Array(flow.length);
        only.set(flow.subarray(g * size, (g + 1) * size), g * size);
        return only;
      };
    }
    if (key != null && highlighted != null) {
      // Hovering back and forth over the same expert or route redraws from the cache.
      let quads = highlightCache.get(key);
      if (quads == null) {
        const flow = highlighted();
        const part = emptyScene(0, 0, "transparent", "");
        if (flow != null) flowLines(part, flowSegments(flow, G, data.nLayers - 1, p.x, p.y, minShare()), G, colorOf, maxW, 1.25);
        quads = part.quads;
        if (highlightCache.size > 64) highlightCache.clear();
        highlightCache.set(key, quads);
      }
      s.quads.push(...quads);
    }
    // The selection, as one line per sample in its group's colour over a halo.
    const index = new Map(data.sampleIds.map((id, i) => [id, i]));
    const selected = (model.get("selected_samples") ?? []).map((id) => index.get(id)).filter((i): i is number => i != null);
    if (selected.length) {
      const width = Math.max(1.5, Math.min(4, p.y.step * 0.25));
      const halo = buffers(LEVELS);
      for (const smp of selected) pathwaySegments(halo, snap, smp, p.x, p.y);
      for (const b of halo) if (b.count) s.lines.push({ color: theme.background, alpha: 0.9, width: width + 2.5, coords: b.coords, count: b.count });
      const byGroup = new Map<number, number[]>();
      for (const smp of selected) {
        const g = data.groupOf[smp];
        if (!byGroup.has(g)) byGroup.set(g, []);
        byGroup.get(g)?.push(smp);
      }
      for (const [g, list] of byGroup) {
        const out = buffers(LEVELS);
        for (const smp of list) pathwaySegments(out, snap, smp, p.x, p.y);
        for (const b of out) if (b.count) s.lines.push({ color: colorOf(g), alpha: 1, width, coords: b.coords, count: b.count });
      }
    }
    if (hover != null && hover.kind === "sample") {
      const out = buffers(LEVELS);
      pathwaySegments(out, snap, hover.sample, p.x, p.y);
      linesInto(s, out, theme.accent, 0.95, Math.max(2.5, Math.min(12, p.y.step)));
    }
    if (hover != null && hover.kind === "expert") {
      const r = Math.max(5, Math.min(10, p.y.step * 0.5));
      s.dots.push({ color: theme.accent, alpha: 0, xyr: new Float32Array([p.x(hover.layer), p.y(hover.expert), r]), count: 1, stroke: theme.accent });
    }
    const token = model.get("selected_token");
    if (model.get("mode") === "tokens" && token != null) {
      routeInto(s, data.routes.get(token) ?? [], p.x, p.y, theme.accent, theme.background);
    }
  }

  function drawOverlay(since?: number): void {
    const started = since ?? now();
    const s = emptyScene(overlay.width, overlay.height, "transparent", ui.theme.font);
    for (const { p, checkpoint } of panels) overlayFor(s, p, checkpoint());
    renderCanvas(overlay.ctx, s);
    overlayScene = s;
    const focused = (hover != null && hover.kind !== "sample") || (hoverGroup != null && bundled());
    const selecting = (model.get("selected_samples") ?? []).length > 0;
    base.canvas.style.opacity = model.get("mode") === "tokens" ? "0.35" : focused ? "0.22" : selecting ? "0.5" : "1";
    stamp([ui.root, el], "hoverMs", now() - started);
  }

  function draw(): void {
    const started = now();
    layout();
    scene = buildScene();
    renderCanvas(base.ctx, scene);
    drawOverlay();
    updateTitle();
    slider.setPosition(position, goal ?? position);
    stamp([ui.root, el], "drawMs", now() - started);
    if (firstDraw) {
      // First draw is timed from render() start (decoding the data is part of it) until the pixels
      // exist: Chromium defers canvas rasterization, and reading a pixel back forces it now.
      firstDraw = false;
      const drawn = now();
      rasterize(base, overlay);
      const end = now();
      stamp([ui.root, el], "renderMs", end - renderStarted);
      stamp([ui.root, el], "rasterMs", end - drawn);
    }
    ui.root.dataset.drawCount = String(Number(ui.root.dataset.drawCount ?? 0) + 1);
    ui.root.dataset.checkpoint = names()[nearest()] ?? "";
    // Where each panel draws (tests and notebooks can point at an expert without guessing).
    ui.root.dataset.layout = JSON.stringify(
      panels.map(({ p, checkpoint }) => ({
        checkpoint: names()[checkpoint()] ?? "",
        x0: p.x(0),
        xStep: p.x.step,
        y0: p.y(0),
        yStep: p.y.step,
        left: p.left,
        top: p.top,
        width: p.width,
        height: p.height,
      })),
    );
  }

  function schedule(): void {
    if (frame) return;
    frame = requestAnimationFrame(() => {
      frame = 0;
      draw();
    });
  }

  function legendItems(): LegendItem[] {
    const items: LegendItem[] = data.groupNames.filter((g) => g !== "" || data.groupNames.length > 1).map((g) => ({
      label: ui.palette.label(g),
      color: ui.palette.color(g),
      kind: "swatch" as const,
      group: g,
    }));
    return data.groupNames.length > 1 ? items : [];
  }

  function updateLegend(): void {
    ui.setLegend(legendItems());
  }

  function updateTokens(): void {
    const on = model.get("mode") === "tokens";
    tokenStrip.style.display = on ? "flex" : "none";
    if (!on) return;
    const chosen = model.get("selected_token");
    tokenStrip.replaceChildren(
      ...data.tokens.index.map((ti, k) => {
        const chip = document.createElement("span");
        chip.className = "grokviz-token";
        chip.dataset.tokenIndex = String(ti);
        chip.setAttribute("role", "button");
        chip.textContent = data.tokens.text[k] ?? "";
        chip.setAttribute("aria-pressed", String(ti === chosen));
        return chip;
      }),
    );
  }

  /** Ask Python for the checkpoints around `pos` when they are not loaded yet. */
  function request(pos: number): void {
    const all = names();
    const lo = Math.max(0, Math.min(all.length - 1, Math.floor(pos)));
    const hi = Math.min(all.length - 1, lo + 1);
    const have = loaded();
    if ((!have.includes(lo) || !have.includes(hi)) && model.get("checkpoint") !== all[lo]) {
      model.set("checkpoint", all[lo]);
      model.save_changes();
    }
  }

  /** Settle on checkpoint `index`: animate there and tell Python (and so every linked view). */
  function choose(index: number, ms: number): void {
    const all = names();
    animateTo(index, ms);
    if (all[index] != null && model.get("checkpoint") !== all[index]) {
      model.set("checkpoint", all[index]);
      model.save_changes();
    }
  }

  function animateTo(target: number, ms: number): void {
    cancelAnimationFrame(animation);
    const from = position;
    const started = now();
    goal = target;
    slider.setPosition(position, goal);
    const step = () => {
      const f = Math.min(1, (now() - started) / ms);
      position = from + (target - from) * f;
      if (f >= 1) goal = null;
      draw();
      if (f < 1) animation = requestAnimationFrame(step);
      else animation = 0;
    };
    animation = requestAnimationFrame(step);
  }

  function play(): void {
    const all = names();
    if (all.length < 2) return;
    const start = position >= all.length - 1 ? 0 : position;
    position = start;
    const began = now();
    cancelAnimationFrame(animation);
    goal = null;
    steering = true;
    const step = () => {
      position = Math.min(all.length - 1, start + (now() - began) / 1200);
      request(position);
      draw();
      if (position < all.length - 1) animation = requestAnimationFrame(step);
      else {
        animation = 0;
        steering = false;
        model.set("checkpoint", all[all.length - 1]);
        model.save_changes();
      }
    };
    animation = requestAnimationFrame(step);
  }

  function onExport(kind: "png" | "svg"): void {
    if (scene == null) return;
    const body = emptyScene(scene.width, scene.height, scene.background, scene.font);
    body.rects.push(...scene.rects);
    body.quads.push(...scene.quads, ...(overlayScene?.quads ?? []));
    body.lines.push(...scene.lines, ...(overlayScene?.lines ?? []));
    body.dots.push(...scene.dots, ...(overlayScene?.dots ?? []));
    body.labels.push(...scene.labels);
    const picture = framed(body, { title: ui.title.textContent ?? "", subtitle: ui.subtitle.textContent ?? "", legend: legendItems() }, ui.theme);
    const file = `pathways-${names()[nearest()] ?? "diagram"}`;
    if (kind === "png") download(`${file}.png`, toPng(picture));
    else download(`${file}.svg`, toSvgUrl(picture));
  }

  function hitAt(px: number, py: number): Hit | null {
    const i = panels.findIndex(({ p }) => px >= p.left && px < p.left + p.width && py >= p.top && py < p.top + p.height);
    if (i < 0) return null;
    const { p, checkpoint } = panels[i];
    const c = checkpoint();
    if (!bundled()) return hitLines(data, p, i, c, px, py);
    return hitFlows(data, p, i, c, routesOf(c), px, py);
  }

  const routeCache = new Map<string, Float32Array[] | null>();
  const highlightCache = new Map<string, Scene["quads"]>();
  function routesOf(c: number): Float32Array[] | null {
    const key = `${c}:${minShare()}`;
    if (!routeCache.has(key)) routeCache.set(key, drawnRoutes(data, c, minShare()));
    return routeCache.get(key) ?? null;
  }

  disposer.listen(overlay.canvas, "pointermove", (ev) => {
    const started = now();
    const rect = overlay.canvas.getBoundingClientRect();
    const px = ev.clientX - rect.left;
    const py = ev.clientY - rect.top;
    const hit = hitAt(px, py);
    const changed = JSON.stringify(hit) !== JSON.stringify(hover);
    hover = hit;
    if (hit == null) hideTooltip(ui.tooltip);
    else showTooltip(ui.tooltip, px, py, describe(data, hit, name(hit.checkpoint), ui.palette.label));
    if (changed) drawOverlay(started);
  });
  disposer.listen(overlay.canvas, "pointerleave", () => {
    hover = null;
    hideTooltip(ui.tooltip);
    drawOverlay();
  });
  disposer.listen(overlay.canvas, "click", (ev) => {
    const current = model.get("selected_samples") ?? [];
    let next: string[];
    if (hover == null) next = ev.shiftKey ? current : [];
    else {
      const ids = Array.from(hitSamples(data, hover), (s) => data.sampleIds[s]);
      const add = ev.shiftKey || ev.metaKey || ev.ctrlKey;
      if (hover.kind === "sample") {
        const id = ids[0];
        const has = current.includes(id);
        next = add ? (has ? current.filter((v) => v !== id) : [...current, id]) : has && current.length === 1 ? [] : [id];
      } else next = add ? [...new Set([...current, ...ids])] : ids;
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
  disposer.listen(compareButton, "click", () => {
    const all = names();
    const cmp = compareIndex();
    model.set("compare", cmp == null && all.length > 1 ? all[0] : null);
    model.save_changes();
  });

  const reload = coalesce(() => {
    data = loadData(model, ui.palette.order);
    routeCache.clear();
    highlightCache.clear();
    hover = null;
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
    if (target !== goal && Math.abs(target - position) >= 0.5) animateTo(target, 400);
  });
  disposer.on(model, ["checkpoints"], () => {
    slider.setNames(names());
    schedule();
  });
  disposer.on(model, ["aggregate", "width", "height", "compare", "min_share", "tau", "top_k"], () => {
    routeCache.clear();
    highlightCache.clear();
    schedule();
  });
  disposer.on(model, ["mode", "selected_token"], () => {
    updateTokens();
    draw();
  });
  disposer.on(model, ["selected_samples"], () => drawOverlay());
  disposer.add(() => {
    cancelAnimationFrame(frame);
    cancelAnimationFrame(animation);
  });

  /** Precompute what hovering needs while idle, one piece per task, nearest checkpoint first. */
  let warmTimer = 0;
  function warm(): void {
    clearTimeout(warmTimer);
    const order = loaded().sort((p, q) => Math.abs(p - position) - Math.abs(q - position));
    for (const c of order) {
      if (bundled()) {
        if (!routeCache.has(`${c}:${minShare()}`)) {
          warmTimer = window.setTimeout(() => {
            routesOf(c);
            spreadOf(data, c);
            warm();
          }, 0);
          return;
        }
        continue;
      }
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
  slider.setNames(names());
  updateTokens();
  draw();
  warm();
  return () => disposer.dispose();
}

function indexOf(model: DiagramModel): number {
  const names = model.get("checkpoints") ?? [];
  const i = names.indexOf(String(model.get("checkpoint") ?? ""));
  return i < 0 ? Math.max(0, names.length - 1) : i;
}
