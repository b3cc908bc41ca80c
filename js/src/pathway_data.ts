// PathwayDiagram data: the widget's tables decoded into per-checkpoint pathways, and what the view
// derives from them lazily (node masses, edge bundles, per-gap edges and hover indexes), cached per
// checkpoint so scrubbing back and forth recomputes nothing.
import { decodeTable, numeric, text, type Binary } from "./arrow";
import type { RouteStep } from "./diagram_scene";
import { buildSnapshots, gapEdges, gapIndex, nodeMass, type GapEdges, type GapIndex, type Snapshot } from "./pathways";
import type { ModelLike } from "./view";

/** What the view computes from one checkpoint's pathways, on first use. */
export interface Derived {
  mass: Float32Array;
  flow: Float32Array | null;
  gaps: Map<number, GapEdges>;
  index: Map<number, GapIndex>;
}

export interface Data {
  sampleIds: string[];
  groupNames: string[];
  groupOf: Uint16Array;
  nLayers: number;
  nExperts: number;
  snapshots: Map<number, Snapshot>;
  derived: Map<number, Derived>;
  tokens: { index: number[]; text: string[] };
  routes: Map<number, RouteStep[]>;
}

/** Decode the widget's Arrow tables into pathways per checkpoint, groups and token routes. */
export function loadData(model: ModelLike): Data {
  const samples = decodeTable(model.get("_samples") as Binary);
  const sampleIds = text(samples.columns, "sample_id");
  const groups = text(samples.columns, "group");
  const groupNames: string[] = [];
  const groupIndex = new Map<string, number>();
  const groupOf = new Uint16Array(sampleIds.length);
  for (let s = 0; s < sampleIds.length; s++) {
    const name = groups[s] ?? "";
    let g = groupIndex.get(name);
    if (g == null) {
      g = groupNames.length;
      groupIndex.set(name, g);
      groupNames.push(name);
    }
    groupOf[s] = g;
  }
  const nLayers = Number(model.get("_n_layers") ?? 0);
  const nExperts = Number(model.get("_n_experts") ?? 0);
  const paths = decodeTable(model.get("_paths") as Binary);
  const snapshots = buildSnapshots(paths.columns, paths.length, sampleIds.length, nLayers);
  const tok = decodeTable(model.get("_tokens") as Binary);
  const tokens = { index: Array.from(numeric(tok.columns, "token_index")), text: text(tok.columns, "token") };
  const rt = decodeTable(model.get("_token_routes") as Binary);
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
    d = { mass: nodeMass(snap, data.nExperts), flow: null, gaps: new Map(), index: new Map() };
    data.derived.set(c, d);
  }
  return d;
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
