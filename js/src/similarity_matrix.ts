// SimilarityMatrix view. Python side: grokviz/widgets/similarity_matrix.py (trait names mirror it).
//
// The pairwise pathway-distance matrix arrives as raw little-endian numbers (already in display
// order) and becomes one ImageData through a colour LUT; the canvas scales it to the view. Hover
// redraws only the overlay. Clicking a cell selects the pair and shows both pathways aligned by
// the edit-distance traceback, substitutions, insertions and deletions in distinct colours.
import { align, type Op } from "./align";
import { decodeArray, decodeTable, text, type Binary, type DType } from "./arrow";
import { categorical, lut, unpack } from "./color";
import { buildSnapshots, sequence, type Snapshot } from "./pathways";
import { emptyScene, renderCanvas, type Scene } from "./scene";
import {
  coalesce,
  Disposer,
  Layer,
  download,
  element,
  hideTooltip,
  now,
  shell,
  showTooltip,
  toPng,
  toSvgUrl,
  type ModelLike,
} from "./view";

const BAND = 8; // group colour band along the top and left edges
const MARGIN = { left: BAND + 4, top: BAND + 4, right: 70, bottom: 4 };
const SEPARATOR = -1;

export interface Matrix {
  n: number;
  values: ArrayLike<number>;
  lo: number;
  hi: number;
}

