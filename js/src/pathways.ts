// Pathways as the diagram needs them: per checkpoint, each sample's selected experts per layer
// (CSR layout), the edges between consecutive layers, group-aggregated edge bundles, and the
// interpolation ("morph") between two checkpoints.
import { numeric, type Columns } from "./arrow";

/** One checkpoint's pathways. Entries of (sample s, layer l) are [start[s*L+l], start[s*L+l+1]). */
export interface Snapshot {
  checkpoint: number;
  nSamples: number;
  nLayers: number;
  start: Uint32Array;
  expert: Uint16Array;
  weight: Float32Array;
}

/**
 * Split path rows (columns checkpoint, sample, layer, expert, weight; any order) into one snapshot
 * per checkpoint. Rows of one (sample, layer) keep their order, which is the pathway's rank order.
 */
export function buildSnapshots(
  columns: Columns,
  length: number,
  nSamples: number,
  nLayers: number,
): Map<number, Snapshot> {
  const ckpt = numeric(columns, "checkpoint");
  const sample = numeric(columns, "sample");
  const layer = numeric(columns, "layer");
  const expert = numeric(columns, "expert");
  const weight = numeric(columns, "weight");
  const cells = nSamples * nLayers;
  const counts = new Map<number, Uint32Array>();
  // Rows come grouped by checkpoint: look the checkpoint's arrays up only when it changes.
  let last = NaN;
  let count: Uint32Array = new Uint32Array(0);
  for (let r = 0; r < length; r++) {
    const c = ckpt[r];
    if (c !== last) {
      last = c;
      let found = counts.get(c);
      if (found == null) counts.set(c, (found = new Uint32Array(cells + 1)));
      count = found;
    }
    count[sample[r] * nLayers + layer[r] + 1]++;
  }
  const out = new Map<number, Snapshot>();
  const fill = new Map<number, Uint32Array>();
  for (const [c, count] of counts) {
    for (let k = 1; k <= cells; k++) count[k] += count[k - 1];
    const total = count[cells];
    out.set(c, {
      checkpoint: c,
      nSamples,
      nLayers,
      start: count,
      expert: new Uint16Array(total),
      weight: new Float32Array(total),
    });
    fill.set(c, count.slice(0, cells));
  }
  last = NaN;
  let snap: Snapshot | null = null;
  let cursor: Uint32Array = new Uint32Array(0);
  for (let r = 0; r < length; r++) {
    if (ckpt[r] !== last || snap == null) {
      last = ckpt[r];
      snap = out.get(last) as Snapshot;
      cursor = fill.get(last) as Uint32Array;
    }
    const k = cursor[sample[r] * nLayers + layer[r]]++;
    snap.expert[k] = expert[r];
    snap.weight[k] = weight[r];
  }
  return out;
}

/** Experts and weights of sample s at layer l. */
export function entries(snap: Snapshot, s: number, l: number): { expert: Uint16Array; weight: Float32Array } {
  const cell = s * snap.nLayers + l;
  const a = snap.start[cell];
  const b = snap.start[cell + 1];
  return { expert: snap.expert.subarray(a, b), weight: snap.weight.subarray(a, b) };
}

/**
 * The pathway as a symbol sequence, the unit grokviz.metrics.distance uses by default: expert ids in
 * rank order, with `separator` between layers.
 */
export function sequence(snap: Snapshot, s: number, separator = -1): Int32Array {
  const a = snap.start[s * snap.nLayers];
  const b = snap.start[(s + 1) * snap.nLayers];
  const out = new Int32Array(b - a + Math.max(0, snap.nLayers - 1));
  let k = 0;
  for (let l = 0; l < snap.nLayers; l++) {
    if (l > 0) out[k++] = separator;
    const { expert } = entries(snap, s, l);
    for (let e = 0; e < expert.length; e++) out[k++] = expert[e];
  }
  return out;
}

/** Edges between layer l and l+1 of every sample: one per pair of selected experts. */
export interface GapEdges {
  sample: Uint32Array;
  from: Uint16Array;
  to: Uint16Array;
  /** Product of the two routing weights: the share of the sample's flow along this edge. */
  weight: Float32Array;
}

