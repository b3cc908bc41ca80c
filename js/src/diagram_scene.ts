// Pure drawing pieces of the PathwayDiagram: axes, route bundles, expert nodes, the per-layer
// spread strip, per-sample edges and highlighted routes, as scene primitives (no DOM), so they are
// unit-tested and shared by the canvas, the PNG and the SVG export.
import type { Theme } from "./color";
import { entries, type GapEdges, type Snapshot } from "./pathways";
import { band, type Band } from "./scales";
import { SegmentBuffer, type Scene } from "./scene";

/** Width levels lines are quantised into, so each colour needs only this many stroke() calls. */
export const LEVELS = 10;
export const MARGIN = { left: 40, right: 16, top: 22, bottom: 10 };
/** Height of the strip under each panel that shows how spread each group's routes are. */
export const STRIP = { height: 78, gap: 10 };

/** Edges whose square-root weight ratio to the largest is below this are not drawn (lines mode). */
export const FAINT = 0.04;

/** Width level (0..LEVELS-1) of a value relative to the largest one; -1 when too faint to draw. */
export function level(value: number, max: number): number {
  if (!(max > 0) || !(value > 0)) return -1;
  const r = Math.sqrt(value / max);
  if (r < FAINT) return -1;
  return Math.min(LEVELS - 1, Math.floor(r * LEVELS));
}

export function levelWidth(lv: number, maxWidth: number): number {
  return 0.35 + (maxWidth * (lv + 1)) / LEVELS;
}

/** The share a bundle of level `lv` stands for (levels are even in the square root of share). */
export function levelShare(lv: number): number {
  const r = (lv + 0.5) / LEVELS;
  return r * r;
}

/** Width of a bundle carrying `share` of its group's samples: proportional, at least a hairline. */
export function shareWidth(share: number, maxWidth: number): number {
  return Math.max(0.75, share * maxWidth);
}

/** Opacity of a bundle level: routes few samples take stay faint, shared ones nearly opaque. */
export function levelAlpha(lv: number): number {
  return 0.22 + (0.7 * (lv + 1)) / LEVELS;
}

export function buffers(n: number): SegmentBuffer[] {
  return Array.from({ length: n }, () => new SegmentBuffer());
}

/** Where one panel draws: its layer columns (x), expert rows (y) and its spread strip. */
export interface Panel {
  x: Band;
  y: Band;
  left: number;
  top: number;
  width: number;
  /** Height of the routes area (without the strip). */
  height: number;
  strip: { top: number; height: number } | null;
}

/** Extra room above a panel that carries a title (compare mode). */
export const TITLE_ROOM = 18;

export function panel(left: number, top: number, width: number, height: number, nLayers: number, nExperts: number, strip: boolean, titled = false): Panel {
  const stripHeight = strip ? STRIP.height : 0;
  const routes = height - (strip ? STRIP.height + STRIP.gap : 0);
  const head = titled ? TITLE_ROOM : 0;
  return {
    x: band(nLayers, [left + MARGIN.left, left + width - MARGIN.right]),
    y: band(nExperts, [top + head + MARGIN.top, top + routes - MARGIN.bottom]),
    left,
    top,
    width,
    height: routes,
    strip: strip ? { top: top + routes + STRIP.gap, height: stripHeight } : null,
  };
}

/** Largest bundle width of a panel: most of an expert row, so a route all samples take is thick. */
export function maxBundle(y: Band): number {
  return Math.max(3, Math.min(30, y.step * 0.8));
}

/** Layer gridlines and labels, expert labels (thinned so they never overlap), an optional title. */
export function axes(s: Scene, p: Panel, theme: Theme, title?: string): void {
  const { x, y } = p;
  const L = x.n;
  const bottom = p.top + p.height - MARGIN.bottom;
  const top = y(0) - y.step / 2;
  for (let l = 0; l < L; l++) {
    s.rects.push({ x: x(l) - 0.5, y: top, w: 1, h: bottom - top, fill: theme.grid });
    const every = Math.max(1, Math.ceil(28 / Math.max(1, x.step)));
    if (l % every === 0) s.labels.push({ x: x(l), y: top - 7, text: `L${l}`, color: theme.muted, align: "center" });
  }
  const every = Math.max(1, Math.ceil(12 / Math.max(1, y.step)));
  for (let e = 0; e < y.n; e += every) {
    s.labels.push({ x: p.left + MARGIN.left - 8, y: y(e), text: `E${e}`, color: theme.muted, align: "right", baseline: "middle" });
  }
  if (title) {
    s.labels.push({ x: p.left + MARGIN.left, y: p.top + 2, text: title, color: theme.foreground, baseline: "top", font: "600 12px system-ui, sans-serif" });
  }
}

