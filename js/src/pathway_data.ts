// PathwayDiagram data: the widget's tables decoded into per-checkpoint pathways, and what the view
// derives from them lazily (route shares, expert loads, how concentrated each group's routes are,
// per-gap edges and hover indexes), cached per checkpoint so scrubbing back and forth recomputes
// nothing. No drawing here (diagram_scene.ts) and no DOM (pathway_diagram.ts).
import { decodeTable, numeric, text } from "./arrow";
import type { RouteStep } from "./diagram_scene";
import type { DiagramModel } from "./models";
import {
  buildSnapshots,
  effectiveExperts,
  gapEdges,
  gapIndex,
  groupLoads,
  shares,
  totalLoad,
  type GapEdges,
  type GapIndex,
  type Snapshot,
} from "./pathways";

/** What the view computes from one checkpoint's pathways, on first use. */
export interface Derived {
  /** Share of all samples using each (layer, expert): `[l * K + e]`. */
  load: Float32Array;
  /** Per group: `[(g * L + l) * K + e]`. */
  groupLoad: Float32Array | null;
  /** Route shares per group: `[(g * (L-1) + l) * K * K + from * K + to]`. */
  flow: Float32Array | null;
  /** Effective number of experts per group and layer: `[g * L + l]`. */
  spread: Float32Array | null;
  gaps: Map<number, GapEdges>;
  index: Map<number, GapIndex>;
}

export interface Data {
  sampleIds: string[];
  /** Group names in legend (palette) order; `groupOf[s]` indexes into it. */
  groupNames: string[];
  groupOf: Uint16Array;
  nLayers: number;
  nExperts: number;
  snapshots: Map<number, Snapshot>;
  derived: Map<number, Derived>;
  tokens: { index: number[]; text: string[] };
  routes: Map<number, RouteStep[]>;
}

/**
 * Decode the widget's Arrow tables into pathways per checkpoint, groups and token routes. Groups
 * are numbered in `order` (the palette's legend order), so drawing and legends agree.
 */
export function loadData(model: DiagramModel, order: (groups: Iterable<string>) => string[]): Data {
  const samples = decodeTable(model.get("_samples"));
  const sampleIds = text(samples.columns, "sample_id");
  const groups = text(samples.columns, "group");
  const groupNames = order(groups.length ? groups : [""]);
  const groupIndex = new Map(groupNames.map((g, i) => [g, i]));
  const groupOf = new Uint16Array(sampleIds.length);
  for (let s = 0; s < sampleIds.length; s++) groupOf[s] = groupIndex.get(groups[s] ?? "") ?? 0;
  const nLayers = Number(model.get("_n_layers") ?? 0);
  const nExperts = Number(model.get("_n_experts") ?? 0);
  const paths = decodeTable(model.get("_paths"));
  const snapshots = buildSnapshots(paths.columns, paths.length, sampleIds.length, nLayers);
  const tok = decodeTable(model.get("_tokens"));
  const tokens = { index: Array.from(numeric(tok.columns, "token_index")), text: text(tok.columns, "token") };
  const rt = decodeTable(model.get("_token_routes"));
  const routes = new Map<number, RouteStep[]>();
  const ti = numeric(rt.columns, "token_index");
  const tl = numeric(rt.columns, "layer");
  const te = numeric(rt.columns, "expert");
  const tw = numeric(rt.columns, "weight");
  for (let r = 0; r < rt.length; r++) {
    let list = routes.get(ti[r]);
    if (list == null) routes.set(ti[r], (list = []));
    list.push({ layer: tl[r], expert: te[r], weight: tw[r] });
  }
  return { sampleIds, groupNames, groupOf, nLayers, nExperts, snapshots, derived: new Map(), tokens, routes };
}

/** The derived values of checkpoint c, created on first use; null when c is not loaded. */
export function derived(data: Data, c: number): Derived | null {
  const snap = data.snapshots.get(c);
  if (snap == null) return null;
  let d = data.derived.get(c);
  if (d == null) {
    d = { load: totalLoad(snap, data.nExperts), groupLoad: null, flow: null, spread: null, gaps: new Map(), index: new Map() };
    data.derived.set(c, d);
  }
  return d;
}

function groupCount(data: Data): number {
  return Math.max(1, data.groupNames.length);
}

/** Route shares of checkpoint c (computed once). */
export function flowOf(data: Data, c: number): Float32Array | null {
  const d = derived(data, c);
  const snap = data.snapshots.get(c);
  if (d == null || snap == null) return null;
  d.flow ??= shares(snap, data.groupOf, groupCount(data), data.nExperts);
  return d.flow;
}

/** Per-group expert loads of checkpoint c (computed once). */
export function groupLoadOf(data: Data, c: number): Float32Array | null {
  const d = derived(data, c);
  const snap = data.snapshots.get(c);
  if (d == null || snap == null) return null;
  d.groupLoad ??= groupLoads(snap, data.groupOf, groupCount(data), data.nExperts);
  return d.groupLoad;
}

/** Effective number of experts per group and layer at checkpoint c (computed once). */
export function spreadOf(data: Data, c: number): Float32Array | null {
  const d = derived(data, c);
  const load = groupLoadOf(data, c);
  if (d == null || load == null) return null;
  d.spread ??= effectiveExperts(load, groupCount(data), data.nLayers, data.nExperts);
  return d.spread;
}

/** Every sample's edges between layers l and l+1 of checkpoint c (per-sample drawing). */
export function gapsOf(data: Data, c: number, l: number): GapEdges | null {
  const d = derived(data, c);
  const snap = data.snapshots.get(c);
  if (d == null || snap == null) return null;
  let g = d.gaps.get(l);
  if (g == null) d.gaps.set(l, (g = gapEdges(snap, l)));
  return g;
}

/** The hover index of gap l of checkpoint c. */
export function hoverIndex(data: Data, c: number, l: number): GapIndex | null {
  const d = derived(data, c);
  const snap = data.snapshots.get(c);
  if (d == null || snap == null) return null;
  let g = d.index.get(l);
  if (g == null) d.index.set(l, (g = gapIndex(snap, l, data.nExperts)));
  return g;
}