export function readMatrix(value: Binary, dtype: DType, n: number): Matrix {
  const values = decodeArray(value, dtype);
  if (values.length !== n * n) {
    throw new Error(`grokviz: the distance matrix has ${values.length} values, expected ${n}×${n}`);
  }
  // The colour range leaves out the diagonal: its zeros would squash the contrast between pairs
  // (the paper's distances lie around 480-690).
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < n; i++) {
    const row = i * n;
    for (let j = 0; j < n; j++) {
      if (i === j && n > 1) continue;
      const v = values[row + j];
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  return { n, values, lo: Number.isFinite(lo) ? lo : 0, hi: Number.isFinite(hi) ? hi : 0 };
}

/** Fill an n×n RGBA pixel buffer (as Uint32) from the matrix through the LUT. */
export function paint(matrix: Matrix, table: Uint32Array, out?: Uint32Array): Uint32Array {
  const { n, values, lo, hi } = matrix;
  const pixels = out ?? new Uint32Array(n * n);
  const size = table.length;
  const scale = hi > lo ? size / (hi - lo) : 0;
  const last = size - 1;
  for (let k = 0; k < n * n; k++) {
    let i = ((values[k] - lo) * scale) | 0;
    if (i > last) i = last;
    else if (i < 0) i = 0;
    pixels[k] = table[i];
  }
  return pixels;
}

/** Positions where consecutive samples change group: the group boundaries to draw. */
export function boundaries(groups: string[]): number[] {
  const out: number[] = [];
  for (let i = 1; i < groups.length; i++) if (groups[i] !== groups[i - 1]) out.push(i);
  return out;
}

interface Data {
  ids: string[];
  groups: string[];
  groupNames: string[];
  matrix: Matrix;
  snapshot: Snapshot | null;
  image: HTMLCanvasElement;
}

function loadData(model: ModelLike, table: Uint32Array): Data {
  const samples = decodeTable(model.get("_samples") as Binary);
  const ids = text(samples.columns, "sample_id");
  const groups = text(samples.columns, "group");
  const groupNames = [...new Set(groups)];
  const n = Number(model.get("_n") ?? ids.length);
  const matrix = readMatrix(model.get("_matrix") as Binary, String(model.get("_dtype") ?? "float32") as DType, n);
  const paths = decodeTable(model.get("_paths") as Binary);
  const nLayers = Number(model.get("_n_layers") ?? 0);
  const snaps = buildSnapshots(paths.columns, paths.length, n, nLayers);
  const snapshot = snaps.size > 0 ? [...snaps.values()][0] : null;
  const image = document.createElement("canvas");
  image.width = Math.max(1, n);
  image.height = Math.max(1, n);
  if (n > 0) {
    const ctx = image.getContext("2d") as CanvasRenderingContext2D;
    const img = ctx.createImageData(n, n);
    paint(matrix, table, new Uint32Array(img.data.buffer));
    ctx.putImageData(img, 0, 0);
  }
  return { ids, groups, groupNames, matrix, snapshot, image };
}

export function render({ model, el }: { model: ModelLike; el: HTMLElement }): () => void {
  const disposer = new Disposer();
  const table = lut();
  const base = new Layer("matrix-base");
  const overlay = new Layer("matrix-overlay", true);
  let data: Data;
  let scene: Scene | null = null;
  let overlayScene: Scene | null = null;
  let hover: [number, number] | null = null;
  let firstDraw = true;
  let cell = 1;
  const started = now();
  data = loadData(model, table);
  const decodeMs = now() - started;

  const ui = shell(el, model, disposer, {
    testid: "grokviz-similarity-matrix",
    onExport,
    onTheme: () => draw(),
  });
  const legend = element("div", { class: "grokviz-legend", "data-testid": "group-legend" });
  ui.toolbar.prepend(legend);
  ui.stage.append(base.canvas, overlay.canvas);
  const pair = element("div", { class: "grokviz-pair", "data-testid": "pair-alignment" });
  ui.root.append(pair);

  function side(): number {
    return Number(model.get("size") ?? 520) || 520;
  }

  function index(): Map<string, number> {
    return new Map(data.ids.map((id, i) => [id, i]));
  }

  function buildScene(): Scene {
    const theme = ui.theme;
    const size = side();
    const s = emptyScene(size + MARGIN.left + MARGIN.right, size + MARGIN.top + MARGIN.bottom, theme.background, theme.font);
    const n = data.matrix.n;
    cell = n > 0 ? size / n : 1;
    s.pictures.push({
      x: MARGIN.left,
      y: MARGIN.top,
      w: size,
      h: size,
      source: n > 0 ? data.image : null,
      href: () => data.image.toDataURL("image/png"),
    });
    // Group bands and boundaries.
    const colour = new Map(data.groupNames.map((g, k) => [g, categorical(k)]));
    let startIdx = 0;
    for (const end of [...boundaries(data.groups), n]) {
      const fill = colour.get(data.groups[startIdx]) ?? theme.muted;
      s.rects.push({ x: MARGIN.left + startIdx * cell, y: 0, w: (end - startIdx) * cell, h: BAND, fill });
      s.rects.push({ x: 0, y: MARGIN.top + startIdx * cell, w: BAND, h: (end - startIdx) * cell, fill });
      if (end < n && data.groupNames.length > 1) {
        s.rects.push({ x: MARGIN.left + end * cell - 0.5, y: MARGIN.top, w: 1, h: size, fill: theme.background, alpha: 0.8 });
        s.rects.push({ x: MARGIN.left, y: MARGIN.top + end * cell - 0.5, w: size, h: 1, fill: theme.background, alpha: 0.8 });
      }
      startIdx = end;
    }
    // Colour legend: a vertical ramp with the extreme values.
    const lx = MARGIN.left + size + 16;
    const steps = 64;
    for (let k = 0; k < steps; k++) {
      const [r, g, b] = unpack(table[Math.floor(((steps - 1 - k) / (steps - 1)) * (table.length - 1))]);
      s.rects.push({ x: lx, y: MARGIN.top + (k * size) / steps, w: 12, h: size / steps + 0.5, fill: `rgb(${r},${g},${b})` });
    }
    const fmt = (v: number) => (Number.isInteger(v) ? String(v) : v.toFixed(3));
    s.labels.push({ x: lx + 16, y: MARGIN.top, text: fmt(data.matrix.hi), color: theme.foreground, baseline: "top" });
    s.labels.push({ x: lx + 16, y: MARGIN.top + size, text: fmt(data.matrix.lo), color: theme.foreground, baseline: "bottom" });
    return s;
  }

  function drawOverlay(): void {
    const t0 = now();
    const theme = ui.theme;
    const s = emptyScene(overlay.width, overlay.height, "transparent", theme.font);
    const size = side();
    const mark = (i: number, j: number, color: string) => {
      const w = Math.max(cell, 3);
      const x0 = MARGIN.left + j * cell + cell / 2 - w / 2;
      const y0 = MARGIN.top + i * cell + cell / 2 - w / 2;
      s.rects.push({ x: x0 - 1.5, y: y0 - 1.5, w: w + 3, h: 1.5, fill: color });
      s.rects.push({ x: x0 - 1.5, y: y0 + w, w: w + 3, h: 1.5, fill: color });
      s.rects.push({ x: x0 - 1.5, y: y0, w: 1.5, h: w, fill: color });
      s.rects.push({ x: x0 + w, y: y0, w: 1.5, h: w, fill: color });
    };
    if (hover != null) {
      const [i, j] = hover;
      s.rects.push({ x: MARGIN.left, y: MARGIN.top + i * cell, w: size, h: Math.max(1, cell), fill: theme.foreground, alpha: 0.12 });
      s.rects.push({ x: MARGIN.left + j * cell, y: MARGIN.top, w: Math.max(1, cell), h: size, fill: theme.foreground, alpha: 0.12 });
      mark(i, j, theme.foreground);
    }
    const sel = selectedIndices();
    if (sel != null) mark(sel[0], sel[1], theme.accent);
    renderCanvas(overlay.ctx, s);
    overlayScene = s;
    const ms = now() - t0;
    ui.root.dataset.hoverMs = ms.toFixed(2);
    el.dataset.hoverMs = ms.toFixed(2);
  }

  function selectedIndices(): [number, number] | null {
    const ids = (model.get("selected_pair") as string[] | null) ?? [];
    if (ids.length !== 2) return null;
    const idx = index();
    const i = idx.get(ids[0]);
    const j = idx.get(ids[1]);
    return i == null || j == null ? null : [i, j];
  }

  function draw(extraMs = 0): void {
    const t0 = now();
    const size = side();
    const w = size + MARGIN.left + MARGIN.right;
    const h = size + MARGIN.top + MARGIN.bottom;
    if (base.width !== w || base.height !== h) {
      base.resize(w, h);
      overlay.resize(w, h);
    }
    scene = buildScene();
    renderCanvas(base.ctx, scene);
    drawOverlay();
    const ms = now() - t0 + extraMs;
    ui.root.dataset.drawMs = ms.toFixed(2);
    el.dataset.drawMs = ms.toFixed(2);
    if (firstDraw) {
      firstDraw = false;
      ui.root.dataset.renderMs = ms.toFixed(2);
      el.dataset.renderMs = ms.toFixed(2);
    }
  }

  function updateLegend(): void {
    const items = data.groupNames.length > 1 ? data.groupNames : [];
    legend.replaceChildren(
      ...items.map((name, g) => {
        const item = element("span");
        const sw = element("span", { class: "grokviz-swatch" });
        sw.style.background = categorical(g);
        item.append(sw, document.createTextNode(name || "(none)"));
        return item;
      }),
    );
  }

  function updatePair(): void {
    const sel = selectedIndices();
    if (sel == null) {
      pair.replaceChildren();
      return;
    }
    const [i, j] = sel;
    const value = data.matrix.values[i * data.matrix.n + j];
    const header = element("div", {}, `${data.ids[i]} × ${data.ids[j]}: distance ${value}`);
    if (data.snapshot == null) {
      pair.replaceChildren(header);
      return;
    }
    const a = sequence(data.snapshot, i, SEPARATOR);
    const b = sequence(data.snapshot, j, SEPARATOR);
    const result = align(a, b);
    const counts = { sub: 0, ins: 0, del: 0 };
    for (const op of result.ops) if (op.kind !== "match") counts[op.kind]++;
    header.textContent +=
      ` (alignment: ${result.distance} = ${counts.sub} substitutions, ` +
      `${counts.ins} insertions, ${counts.del} deletions)`;
    const row = (which: "i" | "j", seq: Int32Array) => {
      const r = element("div", { class: "grokviz-row", "data-testid": `pair-row-${which === "i" ? "a" : "b"}` });
      for (const op of result.ops) r.append(cellFor(op, which, seq));
      return r;
    };
    pair.replaceChildren(header, row("i", a), row("j", b));
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
    const name = `distances-${String(model.get("checkpoint") || "matrix")}`;
    if (kind === "png") download(`${name}.png`, toPng(scene, overlay));
    else download(`${name}.svg`, toSvgUrl(overlayScene ? [scene, overlayScene] : [scene]));
  }

  function cellAt(ev: PointerEvent | MouseEvent): [number, number] | null {
    const rect = overlay.canvas.getBoundingClientRect();
    const px = ev.clientX - rect.left - MARGIN.left;
    const py = ev.clientY - rect.top - MARGIN.top;
    const n = data.matrix.n;
    const i = Math.floor(py / cell);
    const j = Math.floor(px / cell);
    return i >= 0 && j >= 0 && i < n && j < n ? [i, j] : null;
  }

  disposer.listen(overlay.canvas, "pointermove", (ev) => {
    const at = cellAt(ev);
    const changed = at?.[0] !== hover?.[0] || at?.[1] !== hover?.[1];
    hover = at;
    if (at == null) hideTooltip(ui.tooltip);
    else {
      const [i, j] = at;
      const rect = overlay.canvas.getBoundingClientRect();
      const v = data.matrix.values[i * data.matrix.n + j];
      const groupsText = data.groupNames.length > 1 ? [`${data.groups[i]} × ${data.groups[j]}`] : [];
      showTooltip(ui.tooltip, ev.clientX - rect.left, ev.clientY - rect.top, [
        `${data.ids[i]} × ${data.ids[j]}`,
        ...groupsText,
        `distance ${Number.isInteger(v) ? v : v.toFixed(4)}`,
      ]);
    }
    if (changed) drawOverlay();
  });
  disposer.listen(overlay.canvas, "pointerleave", () => {
    hover = null;
    hideTooltip(ui.tooltip);
    drawOverlay();
  });
  disposer.listen(overlay.canvas, "click", (ev) => {
    const at = cellAt(ev);
    model.set("selected_pair", at == null ? [] : [data.ids[at[0]], data.ids[at[1]]]);
    model.save_changes();
  });

  const reload = coalesce(() => {
    const t0 = now();
    data = loadData(model, table);
    updateLegend();
    updatePair();
    draw(now() - t0);
  });
  disposer.on(model, ["_matrix", "_dtype", "_n", "_samples", "_paths", "_n_layers"], reload);
  disposer.on(model, ["size"], () => draw());
  disposer.on(model, ["selected_pair"], () => {
    updatePair();
    drawOverlay();
  });

  updateLegend();
  updatePair();
  draw(decodeMs);
  return () => disposer.dispose();
}
