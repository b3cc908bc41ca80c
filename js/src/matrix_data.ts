// SimilarityMatrix data and geometry: the distance matrices of the loaded checkpoints, their colour
// range, group blocks and block means, and the one function that maps a device pixel to a matrix
// cell. Painting and hit-testing both go through `cellAt`, so what is drawn under the pointer is
// exactly the pair a click selects, at any cell size (a cell may be a fraction of a pixel).
import { decodeArray, decodeTable, text, type DType } from "./arrow";
import type { MatrixModel } from "./models";
import { buildSnapshots, type Snapshot } from "./pathways";

export interface Matrix {
  n: number;
  values: ArrayLike<number>;
  lo: number;
  hi: number;
}

/** Off-diagonal min and max: the diagonal's zeros would squash the contrast between pairs. */
export function valueRange(values: ArrayLike<number>, n: number): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < n; i++) {
    const row = i * n;
    for (let j = 0; j < n; j++) {
      if (i === j && n > 1) continue;
      const v = values[row + j];
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  return Number.isFinite(lo) ? [lo, hi] : [0, 0];
}

export function readMatrix(values: ArrayLike<number>, n: number, range: [number, number] | null): Matrix {
  if (values.length !== n * n) {
    throw new Error(`grokviz: the distance matrix has ${values.length} values, expected ${n}×${n}`);
  }
  const [lo, hi] = range ?? valueRange(values, n);
  // One distance only (two samples, or all pairs alike): give the colour bar a span around it.
  return hi > lo ? { n, values, lo, hi } : { n, values, lo: lo - 1, hi: lo + 1 };
}

/** Fill an n×n RGBA pixel buffer (as Uint32) from the matrix through the LUT (one pixel per cell). */
export function paint(matrix: Matrix, table: Uint32Array, out?: Uint32Array): Uint32Array {
  const { n, values, lo, hi } = matrix;
  const pixels = out ?? new Uint32Array(n * n);
  for (let k = 0; k < n * n; k++) pixels[k] = table[lutIndexOf(values[k], lo, hi, table.length)];
  return pixels;
}

export function lutIndexOf(v: number, lo: number, hi: number, size: number): number {
  if (!(hi > lo)) return 0;
  const i = Math.floor(((v - lo) * size) / (hi - lo));
  return i < 0 ? 0 : i >= size ? size - 1 : i;
}

/** Positions where consecutive samples change group: the group boundaries to draw. */
export function boundaries(groups: string[]): number[] {
  const out: number[] = [];
  for (let i = 1; i < groups.length; i++) if (groups[i] !== groups[i - 1]) out.push(i);
  return out;
}

/** Contiguous runs of one group in display order: [start, end) and the group. */
export function blocks(groups: string[]): { start: number; end: number; group: string }[] {
  const out: { start: number; end: number; group: string }[] = [];
  let start = 0;
  for (const end of [...boundaries(groups), groups.length]) {
    if (end > start) out.push({ start, end, group: groups[start] });
    start = end;
  }
  return out;
}

/**
 * Mean distance of every pair of blocks (the diagonal of a block left out), `[a * B + b]`, and how
 * many pairs each mean is over.
 */
export function blockMeans(matrix: Matrix, runs: { start: number; end: number }[]): { mean: Float64Array; pairs: Float64Array } {
  const B = runs.length;
  const sum = new Float64Array(B * B);
  const pairs = new Float64Array(B * B);
  const of = new Int32Array(matrix.n);
  runs.forEach((r, b) => of.fill(b, r.start, r.end));
  const { n, values } = matrix;
  for (let i = 0; i < n; i++) {
    const bi = of[i] * B;
    const row = i * n;
    for (let j = 0; j < n; j++) {
      if (i === j) continue;
      const k = bi + of[j];
      sum[k] += values[row + j];
      pairs[k]++;
    }
  }
  const mean = new Float64Array(B * B);
  for (let k = 0; k < B * B; k++) mean[k] = pairs[k] > 0 ? sum[k] / pairs[k] : NaN;
  return { mean, pairs };
}

/** The rows and columns shown (zoom): [r0, r1) × [c0, c1) in display order. */
export interface Window {
  r0: number;
  r1: number;
  c0: number;
  c1: number;
}

/**
 * The cell under device pixel `d` (0 .. D-1) of an axis showing [w0, w1) over D device pixels.
 * Painting asks it for every pixel and hit-testing for the pointer's pixel, so they agree.
 */
export function cellAt(d: number, w0: number, w1: number, D: number): number {
  if (D <= 0) return -1;
  const k = Math.floor(d);
  if (k < 0 || k >= D) return -1;
  return w0 + Math.floor((k * (w1 - w0)) / D);
}

/** First device pixel of cell `i` on that axis (the inverse of cellAt, for drawing marks). */
export function pixelOf(i: number, w0: number, w1: number, D: number): number {
  return Math.ceil(((i - w0) * D) / (w1 - w0));
}

/** Paint the window at D×D device pixels: each pixel takes the colour of the cell cellAt gives. */
export function paintWindow(
  matrix: Matrix,
  table: Uint32Array,
  win: Window,
  D: number,
  out: Uint32Array,
  block?: { of: Int32Array; mean: Float64Array; count: number },
): void {
  const { n, values, lo, hi } = matrix;
  const size = table.length;
  const cols = new Int32Array(D);
  for (let x = 0; x < D; x++) cols[x] = cellAt(x, win.c0, win.c1, D);
  for (let y = 0; y < D; y++) {
    const i = cellAt(y, win.r0, win.r1, D);
    const row = i * n;
    const at = y * D;
    if (block != null) {
      const bi = block.of[i] * block.count;
      for (let x = 0; x < D; x++) {
        const v = block.mean[bi + block.of[cols[x]]];
        out[at + x] = table[Number.isNaN(v) ? 0 : lutIndexOf(v, lo, hi, size)];
      }
    } else {
      for (let x = 0; x < D; x++) out[at + x] = table[lutIndexOf(values[row + cols[x]], lo, hi, size)];
    }
  }
}

export interface MatrixData {
  ids: string[];
  groups: string[];
  runs: { start: number; end: number; group: string }[];
  /** Loaded checkpoints (indices into `checkpoints`) and their matrices in display order. */
  matrices: Map<number, Matrix>;
  snapshots: Map<number, Snapshot>;
  n: number;
}

export function loadMatrixData(model: MatrixModel): MatrixData {
  const samples = decodeTable(model.get("_samples"));
  const ids = text(samples.columns, "sample_id");
  const groups = text(samples.columns, "group");
  const n = Number(model.get("_n") ?? ids.length);
  const loaded = model.get("_loaded") ?? [];
  const all = decodeArray(model.get("_matrices"), (model.get("_dtype") ?? "float32") as DType);
  const range = model.get("_range") ?? null;
  const matrices = new Map<number, Matrix>();
  if (loaded.length * n * n !== all.length) {
    throw new Error(`grokviz: ${all.length} distances for ${loaded.length} checkpoints of ${n}×${n}`);
  }
  const typed = all as unknown as { subarray(a: number, b: number): ArrayLike<number> };
  loaded.forEach((c, k) => matrices.set(c, readMatrix(typed.subarray(k * n * n, (k + 1) * n * n), n, range)));
  const paths = decodeTable(model.get("_paths"));
  const snapshots = buildSnapshots(paths.columns, paths.length, n, Number(model.get("_n_layers") ?? 0));
  return { ids, groups, runs: blocks(groups), matrices, snapshots, n };
}
