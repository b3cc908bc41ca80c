import { describe, expect, it } from "vitest";
import {
  bracket,
  buildSnapshots,
  ease,
  edgeCount,
  effectiveExperts,
  entries,
  gapEdges,
  gapIndex,
  groupLoads,
  mix,
  samplesThrough,
  sequence,
  shares,
  totalLoad,
} from "../src/pathways";

// Two checkpoints, three samples, three layers, four experts. pathway[c][s][l] = [[expert, weight], ...]
const pathways: [number, number][][][][] = [
  [
    [[[0, 0.6], [2, 0.3]], [[1, 0.8]], [[3, 0.5], [0, 0.4]]],
    [[[2, 0.9]], [[1, 0.5], [3, 0.3]], [[3, 1.0]]],
    [[[1, 0.7]], [[1, 0.7]], [[2, 0.7]]],
  ],
  [
    [[[0, 1.0]], [[1, 1.0]], [[3, 1.0]]],
    [[[0, 1.0]], [[1, 1.0]], [[3, 1.0]]],
    [[[0, 1.0]], [[1, 0.6], [2, 0.4]], [[3, 1.0]]],
  ],
];

function rows(shuffle: boolean) {
  const out: { checkpoint: number; sample: number; layer: number; expert: number; weight: number }[] = [];
  pathways.forEach((ck, c) =>
    ck.forEach((smp, s) => smp.forEach((lay, l) => lay.forEach(([e, w]) => out.push({ checkpoint: c, sample: s, layer: l, expert: e, weight: w })))),
  );
  // A stable interleaving that keeps rank order within a (checkpoint, sample, layer).
  if (shuffle) out.sort((a, b) => a.layer - b.layer || b.checkpoint - a.checkpoint);
  const col = <K extends keyof (typeof out)[0]>(k: K) => Float64Array.from(out.map((r) => r[k]));
  return {
    length: out.length,
    columns: {
      checkpoint: col("checkpoint"),
      sample: col("sample"),
      layer: col("layer"),
      expert: col("expert"),
      weight: Float32Array.from(out.map((r) => r.weight)),
    },
  };
}

describe("pathway snapshots", () => {
  it("splits rows per checkpoint and keeps rank order", () => {
    for (const shuffle of [false, true]) {
      const { columns, length } = rows(shuffle);
      const snaps = buildSnapshots(columns, length, 3, 3);
      expect([...snaps.keys()].sort()).toEqual([0, 1]);
      for (let c = 0; c < 2; c++) {
        for (let s = 0; s < 3; s++) {
          for (let l = 0; l < 3; l++) {
            const { expert, weight } = entries(snaps.get(c)!, s, l);
            expect(Array.from(expert)).toEqual(pathways[c][s][l].map((p) => p[0]));
            expect(Array.from(weight)).toEqual(pathways[c][s][l].map((p) => Math.fround(p[1])));
          }
        }
      }
    }
  });

  it("writes the sequence with layer separators", () => {
    const { columns, length } = rows(false);
    const snap = buildSnapshots(columns, length, 3, 3).get(0)!;
    expect(Array.from(sequence(snap, 0))).toEqual([0, 2, -1, 1, -1, 3, 0]);
    expect(Array.from(sequence(snap, 1, 99))).toEqual([2, 99, 1, 3, 99, 3]);
  });

  it("lists every pair of experts between consecutive layers", () => {
    const { columns, length } = rows(false);
    const snap = buildSnapshots(columns, length, 3, 3).get(0)!;
    const g = gapEdges(snap, 0);
    const list = Array.from(g.sample, (s, k) => [s, g.from[k], g.to[k], Number(g.weight[k].toFixed(4))]);
    expect(list).toEqual([
      [0, 0, 1, 0.48],
      [0, 2, 1, 0.24],
      [1, 2, 1, 0.45],
      [1, 2, 3, 0.27],
      [2, 1, 1, 0.49],
    ]);
    expect(edgeCount(snap)).toBe(5 + 2 + 2 + 1);
  });

  it("counts route shares as the fraction of each group's samples taking the route", () => {
    const { columns, length } = rows(false);
    const snap = buildSnapshots(columns, length, 3, 3).get(0)!;
    const groupOf = [0, 0, 1];
    const K = 4;
    const flow = shares(snap, groupOf, 2, K);
    // Reference from the explicit edge lists: each sample counts once per (from, to) it uses.
    const want = new Float64Array(2 * 2 * K * K);
    for (let l = 0; l < 2; l++) {
      const g = gapEdges(snap, l);
      for (let k = 0; k < g.sample.length; k++) {
        const grp = groupOf[g.sample[k]];
        const n = groupOf.filter((x) => x === grp).length;
        want[(grp * 2 + l) * K * K + g.from[k] * K + g.to[k]] += 1 / n;
      }
    }
    Array.from(flow).forEach((v, i) => expect(v).toBeCloseTo(want[i], 6));
    // Group 0, layer 0 -> 1, expert 2 -> 1: both its samples take it; 0 -> 1: one of the two.
    expect(flow[(0 * 2 + 0) * 16 + 2 * 4 + 1]).toBeCloseTo(1, 6);
    expect(flow[(0 * 2 + 0) * 16 + 0 * 4 + 1]).toBeCloseTo(0.5, 6);
    // Only some samples (a highlight): shares stay relative to the whole group.
    const only = shares(snap, groupOf, 2, K, [1]);
    expect(only[(0 * 2 + 0) * 16 + 2 * 4 + 1]).toBeCloseTo(0.5, 6);
    expect(only[(0 * 2 + 0) * 16 + 0 * 4 + 1]).toBe(0);
  });

  it("measures expert loads and how many experts a group spreads over", () => {
    const { columns, length } = rows(false);
    const snap = buildSnapshots(columns, length, 3, 3).get(1)!;
    const total = totalLoad(snap, 4);
    expect(total[0 * 4 + 0]).toBeCloseTo(1); // every sample at expert 0 of layer 0
    expect(total[1 * 4 + 1]).toBeCloseTo(1);
    expect(total[1 * 4 + 2]).toBeCloseTo(1 / 3);
    const load = groupLoads(snap, [0, 0, 1], 2, 4);
    const spread = effectiveExperts(load, 2, 3, 4);
    // Group 0 takes one expert per layer: spread 1 everywhere. Group 1 splits layer 1 over two.
    expect(Array.from(spread.subarray(0, 3))).toEqual([1, 1, 1]);
    expect(spread[1 * 3 + 1]).toBeCloseTo(2, 6);
    // Checkpoint 0 scatters more than checkpoint 1 in every layer, for the group of two.
    const early = effectiveExperts(groupLoads(buildSnapshots(columns, length, 3, 3).get(0)!, [0, 0, 1], 2, 4), 2, 3, 4);
    for (let l = 0; l < 3; l++) expect(early[l]).toBeGreaterThan(1);
    expect(Array.from(samplesThrough(snap, 1, 2))).toEqual([2]);
    expect(Array.from(samplesThrough(snap, 0, 0, 1))).toEqual([0, 1, 2]);
    expect(Array.from(samplesThrough(snap, 1, 2, 0))).toEqual([]);
  });
});