export function gapEdges(snap: Snapshot, l: number): GapEdges {
  let n = 0;
  for (let s = 0; s < snap.nSamples; s++) {
    const c = s * snap.nLayers + l;
    n += (snap.start[c + 1] - snap.start[c]) * (snap.start[c + 2] - snap.start[c + 1]);
  }
  const out: GapEdges = {
    sample: new Uint32Array(n),
    from: new Uint16Array(n),
    to: new Uint16Array(n),
    weight: new Float32Array(n),
  };
  let k = 0;
  for (let s = 0; s < snap.nSamples; s++) {
    const c = s * snap.nLayers + l;
    for (let i = snap.start[c]; i < snap.start[c + 1]; i++) {
      for (let j = snap.start[c + 1]; j < snap.start[c + 2]; j++) {
        out.sample[k] = s;
        out.from[k] = snap.expert[i];
        out.to[k] = snap.expert[j];
        out.weight[k] = snap.weight[i] * snap.weight[j];
        k++;
      }
    }
  }
  return out;
}

/**
 * Hover index of one gap: for every geometric edge (from, to) = from * K + to, how many samples use
 * it and which one has the largest edge weight there. Hit-testing the K×K distinct segments instead
 * of every sample's edges keeps hover cheap when erratic pathways use dozens of experts per layer.
 */
export interface GapIndex {
  count: Uint32Array;
  best: Int32Array;
  bestWeight: Float32Array;
}

export function gapIndex(snap: Snapshot, l: number, nExperts: number): GapIndex {
  const kk = nExperts * nExperts;
  const out: GapIndex = {
    count: new Uint32Array(kk),
    best: new Int32Array(kk).fill(-1),
    bestWeight: new Float32Array(kk),
  };
  const { start, expert, weight } = snap;
  for (let s = 0; s < snap.nSamples; s++) {
    const c = s * snap.nLayers + l;
    const j0 = start[c + 1];
    const j1 = start[c + 2];
    for (let i = start[c]; i < start[c + 1]; i++) {
      const row = expert[i] * nExperts;
      const wi = weight[i];
      for (let j = j0; j < j1; j++) {
        const p = row + expert[j];
        const w = wi * weight[j];
        out.count[p]++;
        if (w > out.bestWeight[p]) {
          out.bestWeight[p] = w;
          out.best[p] = s;
        }
      }
    }
  }
  return out;
}

/** Number of edges all samples' pathways have between consecutive layers (to choose bundling). */
export function edgeCount(snap: Snapshot): number {
  let n = 0;
  const L = snap.nLayers;
  for (let s = 0; s < snap.nSamples; s++) {
    for (let l = 0; l + 1 < L; l++) {
      const c = s * L + l;
      n += (snap.start[c + 1] - snap.start[c]) * (snap.start[c + 2] - snap.start[c + 1]);
    }
  }
  return n;
}

/**
 * Route shares: flow[(g * (L-1) + l) * K * K + from * K + to] is the share of group g's samples
 * whose pathway has expert `from` at layer l and expert `to` at layer l + 1. These are the
 * diagram's bundles: a route every sample of a group takes has share 1, and a group whose samples
 * scatter over many routes has many small shares. Reads the pathways directly, without
 * materialising every sample's edges.
 */
export function shares(
  snap: Snapshot,
  groupOf: ArrayLike<number>,
  nGroups: number,
  nExperts: number,
  only?: ArrayLike<number>,
): Float32Array {
  const kk = nExperts * nExperts;
  const L = snap.nLayers;
  const nGaps = Math.max(0, L - 1);
  const flow = new Float32Array(nGroups * nGaps * kk);
  const size = groupSizes(groupOf, nGroups, snap.nSamples);
  const { start, expert } = snap;
  const visit = (s: number) => {
    const g = groupOf[s];
    const inv = 1 / size[g];
    for (let l = 0; l < nGaps; l++) {
      const base = (g * nGaps + l) * kk;
      const c = s * L + l;
      const j0 = start[c + 1];
      const j1 = start[c + 2];
      for (let i = start[c]; i < start[c + 1]; i++) {
        const row = base + expert[i] * nExperts;
        for (let j = j0; j < j1; j++) flow[row + expert[j]] += inv;
      }
    }
  };
  if (only != null) for (let k = 0; k < only.length; k++) visit(only[k]);
  else for (let s = 0; s < snap.nSamples; s++) visit(s);
  return flow;
}

export function groupSizes(groupOf: ArrayLike<number>, nGroups: number, nSamples: number): Float64Array {
  const size = new Float64Array(nGroups);
  for (let s = 0; s < nSamples; s++) size[groupOf[s]]++;
  return size;
}

/**
 * Expert loads: load[(g * L + l) * K + e] is the share of group g's samples whose pathway uses
 * expert e at layer l (a sample with several experts there counts once for each).
 */
