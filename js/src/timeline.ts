// Timeline view. Python side: grokviz/widgets/timeline.py (traits: models.ts).
//
// One row per metric (distance, consistency, training loss, ...), one solid line per group with
// its confidence band, test accuracy as a dotted line in the same group's colour on a right-hand
// 0-1 axis, memorization onsets as dashed rules and generalization onsets as solid ones, and a
// strip of grokking delays (arrows from t* to t#) at the bottom. A click anywhere in a row picks
// the nearest checkpoint (the `checkpoint` trait, which linked views follow); arrow keys step
// through checkpoints. Control groups (random targets) are grey and dashed. Drawn on a canvas with
// the views' shared scene code, so it follows the notebook's theme and exports PNG/SVG with its
// legend and keys.
import type { Theme } from "./color";
import { framed } from "./frame";
import type { TimelineModel } from "./models";
import { linear, ticks, type Linear } from "./scales";
import { emptyScene, renderCanvas, SegmentBuffer, type Scene } from "./scene";
import { loadTimeline, nearestStep, type TimelineData } from "./timeline_data";
import { coalesce, Disposer, download, fitWidth, hideTooltip, Layer, now, shell, showTooltip, stamp, toPng, toSvgUrl, type LegendItem } from "./view";

export const MARGIN = { left: 70, right: 52, top: 6, bottom: 30 };
const ROW_GAP = 26;
const FONT = "11px system-ui, -apple-system, 'Segoe UI', sans-serif";
const TITLE_FONT = "600 11px system-ui, -apple-system, 'Segoe UI', sans-serif";
/** Dash patterns: accuracy dotted, controls dashed, memorization onsets dashed. */
export const DASH = { accuracy: [2, 3], control: [7, 4], memorization: [5, 3] };

interface RowBox {
  top: number;
  height: number;
  y: Linear;
  row: number;
}

function fmt(v: number): string {
  const a = Math.abs(v);
  if (a === 0) return "0";
  if (a >= 1000) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  if (a >= 1) return v.toFixed(2);
  return v.toPrecision(2);
}

