// Edit-distance alignment of two pathways (Levenshtein with traceback).
//
// The distance equals grokviz.metrics.distance's (unit cost insert/delete/substitute); the
// traceback gives one optimal alignment so the view can show which symbols were substituted,
// inserted or deleted. Ties prefer match/substitute, then delete, then insert, so the alignment is
// deterministic.

export type OpKind = "match" | "sub" | "ins" | "del";

export interface Op {
  kind: OpKind;
  /** Index into a (null for an insertion). */
  i: number | null;
  /** Index into b (null for a deletion). */
  j: number | null;
}

export interface Alignment {
  distance: number;
  ops: Op[];
}

export function levenshtein(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = a.length;
  const m = b.length;
  let prev = new Uint32Array(m + 1);
  let cur = new Uint32Array(m + 1);
  for (let j = 0; j <= m; j++) prev[j] = j;
  for (let i = 1; i <= n; i++) {
    cur[0] = i;
    const ai = a[i - 1];
    for (let j = 1; j <= m; j++) {
      const sub = prev[j - 1] + (ai === b[j - 1] ? 0 : 1);
      const del = prev[j] + 1;
      const ins = cur[j - 1] + 1;
      cur[j] = sub < del ? (sub < ins ? sub : ins) : del < ins ? del : ins;
    }
    [prev, cur] = [cur, prev];
  }
  return prev[m];
}

/** An optimal alignment turning a into b. Memory O(n·m): fine for pathways (hundreds of symbols). */
export function align(a: ArrayLike<number>, b: ArrayLike<number>): Alignment {
  const n = a.length;
  const m = b.length;
  const w = m + 1;
  const d = new Uint32Array((n + 1) * w);
  for (let j = 0; j <= m; j++) d[j] = j;
  for (let i = 1; i <= n; i++) {
    d[i * w] = i;
    for (let j = 1; j <= m; j++) {
      const sub = d[(i - 1) * w + j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1);
      const del = d[(i - 1) * w + j] + 1;
      const ins = d[i * w + j - 1] + 1;
      d[i * w + j] = Math.min(sub, del, ins);
    }
  }
  const ops: Op[] = [];
  let i = n;
  let j = m;
  while (i > 0 || j > 0) {
    const here = d[i * w + j];
    if (i > 0 && j > 0) {
      const same = a[i - 1] === b[j - 1];
      if (here === d[(i - 1) * w + j - 1] + (same ? 0 : 1)) {
        ops.push({ kind: same ? "match" : "sub", i: i - 1, j: j - 1 });
        i--;
        j--;
        continue;
      }
    }
    if (i > 0 && here === d[(i - 1) * w + j] + 1) {
      ops.push({ kind: "del", i: i - 1, j: null });
      i--;
    } else {
      ops.push({ kind: "ins", i: null, j: j - 1 });
      j--;
    }
  }
  ops.reverse();
  return { distance: d[n * w + m], ops };
}

/** Cost of an alignment (number of non-match operations); equals its distance when optimal. */
export function cost(ops: Op[]): number {
  return ops.reduce((s, op) => s + (op.kind === "match" ? 0 : 1), 0);
}