export function groupLoads(snap: Snapshot, groupOf: ArrayLike<number>, nGroups: number, nExperts: number): Float32Array {
  const L = snap.nLayers;
  const load = new Float32Array(nGroups * L * nExperts);
  const size = groupSizes(groupOf, nGroups, snap.nSamples);
  for (let s = 0; s < snap.nSamples; s++) {
    const g = groupOf[s];
    const inv = 1 / size[g];
    for (let l = 0; l < L; l++) {
      const c = s * L + l;
      const base = (g * L + l) * nExperts;
      for (let i = snap.start[c]; i < snap.start[c + 1]; i++) load[base + snap.expert[i]] += inv;
    }
  }
  return load;
}

/** Share of all samples using each (layer, expert): `load[l * K + e]`, the experts' sizes. */
export function totalLoad(snap: Snapshot, nExperts: number): Float32Array {
  const L = snap.nLayers;
  const load = new Float32Array(L * nExperts);
  const inv = snap.nSamples > 0 ? 1 / snap.nSamples : 0;
  for (let s = 0; s < snap.nSamples; s++) {
    for (let l = 0; l < L; l++) {
      const c = s * L + l;
      for (let i = snap.start[c]; i < snap.start[c + 1]; i++) load[l * nExperts + snap.expert[i]] += inv;
    }
  }
  return load;
}

/**
 * How concentrated each group's routes are, per layer: the effective number of experts its
 * samples use there, exp(entropy) of the group's load shares. It is the pathway size (k) when
 * every sample of the group uses the same experts, and grows to K as they scatter uniformly.
 * Returns `[g * L + l]`; NaN for a group without samples.
 */
export function effectiveExperts(load: Float32Array, nGroups: number, nLayers: number, nExperts: number): Float32Array {
  const out = new Float32Array(nGroups * nLayers);
  for (let g = 0; g < nGroups; g++) {
    for (let l = 0; l < nLayers; l++) {
      const base = (g * nLayers + l) * nExperts;
      let total = 0;
      for (let e = 0; e < nExperts; e++) total += load[base + e];
      if (!(total > 0)) {
        out[g * nLayers + l] = NaN;
        continue;
      }
      let h = 0;
      for (let e = 0; e < nExperts; e++) {
        const p = load[base + e] / total;
        if (p > 0) h -= p * Math.log(p);
      }
      out[g * nLayers + l] = Math.exp(h);
    }
  }
  return out;
}

/** Samples whose pathway uses expert `e` at layer `l` (and, given `to`, expert `to` at l + 1). */
export function samplesThrough(snap: Snapshot, l: number, e: number, to?: number): Uint32Array {
  const out: number[] = [];
  const L = snap.nLayers;
  for (let s = 0; s < snap.nSamples; s++) {
    const c = s * L + l;
    let hit = false;
    for (let i = snap.start[c]; i < snap.start[c + 1]; i++) if (snap.expert[i] === e) hit = true;
    if (hit && to != null) {
      hit = false;
      for (let j = snap.start[c + 1]; j < snap.start[c + 2]; j++) if (snap.expert[j] === to) hit = true;
    }
    if (hit) out.push(s);
  }
  return Uint32Array.from(out);
}

/** Linear interpolation of two equally long arrays: (1 - t)·a + t·b, written into `out`. */
export function mix(a: ArrayLike<number>, b: ArrayLike<number>, t: number, out?: Float32Array): Float32Array {
  if (a.length !== b.length) throw new Error(`grokviz: cannot mix ${a.length} and ${b.length} values`);
  const res = out ?? new Float32Array(a.length);
  const u = 1 - t;
  for (let i = 0; i < a.length; i++) res[i] = u * a[i] + t * b[i];
  return res;
}

/** Smooth in-out easing for animation (0 -> 0, 1 -> 1, symmetric). */
export function ease(t: number): number {
  const c = t < 0 ? 0 : t > 1 ? 1 : t;
  return c * c * (3 - 2 * c);
}

/**
 * Which two loaded checkpoints a slider position morphs between, and how far: position 2.25 with
 * checkpoints 2 and 3 loaded gives [2, 3, 0.25]. Positions outside the loaded ones snap to the
 * nearest loaded checkpoint (t = 0), so the view always draws something while more data loads.
 */
export function bracket(position: number, loaded: number[]): [number, number, number] {
  if (loaded.length === 0) return [-1, -1, 0];
  const sorted = [...loaded].sort((x, y) => x - y);
  const lo = Math.floor(position);
  const hi = Math.ceil(position);
  if (sorted.includes(lo) && sorted.includes(hi)) return [lo, hi, hi === lo ? 0 : position - lo];
  let best = sorted[0];
  for (const c of sorted) if (Math.abs(c - position) < Math.abs(best - position)) best = c;
  return [best, best, 0];
}