/**
 * Route bundles of every group: one buffer per (width level, group), level-major so that wide
 * (shared) bundles are drawn over thin (scattered) ones. Routes under `minShare` of a group's
 * samples are left out. Each group has its own lane, a few pixels off the route's centre line, so
 * groups sharing a route show side by side instead of blending.
 */
export function flowSegments(flow: Float32Array, nGroups: number, nGaps: number, x: Band, y: Band, minShare: number): SegmentBuffer[] {
  const K = y.n;
  const kk = K * K;
  const out = buffers(LEVELS * nGroups);
  const ys = Float64Array.from({ length: K }, (_, e) => y(e));
  const lane = nGroups > 1 ? Math.min(4, (y.step * 0.5) / nGroups) : 0;
  const floor = Math.max(minShare, 1e-6);
  for (let g = 0; g < nGroups; g++) {
    const off = (g - (nGroups - 1) / 2) * lane;
    for (let l = 0; l < nGaps; l++) {
      const base = (g * nGaps + l) * kk;
      const x0 = x(l);
      const x1 = x(l + 1);
      for (let from = 0; from < K; from++) {
        const row = base + from * K;
        const y0 = ys[from] + off;
        for (let to = 0; to < K; to++) {
          const v = flow[row + to];
          if (!(v >= floor)) continue;
          const lv = Math.min(LEVELS - 1, Math.floor(Math.sqrt(Math.min(1, v)) * LEVELS));
          out[lv * nGroups + g].push(x0, y0, x1, ys[to] + off);
        }
      }
    }
  }
  return out;
}

/**
 * Bundles as ribbons in their group's colour, width and opacity from their level: each route a
 * quadrilateral whose vertical thickness is the bundle's width, as in a Sankey diagram (filling
 * them is an order of magnitude faster than stroking wide lines in a software rasterizer).
 */
export function flowLines(s: Scene, out: SegmentBuffer[], nGroups: number, color: (g: number) => string, maxWidth: number, fade = 1): void {
  for (let lv = 0; lv < LEVELS; lv++) {
    const half = shareWidth(levelShare(lv), maxWidth) / 2;
    for (let g = 0; g < nGroups; g++) {
      const b = out[lv * nGroups + g];
      if (!b.count) continue;
      const c = b.coords;
      const q = new Float32Array(b.count * 8);
      for (let k = 0, j = 0; k < b.count * 4; k += 4, j += 8) {
        const [x0, y0, x1, y1] = [c[k], c[k + 1], c[k + 2], c[k + 3]];
        q[j] = x0;
        q[j + 1] = y0 - half;
        q[j + 2] = x1;
        q[j + 3] = y1 - half;
        q[j + 4] = x1;
        q[j + 5] = y1 + half;
        q[j + 6] = x0;
        q[j + 7] = y0 + half;
      }
      s.quads.push({ fill: color(g), alpha: Math.min(1, levelAlpha(lv) * fade), coords: q, count: b.count });
    }
  }
}

/**
 * A dot per (layer, expert), its area proportional to the share of samples routed there (its
 * load); unused experts get a small ring so the grid of experts stays visible.
 */
export function expertNodes(s: Scene, load: Float32Array, x: Band, y: Band, theme: Theme): void {
  const L = x.n;
  const K = y.n;
  const used = new Float32Array(L * K * 3);
  const idle = new Float32Array(L * K * 3);
  let n = 0;
  let m = 0;
  const rMax = Math.max(2, Math.min(x.step * 0.14, y.step * 0.46, 12));
  for (let l = 0; l < L; l++) {
    for (let e = 0; e < K; e++) {
      const v = load[l * K + e];
      if (v > 0) {
        used.set([x(l), y(e), Math.max(1.2, rMax * Math.sqrt(Math.min(1, v)))], n * 3);
        n++;
      } else {
        idle.set([x(l), y(e), Math.max(1, Math.min(2, rMax * 0.25))], m * 3);
        m++;
      }
    }
  }
  s.dots.push({ color: theme.grid, alpha: 1, xyr: idle, count: m });
  s.dots.push({ color: theme.foreground, alpha: 0.78, xyr: used, count: n, stroke: theme.background });
}

/**
 * The spread strip: for every layer, one bar per group whose height is the effective number of
 * experts its samples use there (exp of the entropy of its expert loads), from the pathway size
 * (all samples on the same experts: shared) up to K (uniformly scattered).
 */
