// Pure drawing pieces of the PathwayDiagram: axes, edge bundles, per-sample edges, node dots and
// highlighted routes, as scene primitives (no DOM), so they are unit-tested and shared by the
// canvas and the SVG export.
import type { Theme } from "./color";
import { entries, type GapEdges, type Snapshot } from "./pathways";
import type { Band } from "./scales";
import { SegmentBuffer, type Scene } from "./scene";

/** Width levels edges are quantised into, so each colour needs only this many stroke() calls. */
export const LEVELS = 8;
export const MARGIN = { left: 44, right: 14, top: 22, bottom: 14 };

/** Edges whose square-root weight ratio to the largest is below this are not drawn. */
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

export function buffers(n: number): SegmentBuffer[] {
  return Array.from({ length: n }, () => new SegmentBuffer());
}

/** Layer gridlines and labels, expert labels (thinned so they never overlap). */
export function axes(s: Scene, x: Band, y: Band, theme: Theme): void {
  const L = x.n;
  for (let l = 0; l < L; l++) {
    s.rects.push({ x: x(l) - 0.5, y: MARGIN.top, w: 1, h: s.height - MARGIN.top - MARGIN.bottom, fill: theme.grid });
    if (L <= 32 || l % Math.ceil(L / 32) === 0) {
      s.labels.push({ x: x(l), y: MARGIN.top - 6, text: `L${l}`, color: theme.muted, align: "center" });
    }
  }
  const every = Math.max(1, Math.ceil(12 / Math.max(1, y.step)));
  for (let e = 0; e < y.n; e += every) {
    s.labels.push({ x: MARGIN.left - 6, y: y(e), text: `E${e}`, color: theme.muted, align: "right", baseline: "middle" });
  }
}

/**
 * Segments of the edge bundles: flow laid out as in pathways.aggregate, one buffer per
 * (group, width level), widths relative to the largest flow.
 */
export function bundleSegments(flow: Float32Array, nGroups: number, nGaps: number, x: Band, y: Band): SegmentBuffer[] {
  const K = y.n;
  const kk = K * K;
  const out = buffers(nGroups * LEVELS);
  let max = 0;
  for (let i = 0; i < flow.length; i++) if (flow[i] > max) max = flow[i];
  if (!(max > 0)) return out;
  const ys = Float64Array.from({ length: K }, (_, e) => y(e));
  // level(v, max) inlined: this loop runs over every (group, gap, expert pair), often while cold.
  const floor = max * FAINT * FAINT;
  const inv = 1 / max;
  for (let g = 0; g < nGroups; g++) {
    for (let l = 0; l < nGaps; l++) {
      const off = (g * nGaps + l) * kk;
      const x0 = x(l);
      const x1 = x(l + 1);
      for (let from = 0; from < K; from++) {
        const row = off + from * K;
        const y0 = ys[from];
        for (let to = 0; to < K; to++) {
          const v = flow[row + to];
          if (!(v >= floor)) continue;
          const lv = Math.min(LEVELS - 1, Math.floor(Math.sqrt(v * inv) * LEVELS));
          out[g * LEVELS + lv].push(x0, y0, x1, ys[to]);
        }
      }
    }
  }
  return out;
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

/** A dot per (layer, expert) with routing mass, radius growing with the square root of the mass. */
export function nodeDots(s: Scene, mass: Float32Array, x: Band, y: Band, color: string): void {
  const L = x.n;
  const K = y.n;
  const xyr = new Float32Array(L * K * 3);
  let n = 0;
  const rMax = Math.max(1.5, Math.min(x.step * 0.12, y.step * 0.45));
  for (let l = 0; l < L; l++) {
    for (let e = 0; e < K; e++) {
      const m = mass[l * K + e];
      if (m <= 0) continue;
      xyr[n * 3] = x(l);
      xyr[n * 3 + 1] = y(e);
      xyr[n * 3 + 2] = 0.8 + rMax * Math.sqrt(m);
      n++;
    }
  }
  s.dots.push({ color, alpha: 0.6, xyr, count: n });
}
