// SimilarityMatrix view. Python side: grokviz/widgets/similarity_matrix.py (traits: models.ts).
//
// The pairwise pathway-distance matrices of the loaded checkpoints arrive as raw little-endian
// numbers (already in display order). The shown window is painted at the canvas's device
// resolution, each device pixel taking the colour of the cell `cellAt` maps it to, and the pointer
// is hit-tested through the same function, so hover, click and drawing agree however small the
// cells are. With more samples than pixels the default shows group means (one block per pair of
// groups); a click on a block, or the mouse wheel, zooms in to the samples. The colour range is
// fixed across checkpoints by default (Python sends it). Clicking a cell selects the pair and
// shows both pathways aligned by the edit-distance traceback, with a key for the edit kinds.
import { align, type Op } from "./align";
import { pathwayRule } from "./describe";
import { lut, unpack } from "./color";
import { framed } from "./frame";
import { blockMeans, cellAt, loadMatrixData, pixelOf, paintWindow, type Matrix, type MatrixData, type Window } from "./matrix_data";
import type { MatrixModel } from "./models";
import { sequence } from "./pathways";
import { emptyScene, renderCanvas, textWidth, type Scene } from "./scene";
import {
  coalesce,
  Disposer,
  download,
  element,
  hideTooltip,
  Layer,
  now,
  shell,
  showTooltip,
  stamp,
  toPng,
  toSvgUrl,
  type LegendItem,
} from "./view";

const BAND = 10; // group colour band along the top and left edges
export const MARGIN = { left: BAND + 6, top: BAND + 20, right: 168, bottom: 8 };
const SEPARATOR = -1;
const SMALL_FONT = "11px system-ui, -apple-system, 'Segoe UI', sans-serif";