export function spreadStrip(
  s: Scene,
  spread: Float32Array,
  nGroups: number,
  x: Band,
  strip: { top: number; height: number },
  nExperts: number,
  color: (g: number) => string,
  theme: Theme,
  left: number,
): void {
  const L = x.n;
  const top = strip.top + 14;
  const bottom = strip.top + strip.height - 4;
  const h = bottom - top;
  const scale = (v: number) => bottom - (h * Math.max(0, Math.min(nExperts, v))) / Math.max(1, nExperts);
  s.rects.push({ x: x(0) - x.step * 0.45, y: bottom, w: x.step * L * 0.98, h: 1, fill: theme.grid });
  s.labels.push({
    x: left + MARGIN.left,
    y: strip.top,
    text: "experts in use per layer (effective number; lower = routes more shared)",
    color: theme.muted,
    baseline: "top",
    align: "left",
    font: "11px system-ui, sans-serif",
  });
  s.labels.push({ x: left + MARGIN.left - 8, y: bottom, text: "0", color: theme.muted, align: "right", baseline: "middle", font: "10px system-ui, sans-serif" });
  s.labels.push({ x: left + MARGIN.left - 8, y: top, text: String(nExperts), color: theme.muted, align: "right", baseline: "middle", font: "10px system-ui, sans-serif" });
  const width = Math.min(10, (x.step * 0.7) / Math.max(1, nGroups));
  for (let l = 0; l < L; l++) {
    for (let g = 0; g < nGroups; g++) {
      const v = spread[g * L + l];
      if (!Number.isFinite(v)) continue;
      const x0 = x(l) + (g - nGroups / 2) * width;
      const y0 = scale(v);
      s.rects.push({ x: x0, y: y0, w: Math.max(1, width - 1), h: bottom - y0, fill: color(g) });
    }
  }
}

/** Each sample's own edges (for few samples), width from its edge weight scaled by `fade`. */
export function sampleSegments(
  out: SegmentBuffer[],
  gaps: GapEdges[],
  groupOf: ArrayLike<number>,
  fade: number,
  x: Band,
  y: Band,
): void {
  gaps.forEach((e, l) => {
    const x0 = x(l);
    const x1 = x(l + 1);
    for (let k = 0; k < e.sample.length; k++) {
      const lv = level(e.weight[k] * fade, 1);
      if (lv >= 0) out[groupOf[e.sample[k]] * LEVELS + lv].push(x0, y(e.from[k]), x1, y(e.to[k]));
    }
  });
}

/** One sample's whole pathway, into per-level buffers (overlay highlight). */
export function pathwaySegments(out: SegmentBuffer[], snap: Snapshot, s: number, x: Band, y: Band): void {
  for (let l = 0; l + 1 < snap.nLayers; l++) {
    const p = entries(snap, s, l);
    const q = entries(snap, s, l + 1);
    for (let i = 0; i < p.expert.length; i++) {
      for (let j = 0; j < q.expert.length; j++) {
        const lv = level(p.weight[i] * q.weight[j], 1);
        out[Math.max(0, lv)].push(x(l), y(p.expert[i]), x(l + 1), y(q.expert[j]));
      }
    }
  }
}

export interface RouteStep {
  layer: number;
  expert: number;
  weight: number;
}

/** A token's route: edges between its experts of consecutive layers, and a dot per expert. */
export function routeInto(s: Scene, route: RouteStep[], x: Band, y: Band, color: string, halo: string): void {
  const byLayer = new Map<number, RouteStep[]>();
  for (const r of route) {
    let list = byLayer.get(r.layer);
    if (list == null) byLayer.set(r.layer, (list = []));
    list.push(r);
  }
  const maxWidth = Math.max(2.5, Math.min(12, y.step));
  const out = buffers(LEVELS);
  for (let l = 0; l + 1 < x.n; l++) {
    for (const p of byLayer.get(l) ?? []) {
      for (const q of byLayer.get(l + 1) ?? []) {
        out[Math.max(0, level(p.weight * q.weight, 1))].push(x(l), y(p.expert), x(l + 1), y(q.expert));
      }
    }
  }
  linesInto(s, out, color, 0.9, maxWidth);
  const rMax = Math.max(3, Math.min(10, y.step * 0.45));
  const xyr = new Float32Array(route.length * 3);
  route.forEach((r, i) => xyr.set([x(r.layer), y(r.expert), 1.5 + Math.sqrt(r.weight) * rMax], i * 3));
  s.dots.push({ color, alpha: 1, xyr, count: route.length, stroke: halo });
}

/** Per-level buffers as scene lines of one colour. */
export function linesInto(s: Scene, out: SegmentBuffer[], color: string, alpha: number, maxWidth: number): void {
  out.forEach((b, lv) => {
    if (b.count) s.lines.push({ color, alpha, width: levelWidth(lv % LEVELS, maxWidth), coords: b.coords, count: b.count });
  });
}
