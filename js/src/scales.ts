// Small scale helpers (no d3 to keep the bundle lean and offline).

export interface Linear {
  (value: number): number;
  invert(pixel: number): number;
  domain: [number, number];
  range: [number, number];
}

/** Map [d0, d1] linearly onto [r0, r1]; a zero-width domain maps everything to the range middle. */
export function linear(domain: [number, number], range: [number, number]): Linear {
  const [d0, d1] = domain;
  const [r0, r1] = range;
  const span = d1 - d0;
  const f = ((v: number) => (span === 0 ? (r0 + r1) / 2 : r0 + ((v - d0) / span) * (r1 - r0))) as Linear;
  f.invert = (p: number) => (r1 === r0 ? d0 : d0 + ((p - r0) / (r1 - r0)) * span);
  f.domain = domain;
  f.range = range;
  return f;
}

/**
 * Centres of n equal bands across [r0, r1] with inner padding; used for layer columns and expert rows.
 * band(i) is the centre of band i; bandwidth is each band's width; index(p) the band under pixel p.
 */
export interface Band {
  (index: number): number;
  bandwidth: number;
  step: number;
  index(pixel: number): number;
  n: number;
}

export function band(n: number, range: [number, number], padding = 0): Band {
  const [r0, r1] = range;
  const step = n > 0 ? (r1 - r0) / n : 0;
  const f = ((i: number) => r0 + step * (i + 0.5)) as Band;
  f.step = step;
  f.bandwidth = step * (1 - padding);
  f.n = n;
  f.index = (p: number) => {
    if (step === 0) return -1;
    const i = Math.floor((p - r0) / step);
    return i >= 0 && i < n ? i : -1;
  };
  return f;
}

/** Round-number ticks covering [lo, hi], about `count` of them. */
export function ticks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo) || count < 1) return [lo];
  const raw = (hi - lo) / count;
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  const error = raw / power;
  const step = power * (error >= 7.5 ? 10 : error >= 3.5 ? 5 : error >= 1.5 ? 2 : 1);
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    out.push(Math.round(v / step) * step);
  }
  return out;
}

/** Squared distance from point (px, py) to segment (ax, ay)-(bx, by), and where along it (0..1). */
export function segmentDistance2(
  px: number,
  py: number,
  ax: number,
  ay: number,
  bx: number,
  by: number,
): [number, number] {
  const dx = bx - ax;
  const dy = by - ay;
  const len2 = dx * dx + dy * dy;
  let t = len2 === 0 ? 0 : ((px - ax) * dx + (py - ay) * dy) / len2;
  t = t < 0 ? 0 : t > 1 ? 1 : t;
  const x = ax + t * dx - px;
  const y = ay + t * dy - py;
  return [x * x + y * y, t];
}