export function render({ model, el }: { model: TimelineModel; el: HTMLElement }): () => void {
  const started = now();
  const disposer = new Disposer();
  const base = new Layer("timeline-base");
  const overlay = new Layer("timeline-overlay", true);
  let data: TimelineData = loadTimeline(model);
  let boxes: RowBox[] = [];
  let x: Linear = linear([0, 1], [0, 1]);
  let hoverStep: number | null = null;
  let hoverGroup: string | null = null;
  let scene: Scene | null = null;
  let firstDraw = true;

  const ui = shell(el, model, disposer, {
    testid: "grokviz-timeline",
    onExport,
    onTheme: () => {
      updateLegend();
      draw();
    },
    onResize: () => draw(),
    onLegendHover: (group) => {
      hoverGroup = group;
      draw();
    },
  });
  ui.root.classList.add("grokviz-timeline");
  ui.root.tabIndex = 0;
  ui.stage.append(base.canvas, overlay.canvas);

  const names = (): string[] => model.get("checkpoints") ?? [];
  const groupName = (g: number): string => data.meta.groups[g] ?? "";
  const color = (g: number): string => ui.palette.color(groupName(g));
  const isControl = (g: number): boolean => ui.palette.isControl(groupName(g));
  const currentStep = (): number | null => {
    const i = names().indexOf(model.get("checkpoint") ?? "");
    return i < 0 ? null : data.meta.steps[i] ?? null;
  };
  const fade = (g: number): number => (hoverGroup == null || hoverGroup === groupName(g) ? 1 : 0.15);

  function layout(): void {
    const width = fitWidth(model.get("width"), ui.width, 640, 240);
    const rh = Math.max(60, Number(model.get("row_height") ?? 110));
    let top = MARGIN.top;
    boxes = data.rows.map((row, r) => {
      const pad = (row.max - row.min) * 0.08 || Math.abs(row.max) * 0.05 || 1;
      const box = { top: top + 14, height: rh, y: linear([row.min - pad, row.max + pad], [top + 14 + rh, top + 14]), row: r };
      top += 14 + rh + ROW_GAP;
      return box;
    });
    const delays = data.pairs.length ? 18 + 20 * data.pairs.length : 0;
    const height = top - ROW_GAP + MARGIN.bottom + delays;
    base.resize(width, height);
    overlay.resize(width, height);
    const lo = data.minStep;
    const hi = data.maxStep > lo ? data.maxStep : lo + 1;
    x = linear([lo, hi], [MARGIN.left, width - MARGIN.right]);
  }

  function polyline(steps: Float64Array, values: Float64Array, y: Linear): Float32Array {
    const pts: number[] = [];
    for (let k = 0; k < steps.length; k++) if (Number.isFinite(values[k])) pts.push(x(steps[k]), y(values[k]));
    return Float32Array.from(pts);
  }

  function drawRow(s: Scene, box: RowBox, theme: Theme, last: boolean): void {
    const row = data.rows[box.row];
    const left = MARGIN.left;
    const right = base.width - MARGIN.right;
    const top = box.top;
    const bottom = box.top + box.height;
    s.rects.push({ x: left, y: top, w: right - left, h: box.height, fill: "none", stroke: theme.grid });
    s.labels.push({ x: left, y: top - 4, text: row.title, color: theme.foreground, baseline: "bottom", font: TITLE_FONT });
    const [d0, d1] = box.y.domain;
    for (const v of ticks(d0, d1, 4)) {
      const yy = box.y(v);
      if (yy < top - 0.5 || yy > bottom + 0.5) continue;
      s.rects.push({ x: left, y: yy, w: right - left, h: 1, fill: theme.grid, alpha: 0.6 });
      s.labels.push({ x: left - 6, y: yy, text: fmt(v), color: theme.muted, align: "right", baseline: "middle", font: FONT });
    }
    if (data.accuracy.length) {
      const acc = linear([0, 1], [bottom, top]);
      for (const v of [0, 0.5, 1]) {
        s.labels.push({ x: right + 6, y: acc(v), text: v.toFixed(1), color: theme.muted, baseline: "middle", font: FONT });
      }
      s.labels.push({ x: right + 38, y: (top + bottom) / 2, text: "test accuracy", color: theme.muted, align: "center", baseline: "middle", rotate: 90, font: FONT });
      for (const a of data.accuracy) {
        s.polylines.push({ color: color(a.group), alpha: 0.95 * fade(a.group), width: 1.6, points: [polyline(a.steps, a.values, acc)], dash: DASH.accuracy });
      }
    }
    for (const v of ticks(x.domain[0], x.domain[1], Math.max(3, Math.floor((right - left) / 90)))) {
      const xx = x(v);
      s.rects.push({ x: xx, y: bottom, w: 1, h: 4, fill: theme.muted });
      if (last) s.labels.push({ x: xx, y: bottom + 6, text: String(v), color: theme.muted, align: "center", baseline: "top", font: FONT });
    }
    if (last) s.labels.push({ x: (left + right) / 2, y: bottom + 19, text: "training step", color: theme.muted, align: "center", baseline: "top", font: FONT });
    for (const rule of data.rules) {
      const b = new SegmentBuffer(1);
      b.push(x(rule.step), top, x(rule.step), bottom);
      s.lines.push({ color: color(rule.group), alpha: 0.75 * fade(rule.group), width: 1.2, coords: b.coords, count: 1, dash: rule.kind === "memorization" ? DASH.memorization : undefined, cap: "butt" });
    }
    for (const ser of row.series) {
      const band: number[] = [];
      for (let k = 0; k < ser.steps.length; k++) {
        if (Number.isFinite(ser.lo[k]) && Number.isFinite(ser.hi[k])) band.push(x(ser.steps[k]), box.y(ser.hi[k]));
      }
      if (band.length >= 4) {
        const lows: number[] = [];
        for (let k = ser.steps.length - 1; k >= 0; k--) {
          if (Number.isFinite(ser.lo[k]) && Number.isFinite(ser.hi[k])) lows.push(x(ser.steps[k]), box.y(ser.lo[k]));
        }
        s.polygons.push({ fill: color(ser.group), alpha: 0.16 * fade(ser.group), points: [Float32Array.from([...band, ...lows])] });
      }
    }
    for (const ser of row.series) {
      const dash = isControl(ser.group) ? DASH.control : undefined;
      s.polylines.push({ color: color(ser.group), alpha: fade(ser.group), width: 2.2, points: [polyline(ser.steps, ser.values, box.y)], dash });
      const xyr: number[] = [];
      for (let k = 0; k < ser.steps.length; k++) if (Number.isFinite(ser.values[k])) xyr.push(x(ser.steps[k]), box.y(ser.values[k]), 2.6);
      s.dots.push({ color: color(ser.group), alpha: fade(ser.group), xyr: Float32Array.from(xyr), count: xyr.length / 3 });
    }
  }

  function drawDelays(s: Scene, theme: Theme): void {
    if (!data.pairs.length) return;
    const last = boxes[boxes.length - 1];
    let y = (last ? last.top + last.height : MARGIN.top) + MARGIN.bottom + 14;
    s.labels.push({ x: MARGIN.left, y: y - 4, text: "grokking delay: memorization onset → generalization onset", color: theme.foreground, baseline: "bottom", font: TITLE_FONT });
    for (const p of data.pairs) {
      y += 20;
      const b = new SegmentBuffer(1);
      b.push(x(p.train), y - 10, x(p.test), y - 10);
      s.lines.push({ color: color(p.group), alpha: 1, width: 2, coords: b.coords, count: 1 });
      s.dots.push({ color: color(p.group), alpha: 1, xyr: new Float32Array([x(p.test), y - 10, 4]), count: 1 });
      s.labels.push({ x: MARGIN.left - 6, y: y - 10, text: p.label, color: theme.muted, align: "right", baseline: "middle", font: FONT });
      s.labels.push({ x: Math.max(x(p.train), x(p.test)) + 8, y: y - 10, text: `${p.delay >= 0 ? "+" : ""}${p.delay}`, color: theme.foreground, baseline: "middle", font: FONT });
    }
  }

  function buildScene(): Scene {
    const theme = ui.theme;
    const s = emptyScene(base.width, base.height, theme.background, theme.font);
    boxes.forEach((box, i) => drawRow(s, box, theme, i === boxes.length - 1));
    drawDelays(s, theme);
    const step = currentStep();
    if (step != null) {
      for (const box of boxes) {
        const b = new SegmentBuffer(1);
        b.push(x(step), box.top, x(step), box.top + box.height);
        s.lines.push({ color: theme.foreground, alpha: 0.9, width: 2, coords: b.coords, count: 1, cap: "butt" });
      }
    }
    return s;
  }

  function caption(): string {
    const step = currentStep();
    const label = model.get("checkpoint");
    return step == null || label == null ? "checkpoint: click a step to choose one" : `checkpoint: ${label} (step ${step})`;
  }

  function draw(): void {
    const t0 = now();
    layout();
    scene = buildScene();
    renderCanvas(base.ctx, scene);
    drawOverlay();
    ui.setTitle(data.meta.title || "Pathway metrics over training", `${caption()} · click a step or press ← → to choose a checkpoint`);
    stamp([ui.root, el], "drawMs", now() - t0);
    if (firstDraw) {
      firstDraw = false;
      stamp([ui.root, el], "renderMs", now() - started);
    }
    ui.root.dataset.checkpoint = model.get("checkpoint") ?? "";
    ui.root.dataset.layout = JSON.stringify({
      x: { domain: x.domain, range: x.range },
      rows: boxes.map((b) => ({ top: b.top, height: b.height })),
    });
  }

  function drawOverlay(): void {
    const s = emptyScene(overlay.width, overlay.height, "transparent", ui.theme.font);
    if (hoverStep != null) {
      for (const box of boxes) {
        const b = new SegmentBuffer(1);
        b.push(x(hoverStep), box.top, x(hoverStep), box.top + box.height);
        s.lines.push({ color: ui.theme.muted, alpha: 0.7, width: 1, coords: b.coords, count: 1, dash: [3, 3], cap: "butt" });
      }
    }
    renderCanvas(overlay.ctx, s);
  }

  function legendItems(): LegendItem[] {
    const drawn = new Set<number>();
    for (const row of data.rows) for (const s of row.series) drawn.add(s.group);
    for (const a of data.accuracy) drawn.add(a.group);
    const groups = ui.palette.order([...drawn].map(groupName));
    const items: LegendItem[] = groups.map((g) => ({
      label: ui.palette.label(g),
      color: ui.palette.color(g),
      kind: ui.palette.isControl(g) ? "dash" : "line",
      group: g,
    }));
    const key = ui.theme.muted;
    items.push({ label: "metric (solid)", color: key, kind: "line" });
    if (data.accuracy.length) items.push({ label: "test accuracy (dotted, right axis)", color: key, kind: "dot" });
    if (data.rules.some((r) => r.kind === "memorization")) items.push({ label: "memorization onset", color: key, kind: "dash" });
    if (data.rules.some((r) => r.kind === "generalization")) items.push({ label: "generalization onset", color: key, kind: "line" });
    return items;
  }

  function updateLegend(): void {
    ui.setLegend(legendItems());
  }

  function choose(step: number): void {
    const i = data.meta.steps.indexOf(step);
    const label = names()[i];
    if (label != null && label !== model.get("checkpoint")) {
      model.set("checkpoint", label);
      model.save_changes();
    }
  }

  function onExport(kind: "png" | "svg"): void {
    if (scene == null) return;
    const picture = framed(scene, { title: ui.title.textContent ?? "", subtitle: caption(), legend: legendItems() }, ui.theme);
    const file = `timeline-${model.get("checkpoint") ?? "all"}`;
    if (kind === "png") download(`${file}.png`, toPng(picture));
    else download(`${file}.svg`, toSvgUrl(picture));
  }

  function at(ev: MouseEvent): { step: number; box: RowBox | null; py: number; px: number } {
    const rect = overlay.canvas.getBoundingClientRect();
    const px = ev.clientX - rect.left;
    const py = ev.clientY - rect.top;
    const box = boxes.find((b) => py >= b.top - 14 && py <= b.top + b.height + 6) ?? null;
    return { step: nearestStep(data.steps, x.invert(px)), box, px, py };
  }

  disposer.listen(overlay.canvas, "pointermove", (ev) => {
    const hit = at(ev);
    if (hit.px < MARGIN.left - 8 || hit.px > base.width - MARGIN.right + 8) {
      hoverStep = null;
      hideTooltip(ui.tooltip);
      drawOverlay();
      return;
    }
    hoverStep = hit.step;
    const lines: string[] = [];
    const i = data.meta.steps.indexOf(hit.step);
    if (hit.box != null) {
      const row = data.rows[hit.box.row];
      // The group whose point at this step lies nearest the pointer.
      let best: { g: number; v: number; d: number } | null = null;
      for (const ser of row.series) {
        const k = Array.prototype.indexOf.call(ser.steps, hit.step) as number;
        if (k < 0 || !Number.isFinite(ser.values[k])) continue;
        const d = Math.abs(hit.box.y(ser.values[k]) - hit.py);
        if (best == null || d < best.d) best = { g: ser.group, v: ser.values[k], d };
      }
      if (best != null) {
        lines.push(`group ${ui.palette.label(groupName(best.g))}`, `checkpoint ${names()[i] ?? ""}`, `step ${hit.step}`, `${row.title} ${fmt(best.v)}`);
        for (const a of data.accuracy) {
          if (a.group !== best.g) continue;
          const k = Array.prototype.indexOf.call(a.steps, hit.step) as number;
          if (k >= 0) lines.push(`test accuracy (${a.task}) ${a.values[k].toFixed(3)}`);
        }
      }
    }
    if (!lines.length) lines.push(`checkpoint ${names()[i] ?? ""}`, `step ${hit.step}`);
    showTooltip(ui.tooltip, hit.px, hit.py, lines);
    drawOverlay();
  });
  disposer.listen(overlay.canvas, "pointerleave", () => {
    hoverStep = null;
    hideTooltip(ui.tooltip);
    drawOverlay();
  });
  disposer.listen(overlay.canvas, "click", (ev) => {
    const hit = at(ev);
    if (hit.px < MARGIN.left - 8 || hit.px > base.width - MARGIN.right + 8) return;
    choose(hit.step);
    ui.root.focus({ preventScroll: true });
  });
  disposer.listen(ui.root, "keydown", (ev) => {
    const steps = data.meta.steps;
    if (!steps.length) return;
    const step = currentStep();
    const i = step == null ? -1 : steps.indexOf(step);
    const next = ev.key === "ArrowRight" ? i + 1 : ev.key === "ArrowLeft" ? (i < 0 ? steps.length - 1 : i - 1) : ev.key === "Home" ? 0 : ev.key === "End" ? steps.length - 1 : null;
    if (next == null) return;
    ev.preventDefault();
    choose(steps[Math.max(0, Math.min(steps.length - 1, next))]);
  });

  const reload = coalesce(() => {
    data = loadTimeline(model);
    updateLegend();
    draw();
  });
  disposer.on(model, ["_series", "_accuracy", "_rules", "_pairs", "_meta", "checkpoints"], reload);
  disposer.on(model, ["checkpoint", "width", "row_height"], () => draw());

  updateLegend();
  draw();
  return () => disposer.dispose();
}