export function render({ model, el }: { model: MatrixModel; el: HTMLElement }): () => void {
  const started = now();
  const disposer = new Disposer();
  const table = lut();
  const base = new Layer("matrix-base");
  const overlay = new Layer("matrix-overlay", true);
  let data: MatrixData = loadMatrixData(model);
  let scene: Scene | null = null;
  let hover: [number, number] | null = null;
  let firstDraw = true;
  let side = 0;
  let D = 0; // device pixels per side of the heatmap
  let win: Window = { r0: 0, r1: data.n, c0: 0, c1: data.n };
  let image: HTMLCanvasElement | null = null;
  let drag: { x: number; y: number; win: Window; moved: boolean } | null = null;
  const decodeMs = now() - started;

  const ui = shell(el, model, disposer, {
    testid: "grokviz-similarity-matrix",
    onExport,
    onTheme: () => {
      updateLegend();
      draw();
    },
    onResize: () => draw(),
  });
  ui.stage.append(base.canvas, overlay.canvas);
  const displayButton = element("button", { class: "grokviz-button", "data-testid": "matrix-display" });
  const resetButton = element("button", { class: "grokviz-button", "data-testid": "matrix-reset", title: "Show every sample again" }, "reset zoom");
  ui.controls.append(displayButton, resetButton);
  const pair = element("div", { class: "grokviz-pair", "data-testid": "pair-alignment" });
  ui.root.append(pair);

  const names = (): string[] => model.get("checkpoints") ?? [];
  const checkpointIndex = (): number => {
    const i = names().indexOf(model.get("checkpoint") ?? "");
    return i < 0 ? [...data.matrices.keys()][0] ?? 0 : i;
  };
  const matrix = (): Matrix | null => data.matrices.get(checkpointIndex()) ?? [...data.matrices.values()][0] ?? null;
  const zoomed = (): boolean => win.r0 > 0 || win.c0 > 0 || win.r1 < data.n || win.c1 < data.n;

  function groupMode(): boolean {
    const setting = model.get("display") ?? "auto";
    if (data.runs.length < 2) return false;
    if (setting === "groups") return !zoomed();
    if (setting === "samples") return false;
    // Auto: group means while a cell would be under one device pixel, samples once zoomed in.
    return !zoomed() && data.n > D;
  }

  function blockIndex(): { of: Int32Array; mean: Float64Array; count: number; pairs: Float64Array } | null {
    const m = matrix();
    if (m == null) return null;
    const of = new Int32Array(data.n);
    data.runs.forEach((r, b) => of.fill(b, r.start, r.end));
    const { mean, pairs } = blockMeans(m, data.runs);
    return { of, mean, count: data.runs.length, pairs };
  }
  let blocksCache: { key: Matrix; value: ReturnType<typeof blockIndex> } | null = null;
  function blockData(): ReturnType<typeof blockIndex> {
    const m = matrix();
    if (m == null) return null;
    if (blocksCache?.key !== m) blocksCache = { key: m, value: blockIndex() };
    return blocksCache.value;
  }

  function layout(): void {
    const wanted = model.get("size");
    const available = ui.width > 0 ? ui.width - MARGIN.left - MARGIN.right : 520;
    side = wanted != null && wanted > 0 ? wanted : Math.max(220, Math.min(data.n === 0 ? 260 : 560, available));
    base.resize(side + MARGIN.left + MARGIN.right, side + MARGIN.top + MARGIN.bottom);
    overlay.resize(base.width, base.height);
    D = Math.max(1, Math.round(side * base.dpr));
    ui.root.dataset.matrix = JSON.stringify({ left: MARGIN.left, top: MARGIN.top, side, device: D, dpr: base.dpr, window: win });
  }

  /** The heatmap window painted at device resolution, as a canvas (screen and exports). */
  function paintImage(): HTMLCanvasElement | null {
    const m = matrix();
    if (m == null || data.n === 0) return null;
    const canvas = document.createElement("canvas");
    canvas.width = D;
    canvas.height = D;
    const ctx = canvas.getContext("2d") as CanvasRenderingContext2D;
    const img = ctx.createImageData(D, D);
    const block = groupMode() ? blockData() ?? undefined : undefined;
    paintWindow(m, table, win, D, new Uint32Array(img.data.buffer), block);
    ctx.putImageData(img, 0, 0);
    return canvas;
  }

  function rule(): string {
    return pathwayRule(model.get("tau"), model.get("top_k"));
  }

  function updateTitle(): void {
    const name = names()[checkpointIndex()] ?? "";
    const m = matrix();
    if (data.n === 0) {
      ui.setTitle("Pathway distances", `${rule()} · nothing to compare yet`);
      displayButton.style.display = "none";
      resetButton.style.display = "none";
      return;
    }
    const fixed = model.get("_range") != null;
    ui.setTitle(
      `Pathway distances at ${name || "the given matrix"}`,
      `${rule()} · each cell: edit distance between two samples' pathways (lower = more shared)` +
        (m ? ` · colours ${fixed ? "fixed across checkpoints" : "scaled to this checkpoint"}` : "") +
        (groupMode() ? " · group means (click a block to zoom in)" : zoomed() ? " · zoomed (wheel: zoom, drag: pan)" : ""),
    );
    displayButton.textContent = groupMode() ? "samples" : "group means";
    displayButton.title = groupMode() ? "Show every pair of samples" : "Show the mean distance of each pair of groups";
    displayButton.style.display = data.runs.length > 1 ? "" : "none";
    resetButton.style.display = zoomed() ? "" : "none";
  }

  function buildScene(): Scene {
    const theme = ui.theme;
    const s = emptyScene(base.width, base.height, theme.background, theme.font);
    const m = matrix();
    const img = image;
    if (data.n === 0) {
      s.rects.push({ x: MARGIN.left, y: MARGIN.top, w: side, h: side, fill: "none", stroke: theme.grid });
      s.labels.push({ x: MARGIN.left + side / 2, y: MARGIN.top + side / 2, text: "nothing to compare yet: no samples traced", color: theme.muted, align: "center", baseline: "middle" });
      return s;
    }
    s.pictures.push({ x: MARGIN.left, y: MARGIN.top, w: side, h: side, source: null, href: () => img?.toDataURL("image/png") ?? "" });
    const px = (i: number, w0: number, w1: number) => pixelOf(i, w0, w1, D) / base.dpr;
    // Group bands (top: columns, left: rows), names over the top band where they fit.
    for (const r of data.runs) {
      const fill = ui.palette.color(r.group);
      const c0 = Math.max(r.start, win.c0);
      const c1 = Math.min(r.end, win.c1);
      if (c1 > c0) {
        const x0 = MARGIN.left + px(c0, win.c0, win.c1);
        const x1 = MARGIN.left + px(c1, win.c0, win.c1);
        s.rects.push({ x: x0, y: MARGIN.top - BAND - 4, w: Math.max(1, x1 - x0), h: BAND, fill });
        const text = ui.palette.label(r.group);
        if (data.runs.length > 1 && textWidth(text, SMALL_FONT) + 4 < x1 - x0) {
          s.labels.push({ x: (x0 + x1) / 2, y: MARGIN.top - BAND - 7, text, color: theme.foreground, align: "center", baseline: "bottom", font: SMALL_FONT });
        }
        if (c0 > win.c0 && data.runs.length > 1) s.rects.push({ x: x0 - 0.5, y: MARGIN.top, w: 1, h: side, fill: theme.background, alpha: 0.85 });
      }
      const r0 = Math.max(r.start, win.r0);
      const r1 = Math.min(r.end, win.r1);
      if (r1 > r0) {
        const y0 = MARGIN.top + px(r0, win.r0, win.r1);
        const y1 = MARGIN.top + px(r1, win.r0, win.r1);
        s.rects.push({ x: 0, y: y0, w: BAND, h: Math.max(1, y1 - y0), fill });
        if (r0 > win.r0 && data.runs.length > 1) s.rects.push({ x: MARGIN.left, y: y0 - 0.5, w: side, h: 1, fill: theme.background, alpha: 0.85 });
      }
    }
    // The colour bar: what a colour means, which way is "more shared", and the range.
    const lx = MARGIN.left + side + 22;
    const steps = 64;
    for (let k = 0; k < steps; k++) {
      const [r, g, b] = unpack(table[Math.floor(((steps - 1 - k) / (steps - 1)) * (table.length - 1))]);
      s.rects.push({ x: lx, y: MARGIN.top + 28 + (k * (side - 28)) / steps, w: 14, h: (side - 28) / steps + 0.5, fill: `rgb(${r},${g},${b})` });
    }
    s.labels.push({ x: lx - 4, y: MARGIN.top, text: "edit distance", color: theme.foreground, baseline: "top", font: "600 11px system-ui, sans-serif" });
    s.labels.push({ x: lx - 4, y: MARGIN.top + 13, text: "lower = more shared", color: theme.muted, baseline: "top", font: SMALL_FONT });
    if (m != null) {
      const fmt = (v: number) => (Number.isInteger(v) ? String(v) : v.toFixed(2));
      const top = MARGIN.top + 28;
      const bottom = MARGIN.top + side;
      s.labels.push({ x: lx + 20, y: top, text: `${fmt(m.hi)} (more distinct)`, color: theme.foreground, baseline: "top", font: SMALL_FONT });
      s.labels.push({ x: lx + 20, y: (top + bottom) / 2, text: fmt((m.lo + m.hi) / 2), color: theme.foreground, baseline: "middle", font: SMALL_FONT });
      s.labels.push({ x: lx + 20, y: bottom, text: `${fmt(m.lo)} (shared)`, color: theme.foreground, baseline: "bottom", font: SMALL_FONT });
    }
    return s;
  }

  function markCell(s: Scene, i: number, j: number, color: string, rowCol: boolean): void {
    const x0 = MARGIN.left + pixelOf(j, win.c0, win.c1, D) / base.dpr;
    const x1 = MARGIN.left + pixelOf(j + 1, win.c0, win.c1, D) / base.dpr;
    const y0 = MARGIN.top + pixelOf(i, win.r0, win.r1, D) / base.dpr;
    const y1 = MARGIN.top + pixelOf(i + 1, win.r0, win.r1, D) / base.dpr;
    if (rowCol) {
      s.rects.push({ x: MARGIN.left, y: y0, w: side, h: Math.max(1, y1 - y0), fill: ui.theme.foreground, alpha: 0.12 });
      s.rects.push({ x: x0, y: MARGIN.top, w: Math.max(1, x1 - x0), h: side, fill: ui.theme.foreground, alpha: 0.12 });
    }
    const cx = (x0 + x1) / 2;
    const cy = (y0 + y1) / 2;
    const w = Math.max(x1 - x0, y1 - y0, 4) + 3;
    s.rects.push({ x: cx - w / 2, y: cy - w / 2, w, h: w, fill: "none", stroke: color });
  }

  function drawOverlay(): void {
    const t0 = now();
    const s = emptyScene(overlay.width, overlay.height, "transparent", ui.theme.font);
    if (hover != null) {
      const [i, j] = hover;
      if (groupMode()) {
        const bi = data.runs.findIndex((r) => i >= r.start && i < r.end);
        const bj = data.runs.findIndex((r) => j >= r.start && j < r.end);
        const a = data.runs[bi];
        const b = data.runs[bj];
        if (a && b) {
          const x0 = MARGIN.left + pixelOf(b.start, win.c0, win.c1, D) / base.dpr;
          const x1 = MARGIN.left + pixelOf(b.end, win.c0, win.c1, D) / base.dpr;
          const y0 = MARGIN.top + pixelOf(a.start, win.r0, win.r1, D) / base.dpr;
          const y1 = MARGIN.top + pixelOf(a.end, win.r0, win.r1, D) / base.dpr;
          s.rects.push({ x: x0, y: y0, w: x1 - x0, h: y1 - y0, fill: "none", stroke: ui.theme.foreground });
        }
      } else markCell(s, i, j, ui.theme.foreground, true);
    }
    const sel = selectedIndices();
    if (sel != null && !groupMode()) markCell(s, sel[0], sel[1], ui.theme.accent, false);
    renderCanvas(overlay.ctx, s);
    stamp([ui.root, el], "hoverMs", now() - t0);
  }

  function selectedIndices(): [number, number] | null {
    const ids = model.get("selected_pair") ?? [];
    if (ids.length !== 2) return null;
    const i = data.ids.indexOf(ids[0]);
    const j = data.ids.indexOf(ids[1]);
    return i < 0 || j < 0 ? null : [i, j];
  }

  function draw(extraMs = 0): void {
    const t0 = now();
    layout();
    image = paintImage();
    scene = buildScene();
    renderCanvas(base.ctx, scene);
    if (image != null) {
      // Device pixels straight onto the canvas: one image pixel per device pixel, no resampling.
      const ctx = base.ctx;
      ctx.save();
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(image, Math.round(MARGIN.left * base.dpr), Math.round(MARGIN.top * base.dpr));
      ctx.restore();
    }
    drawOverlay();
    updateTitle();
    const ms = now() - t0 + extraMs;
    stamp([ui.root, el], "drawMs", ms);
    if (firstDraw) {
      firstDraw = false;
      stamp([ui.root, el], "renderMs", ms);
    }
    ui.root.dataset.checkpoint = names()[checkpointIndex()] ?? "";
  }

  function updateLegend(): void {
    const groups = [...new Set(data.runs.map((r) => r.group))];
    const items: LegendItem[] = groups.length > 1 ? ui.palette.order(groups).map((g) => ({ label: ui.palette.label(g), color: ui.palette.color(g), group: g })) : [];
    ui.setLegend(items);
  }

  function updatePair(): void {
    const sel = selectedIndices();
    const m = matrix();
    if (sel == null || m == null) {
      pair.replaceChildren();
      return;
    }
    const [i, j] = sel;
    const value = m.values[i * m.n + j];
    const header = element("div", { class: "grokviz-pair-head" }, `${data.ids[i]} × ${data.ids[j]} at ${names()[checkpointIndex()] ?? ""}: distance ${value}`);
    const snap = data.snapshots.get(checkpointIndex()) ?? null;
    if (snap == null) {
      pair.replaceChildren(header);
      return;
    }
    const a = sequence(snap, i, SEPARATOR);
    const b = sequence(snap, j, SEPARATOR);
    const result = align(a, b);
    const counts = { sub: 0, ins: 0, del: 0 };
    for (const op of result.ops) if (op.kind !== "match") counts[op.kind]++;
    header.textContent +=
      ` (alignment: ${result.distance} = ${counts.sub} substitutions, ` + `${counts.ins} insertions, ${counts.del} deletions)`;
    const row = (which: "i" | "j", seq: Int32Array, id: string) => {
      const r = element("div", { class: "grokviz-row", "data-testid": `pair-row-${which === "i" ? "a" : "b"}` });
      r.append(element("span", { class: "grokviz-row-label" }, id));
      for (const op of result.ops) r.append(cellFor(op, which, seq));
      return r;
    };
    const key = element("div", { class: "grokviz-pair-key", "data-testid": "alignment-key" });
    for (const [kind, mark, text] of [
      ["match", "4", "same expert"],
      ["sub", "7", "substitution: another expert"],
      ["ins", "2", "insertion: only in the second pathway"],
      ["del", "5", "deletion: only in the first pathway"],
    ] as const) {
      const item = element("span", { class: "grokviz-key-item", "data-op": kind });
      item.append(element("span", { class: `grokviz-cell op-${kind}` }, mark), document.createTextNode(text));
      key.append(item);
    }
    key.append(element("span", { class: "grokviz-key-item" }, "| next layer · gap"));
    pair.replaceChildren(header, row("i", a, data.ids[i]), row("j", b, data.ids[j]), key);
  }

  function cellFor(op: Op, which: "i" | "j", seq: Int32Array): HTMLSpanElement {
    const k = op[which];
    const sym = k == null ? null : seq[k];
    const textValue = sym == null ? "·" : sym === SEPARATOR ? "|" : String(sym);
    const c = element("span", { class: `grokviz-cell op-${op.kind}`, "data-op": op.kind }, textValue);
    if (sym === SEPARATOR) c.classList.add("sep");
    return c;
  }

  function onExport(kind: "png" | "svg"): void {
    if (scene == null) return;
    const body = emptyScene(scene.width, scene.height, scene.background, scene.font);
    body.rects.push(...scene.rects);
    body.labels.push(...scene.labels);
    const img = image;
    body.pictures.push({ x: MARGIN.left, y: MARGIN.top, w: side, h: side, source: img, href: () => img?.toDataURL("image/png") ?? "" });
    const groups = [...new Set(data.runs.map((r) => r.group))];
    const legend: LegendItem[] = groups.length > 1 ? ui.palette.order(groups).map((g) => ({ label: ui.palette.label(g), color: ui.palette.color(g) })) : [];
    const picture = framed(body, { title: ui.title.textContent ?? "", subtitle: ui.subtitle.textContent ?? "", legend }, ui.theme);
    const file = `distances-${names()[checkpointIndex()] || "matrix"}`;
    if (kind === "png") download(`${file}.png`, toPng(picture));
    else download(`${file}.svg`, toSvgUrl(picture));
  }

  /** The cell under a pointer event, through the same mapping the painting used. */
  function cellOf(ev: PointerEvent | MouseEvent | WheelEvent): [number, number] | null {
    const rect = overlay.canvas.getBoundingClientRect();
    const dx = (ev.clientX - rect.left) * base.dpr - Math.round(MARGIN.left * base.dpr);
    const dy = (ev.clientY - rect.top) * base.dpr - Math.round(MARGIN.top * base.dpr);
    const i = cellAt(dy, win.r0, win.r1, D);
    const j = cellAt(dx, win.c0, win.c1, D);
    return i < 0 || j < 0 ? null : [i, j];
  }

  function tooltip(ev: PointerEvent, at: [number, number]): void {
    const [i, j] = at;
    const rect = overlay.canvas.getBoundingClientRect();
    const m = matrix();
    if (m == null) return;
    let lines: string[];
    if (groupMode()) {
      const bd = blockData();
      const bi = data.runs.findIndex((r) => i >= r.start && i < r.end);
      const bj = data.runs.findIndex((r) => j >= r.start && j < r.end);
      const k = bi * data.runs.length + bj;
      const mean = bd?.mean[k] ?? NaN;
      lines = [
        `${ui.palette.label(data.runs[bi].group)} × ${ui.palette.label(data.runs[bj].group)}`,
        `mean distance ${Number.isNaN(mean) ? "–" : mean.toFixed(2)} over ${bd?.pairs[k] ?? 0} pairs`,
        "click to zoom in",
      ];
    } else {
      const v = m.values[i * m.n + j];
      const groupsText = data.runs.length > 1 ? [`${ui.palette.label(data.groups[i])} × ${ui.palette.label(data.groups[j])}`] : [];
      lines = [`${data.ids[i]} × ${data.ids[j]}`, ...groupsText, `distance ${Number.isInteger(v) ? v : v.toFixed(4)}`];
    }
    showTooltip(ui.tooltip, ev.clientX - rect.left, ev.clientY - rect.top, lines);
  }

  function zoomTo(next: Window): void {
    const clampAxis = (a: number, b: number): [number, number] => {
      const span = Math.max(1, Math.min(data.n, b - a));
      const start = Math.max(0, Math.min(data.n - span, a));
      return [start, start + span];
    };
    const [r0, r1] = clampAxis(next.r0, next.r1);
    const [c0, c1] = clampAxis(next.c0, next.c1);
    win = { r0, r1, c0, c1 };
    draw();
  }

  disposer.listen(overlay.canvas, "pointermove", (ev) => {
    if (drag != null) {
      const rows = win.r1 - win.r0;
      const cols = win.c1 - win.c0;
      const dx = ((ev.clientX - drag.x) * base.dpr * cols) / D;
      const dy = ((ev.clientY - drag.y) * base.dpr * rows) / D;
      if (Math.abs(ev.clientX - drag.x) + Math.abs(ev.clientY - drag.y) > 3) drag.moved = true;
      if (drag.moved && zoomed()) {
        const w = drag.win;
        zoomTo({ r0: Math.round(w.r0 - dy), r1: Math.round(w.r0 - dy) + (w.r1 - w.r0), c0: Math.round(w.c0 - dx), c1: Math.round(w.c0 - dx) + (w.c1 - w.c0) });
        return;
      }
    }
    const at = cellOf(ev);
    const changed = at?.[0] !== hover?.[0] || at?.[1] !== hover?.[1];
    hover = at;
    if (at == null) hideTooltip(ui.tooltip);
    else tooltip(ev, at);
    if (changed) drawOverlay();
  });
  // The cell a click selects is the one under the pointer when it went down: a click event's
  // coordinates are whole CSS pixels, and where the view sits at a fractional offset they can
  // fall one device pixel off a cell under 2 px.
  let pressedAt: [number, number] | null = null;
  disposer.listen(overlay.canvas, "pointerdown", (ev) => {
    drag = { x: ev.clientX, y: ev.clientY, win: { ...win }, moved: false };
    pressedAt = cellOf(ev);
  });
  disposer.listen(overlay.canvas, "pointerup", () => {
    // The click handler runs next and reads whether this was a drag.
    setTimeout(() => (drag = null), 0);
  });
  disposer.listen(overlay.canvas, "pointerleave", () => {
    hover = null;
    drag = null;
    hideTooltip(ui.tooltip);
    drawOverlay();
  });
  disposer.listen(overlay.canvas, "click", (ev) => {
    if (drag?.moved) return;
    const at = pressedAt ?? cellOf(ev);
    pressedAt = null;
    if (at != null && groupMode()) {
      const a = data.runs.find((r) => at[0] >= r.start && at[0] < r.end);
      const b = data.runs.find((r) => at[1] >= r.start && at[1] < r.end);
      if (a && b) zoomTo({ r0: a.start, r1: a.end, c0: b.start, c1: b.end });
      return;
    }
    model.set("selected_pair", at == null ? [] : [data.ids[at[0]], data.ids[at[1]]]);
    model.save_changes();
  });
  disposer.listen(
    overlay.canvas,
    "wheel",
    (ev) => {
      const at = cellOf(ev);
      if (at == null) return;
      ev.preventDefault();
      const f = ev.deltaY < 0 ? 1 / 1.5 : 1.5;
      const rows = Math.max(2, Math.round((win.r1 - win.r0) * f));
      const cols = Math.max(2, Math.round((win.c1 - win.c0) * f));
      const fr = (at[0] - win.r0) / (win.r1 - win.r0);
      const fc = (at[1] - win.c0) / (win.c1 - win.c0);
      const r0 = Math.round(at[0] - fr * rows);
      const c0 = Math.round(at[1] - fc * cols);
      zoomTo({ r0, r1: r0 + rows, c0, c1: c0 + cols });
    },
    { passive: false },
  );
  disposer.listen(overlay.canvas, "dblclick", () => zoomTo({ r0: 0, r1: data.n, c0: 0, c1: data.n }));
  disposer.listen(resetButton, "click", () => zoomTo({ r0: 0, r1: data.n, c0: 0, c1: data.n }));
  disposer.listen(displayButton, "click", () => {
    model.set("display", groupMode() ? "samples" : "groups");
    model.save_changes();
    if (zoomed()) win = { r0: 0, r1: data.n, c0: 0, c1: data.n };
    draw();
  });

  const reload = coalesce(() => {
    const t0 = now();
    const n = data.n;
    data = loadMatrixData(model);
    blocksCache = null;
    if (data.n !== n) win = { r0: 0, r1: data.n, c0: 0, c1: data.n };
    updateLegend();
    updatePair();
    draw(now() - t0);
  });
  disposer.on(model, ["_matrices", "_loaded", "_dtype", "_n", "_samples", "_paths", "_n_layers", "_range"], reload);
  disposer.on(model, ["size", "display", "tau", "top_k"], () => draw());
  disposer.on(model, ["checkpoint"], () => {
    blocksCache = null;
    updatePair();
    draw();
  });
  disposer.on(model, ["selected_pair"], () => {
    updatePair();
    drawOverlay();
  });

  updateLegend();
  updatePair();
  draw(decodeMs);
  return () => disposer.dispose();
}
