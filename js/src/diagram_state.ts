// What the PathwayDiagram's pointer is on, and what that highlights: pure functions of the decoded
// data and the panel geometry (no DOM, no drawing), so hit-testing and highlighting are
// unit-tested apart from the view.
import { derived, flowOf, hoverIndex, type Data } from "./pathway_data";
import { entries, samplesThrough, shares, type GapIndex } from "./pathways";
import type { Panel } from "./diagram_scene";
import { segmentDistance2 } from "./scales";

export type Hit =
  | { kind: "expert"; panel: number; checkpoint: number; layer: number; expert: number }
  | { kind: "route"; panel: number; checkpoint: number; layer: number; from: number; to: number }
  | { kind: "sample"; panel: number; checkpoint: number; sample: number; layer: number; expert: number; weight: number; shared: number };

/** The samples a hit stands for: those through the expert, on the route, or the one sample. */
export function hitSamples(data: Data, hit: Hit): Uint32Array {
  const snap = data.snapshots.get(hit.checkpoint);
  if (snap == null) return new Uint32Array(0);
  if (hit.kind === "expert") return samplesThrough(snap, hit.layer, hit.expert);
  if (hit.kind === "route") return samplesThrough(snap, hit.layer, hit.from, hit.to);
  return Uint32Array.of(hit.sample);
}

/** Route shares of only `samples` (widths still relative to each whole group), for highlights. */
export function highlightFlow(data: Data, checkpoint: number, samples: ArrayLike<number>): Float32Array | null {
  const snap = data.snapshots.get(checkpoint);
  if (snap == null) return null;
  return shares(snap, data.groupOf, Math.max(1, data.groupNames.length), data.nExperts, samples);
}

/** Total share (over groups) of every route of every gap, to hit-test only drawn routes. */
export function drawnRoutes(data: Data, checkpoint: number, minShare: number): Float32Array[] | null {
  const flow = flowOf(data, checkpoint);
  if (flow == null) return null;
  const G = Math.max(1, data.groupNames.length);
  const K = data.nExperts;
  const kk = K * K;
  const nGaps = Math.max(0, data.nLayers - 1);
  const out = Array.from({ length: nGaps }, () => new Float32Array(kk));
  for (let g = 0; g < G; g++) {
    for (let l = 0; l < nGaps; l++) {
      const base = (g * nGaps + l) * kk;
      const acc = out[l];
      for (let p = 0; p < kk; p++) {
        const v = flow[base + p];
        if (v >= minShare && v > acc[p]) acc[p] = v;
      }
    }
  }
  return out;
}

/**
 * The expert or route under (px, py) in panel `p` showing checkpoint `c`: an expert within a few
 * pixels of its dot first, else the nearest drawn route within 5 px.
 */
export function hitFlows(
  data: Data,
  p: Panel,
  panelIndex: number,
  c: number,
  routes: Float32Array[] | null,
  px: number,
  py: number,
): Hit | null {
  const { x, y } = p;
  const L = data.nLayers;
  const K = data.nExperts;
  if (L === 0 || K === 0 || data.snapshots.get(c) == null) return null;
  const l = Math.round((px - x(0)) / x.step);
  const e = Math.round((py - y(0)) / y.step);
  if (l >= 0 && l < L && e >= 0 && e < K) {
    const dx = px - x(l);
    const dy = py - y(e);
    const radius = Math.max(5, Math.min(10, y.step * 0.5));
    if (dx * dx + dy * dy <= radius * radius && (derived(data, c)?.load[l * K + e] ?? 0) > 0) {
      return { kind: "expert", panel: panelIndex, checkpoint: c, layer: l, expert: e };
    }
  }
  if (routes == null) return null;
  const gap = Math.floor((px - x(0)) / x.step);
  if (gap < 0 || gap >= L - 1) return null;
  const shareOf = routes[gap];
  const x0 = x(gap);
  const x1 = x(gap + 1);
  let best = 25; // squared pixels
  let bestP = -1;
  for (let q = 0; q < K * K; q++) {
    if (!(shareOf[q] > 0)) continue;
    const [d2] = segmentDistance2(px, py, x0, y((q / K) | 0), x1, y(q % K));
    if (d2 < best || (d2 === best && bestP >= 0 && shareOf[q] > shareOf[bestP])) {
      best = d2;
      bestP = q;
    }
  }
  if (bestP < 0) return null;
  return { kind: "route", panel: panelIndex, checkpoint: c, layer: gap, from: (bestP / K) | 0, to: bestP % K };
}

/** Per-sample lines mode: the nearest drawn edge, reported for the sample weighing most on it. */
export function hitLines(data: Data, p: Panel, panelIndex: number, c: number, px: number, py: number): Hit | null {
  const snap = data.snapshots.get(c);
  if (snap == null || data.nLayers < 2) return null;
  const { x, y } = p;
  const l = Math.floor((px - x(0)) / x.step);
  if (l < 0 || l >= data.nLayers - 1) return null;
  const index = hoverIndex(data, c, l) as GapIndex;
  const K = data.nExperts;
  const x0 = x(l);
  const x1 = x(l + 1);
  let best = 36;
  let bestP = -1;
  let bestT = 0;
  for (let q = 0; q < K * K; q++) {
    if (index.count[q] === 0) continue;
    const [d2, along] = segmentDistance2(px, py, x0, y((q / K) | 0), x1, y(q % K));
    if (d2 < best || (d2 === best && bestP >= 0 && index.bestWeight[q] > index.bestWeight[bestP])) {
      best = d2;
      bestP = q;
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
  return { kind: "sample", panel: panelIndex, checkpoint: c, sample: s, layer, expert, weight, shared: index.count[bestP] };
}

const pct = (v: number) => `${Math.round(v * 100)} %`;

/** The tooltip of a hit: what it is, and how it splits over the groups. */
export function describe(data: Data, hit: Hit, checkpointName: string, label: (g: string) => string): string[] {
  const G = Math.max(1, data.groupNames.length);
  const named = G > 1;
  if (hit.kind === "sample") {
    const group = data.groupNames[data.groupOf[hit.sample]] ?? "";
    return [
      `sample ${data.sampleIds[hit.sample]}` + (named ? ` (${label(group)})` : ""),
      `layer ${hit.layer} · expert ${hit.expert}`,
      `weight ${hit.weight.toFixed(3)}`,
      ...(hit.shared > 1 ? [`edge shared by ${hit.shared} samples`] : []),
    ];
  }
  const samples = hitSamples(data, hit);
  const total = data.sampleIds.length || 1;
  const counts = new Float64Array(G);
  const sizes = new Float64Array(G);
  for (let s = 0; s < data.groupOf.length; s++) sizes[data.groupOf[s]]++;
  for (let k = 0; k < samples.length; k++) counts[data.groupOf[samples[k]]]++;
  const head =
    hit.kind === "expert"
      ? `layer ${hit.layer} · expert ${hit.expert} at ${checkpointName}`
      : `route L${hit.layer} E${hit.from} → L${hit.layer + 1} E${hit.to} at ${checkpointName}`;
  const lines = [head, `${samples.length} samples (${pct(samples.length / total)} of all)`];
  if (named) {
    const order = Array.from({ length: G }, (_, g) => g)
      .filter((g) => counts[g] > 0)
      .sort((a, b) => counts[b] / sizes[b] - counts[a] / sizes[a])
      .slice(0, 5);
    for (const g of order) lines.push(`${label(data.groupNames[g])}: ${pct(counts[g] / sizes[g])} of its samples`);
  }
  lines.push("click to select them");
  return lines;
}