describe("morph", () => {
  it("interpolates linearly", () => {
    expect(Array.from(mix([0, 10], [10, 20], 0.25))).toEqual([2.5, 12.5]);
    expect(Array.from(mix([1], [3], 0))).toEqual([1]);
    expect(Array.from(mix([1], [3], 1))).toEqual([3]);
    expect(() => mix([1], [1, 2], 0.5)).toThrow();
  });

  it("eases monotonically from 0 to 1", () => {
    expect(ease(0)).toBe(0);
    expect(ease(1)).toBe(1);
    expect(ease(0.5)).toBe(0.5);
    let prev = 0;
    for (let t = 0; t <= 1; t += 0.05) {
      expect(ease(t)).toBeGreaterThanOrEqual(prev);
      prev = ease(t);
    }
  });

  it("brackets slider positions between loaded checkpoints", () => {
    expect(bracket(2.25, [1, 2, 3])).toEqual([2, 3, 0.25]);
    expect(bracket(2, [2, 3])).toEqual([2, 2, 0]);
    expect(bracket(4.5, [2, 3])).toEqual([3, 3, 0]);
    expect(bracket(0.7, [2, 3])).toEqual([2, 2, 0]);
    expect(bracket(1, [])).toEqual([-1, -1, 0]);
  });
});

describe("hover index", () => {
  it("counts samples per edge and keeps the strongest one", () => {
    const { columns, length } = rows(false);
    const snap = buildSnapshots(columns, length, 3, 3).get(0)!;
    const K = 4;
    for (let l = 0; l < 2; l++) {
      const index = gapIndex(snap, l, K);
      const edges = gapEdges(snap, l);
      for (let p = 0; p < K * K; p++) {
        const here = Array.from(edges.sample.keys()).filter((k) => edges.from[k] * K + edges.to[k] === p);
        expect(index.count[p]).toBe(here.length);
        if (here.length === 0) {
          expect(index.best[p]).toBe(-1);
          continue;
        }
        const strongest = here.reduce((x, y) => (edges.weight[y] > edges.weight[x] ? y : x));
        expect(index.best[p]).toBe(edges.sample[strongest]);
        expect(index.bestWeight[p]).toBeCloseTo(edges.weight[strongest], 6);
      }
    }
    // Layer 0 -> 1, expert 2 -> 1 is used by samples 0 (0.3·0.8) and 1 (0.9·0.5): sample 1 wins.
    expect(gapIndex(snap, 0, K).best[2 * K + 1]).toBe(1);
    expect(gapIndex(snap, 0, K).count[2 * K + 1]).toBe(2);
  });
});
