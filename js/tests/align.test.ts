import { describe, expect, it } from "vitest";
import { align, cost, levenshtein } from "../src/align";

// Independent reference: plain recursion with memo over (i, j).
function reference(a: number[], b: number[]): number {
  const memo = new Map<string, number>();
  const go = (i: number, j: number): number => {
    if (i === a.length) return b.length - j;
    if (j === b.length) return a.length - i;
    const key = `${i},${j}`;
    const hit = memo.get(key);
    if (hit != null) return hit;
    const v = Math.min(go(i + 1, j) + 1, go(i, j + 1) + 1, go(i + 1, j + 1) + (a[i] === b[j] ? 0 : 1));
    memo.set(key, v);
    return v;
  };
  return go(0, 0);
}

/** Apply an alignment's operations to a and return what it produces. */
function apply(a: number[], b: number[], ops: ReturnType<typeof align>["ops"]): number[] {
  const out: number[] = [];
  for (const op of ops) {
    if (op.kind === "match") out.push(a[op.i as number]);
    else if (op.kind === "sub" || op.kind === "ins") out.push(b[op.j as number]);
  }
  return out;
}

function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

describe("edit alignment", () => {
  it("finds the textbook distance and operations", () => {
    const kitten = [..."kitten"].map((c) => c.charCodeAt(0));
    const sitting = [..."sitting"].map((c) => c.charCodeAt(0));
    const { distance, ops } = align(kitten, sitting);
    expect(distance).toBe(3);
    expect(ops.filter((o) => o.kind === "sub")).toHaveLength(2);
    expect(ops.filter((o) => o.kind === "ins")).toHaveLength(1);
    expect(ops.filter((o) => o.kind === "del")).toHaveLength(0);
  });

  it("handles empty sequences", () => {
    expect(align([], []).ops).toEqual([]);
    expect(align([1, 2], []).ops.map((o) => o.kind)).toEqual(["del", "del"]);
    expect(align([], [3]).ops).toEqual([{ kind: "ins", i: null, j: 0 }]);
  });

  it("is optimal and turns a into b on random pathways", () => {
    const rnd = random(7);
    for (let trial = 0; trial < 200; trial++) {
      const a = Array.from({ length: Math.floor(rnd() * 12) }, () => Math.floor(rnd() * 5) - 1);
      const b = Array.from({ length: Math.floor(rnd() * 12) }, () => Math.floor(rnd() * 5) - 1);
      const want = reference(a, b);
      const got = align(a, b);
      expect(got.distance).toBe(want);
      expect(levenshtein(a, b)).toBe(want);
      expect(cost(got.ops)).toBe(want);
      expect(apply(a, b, got.ops)).toEqual(b);
      // every index of a and of b is used exactly once, in order
      expect(got.ops.filter((o) => o.i != null).map((o) => o.i)).toEqual(a.map((_, k) => k));
      expect(got.ops.filter((o) => o.j != null).map((o) => o.j)).toEqual(b.map((_, k) => k));
    }
  });
});
