// Timeline data: the metric series, accuracy lines, onset rules and delay pairs decoded from the
// widget's Arrow tables into per-row, per-group point lists, and the scales a row needs. No DOM.
import { decodeTable, numeric, text } from "./arrow";
import type { TimelineMeta, TimelineModel } from "./models";

export interface Series {
  group: number;
  steps: Float64Array;
  values: Float64Array;
  lo: Float64Array;
  hi: Float64Array;
}

export interface Row {
  metric: string;
  title: string;
  series: Series[];
  min: number;
  max: number;
}

export interface TimelineData {
  meta: TimelineMeta;
  rows: Row[];
  /** Accuracy per group drawing it: steps and values in step order. */
  accuracy: { group: number; task: string; steps: Float64Array; values: Float64Array }[];
  rules: { group: number; step: number; kind: "memorization" | "generalization" }[];
  pairs: { group: number; train: number; test: number; label: string; delay: number }[];
  steps: number[];
  minStep: number;
  maxStep: number;
}

function sortedSeries(group: number, rows: number[], steps: ArrayLike<number>, values: ArrayLike<number>, lo: ArrayLike<number>, hi: ArrayLike<number>): Series {
  rows.sort((a, b) => steps[a] - steps[b]);
  return {
    group,
    steps: Float64Array.from(rows, (r) => steps[r]),
    values: Float64Array.from(rows, (r) => values[r]),
    lo: Float64Array.from(rows, (r) => (lo.length ? lo[r] : NaN)),
    hi: Float64Array.from(rows, (r) => (hi.length ? hi[r] : NaN)),
  };
}

export function loadTimeline(model: TimelineModel): TimelineData {
  const meta: TimelineMeta = model.get("_meta") ?? { metrics: [], groups: [], steps: [], tasks: [], title: "" };
  const t = decodeTable(model.get("_series"));
  const metric = numeric(t.columns, "metric");
  const group = numeric(t.columns, "group");
  const step = numeric(t.columns, "step");
  const value = numeric(t.columns, "value");
  const lo = numeric(t.columns, "ci_low");
  const hi = numeric(t.columns, "ci_high");
  const byRow = new Map<number, Map<number, number[]>>();
  for (let r = 0; r < t.length; r++) {
    let m = byRow.get(metric[r]);
    if (m == null) byRow.set(metric[r], (m = new Map()));
    let list = m.get(group[r]);
    if (list == null) m.set(group[r], (list = []));
    list.push(r);
  }
  const rows: Row[] = meta.metrics.map((m, i) => {
    const groups = byRow.get(i) ?? new Map<number, number[]>();
    const series = [...groups.entries()].sort((a, b) => a[0] - b[0]).map(([g, list]) => sortedSeries(g, list, step, value, lo, hi));
    let min = Infinity;
    let max = -Infinity;
    for (const s of series) {
      for (let k = 0; k < s.values.length; k++) {
        for (const v of [s.values[k], s.lo[k], s.hi[k]]) {
          if (Number.isFinite(v)) {
            if (v < min) min = v;
            if (v > max) max = v;
          }
        }
      }
    }
    if (!Number.isFinite(min)) [min, max] = [0, 1];
    return { metric: m.name, title: m.title, series, min, max };
  });
  const a = decodeTable(model.get("_accuracy"));
  const ag = numeric(a.columns, "group");
  const atask = text(a.columns, "task");
  const astep = numeric(a.columns, "step");
  const aval = numeric(a.columns, "accuracy");
  const byTask = new Map<string, number[]>();
  for (let r = 0; r < a.length; r++) {
    const key = atask[r];
    if (!byTask.has(key)) byTask.set(key, []);
    byTask.get(key)?.push(r);
  }
  const accuracy = [...byTask.entries()].map(([task, list]) => {
    list.sort((p, q) => astep[p] - astep[q]);
    return { group: ag[list[0]], task, steps: Float64Array.from(list, (r) => astep[r]), values: Float64Array.from(list, (r) => aval[r]) };
  });
  const ru = decodeTable(model.get("_rules"));
  const rg = numeric(ru.columns, "group");
  const rs = numeric(ru.columns, "step");
  const rk = numeric(ru.columns, "kind");
  const rules = Array.from({ length: ru.length }, (_, r) => ({
    group: rg[r],
    step: rs[r],
    kind: rk[r] === 1 ? ("generalization" as const) : ("memorization" as const),
  }));
  const pa = decodeTable(model.get("_pairs"));
  const pg = numeric(pa.columns, "group");
  const ptr = numeric(pa.columns, "train_step");
  const pte = numeric(pa.columns, "test_step");
  const pd = numeric(pa.columns, "delay");
  const pl = text(pa.columns, "label");
  const pairs = Array.from({ length: pa.length }, (_, r) => ({ group: pg[r], train: ptr[r], test: pte[r], label: pl[r], delay: pd[r] }));
  const steps = [...meta.steps].sort((p, q) => p - q);
  const minStep = steps.length ? steps[0] : 0;
  const maxStep = steps.length ? steps[steps.length - 1] : 1;
  return { meta, rows, accuracy, rules, pairs, steps, minStep, maxStep };
}

/** The step nearest to `value` among `steps` (ascending). */
export function nearestStep(steps: number[], value: number): number {
  if (steps.length === 0) return NaN;
  let best = steps[0];
  for (const s of steps) if (Math.abs(s - value) < Math.abs(best - value)) best = s;
  return best;
}
