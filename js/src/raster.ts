// Fast canvas rasterization of large line batches (the PathwayDiagram's edge bundles).
//
// Chromium's software rasterizer turns a stroked path wider than one device pixel into a filled
// outline; with tens of thousands of overlapping segments in one path that fill costs about a
// second. Lines at most one device pixel wide take Skia's hairline path instead, roughly ten times
// faster. So a large batch is drawn as hairlines: a width of W device pixels becomes round(W)
// parallel hairlines spread across the width. To keep what a single stroke() looks like (the
// batch's segments union, they do not pile up alpha where they overlap), the hairlines go opaque
// onto a scratch layer, which is then composited once with the batch's alpha.
import type { Lines } from "./scene";

/** Batches with at least this many segments are drawn as layered hairlines; smaller ones stroked. */
export const HAIRLINE_BATCH = 256;

/** Scratch layers, one per target canvas, reused across draws (a full-size 2D canvas each). */
const scratches = new WeakMap<object, CanvasRenderingContext2D | OffscreenCanvasRenderingContext2D>();

type Ctx2D = CanvasRenderingContext2D | OffscreenCanvasRenderingContext2D;

export interface HairlinePlan {
  /** How many parallel hairlines draw one segment. */
  passes: number;
  /** Offsets of the hairlines from the segment's centre line, along its normal, in user units. */
  offsets: number[];
  /** Opacity of each hairline on the scratch layer: the width's share of a pixel when below one. */
  alpha: number;
  /** The lineWidth that makes a stroke exactly one device pixel wide. */
  lineWidth: number;
}

/**
 * How a line `width` user units wide is drawn at `scale` device pixels per unit: round(W) parallel
 * hairlines evenly spread over the W device pixels, or one fainter hairline when W < 1.
 *
 * Examples
 * --------
 * hairlinePlan(3, 1) -> { passes: 3, offsets: [-1, 0, 1], alpha: 1, lineWidth: 1 }
 */
export function hairlinePlan(width: number, scale: number): HairlinePlan {
  const s = scale > 0 ? scale : 1;
  const device = Math.max(0, width * s);
  const passes = Math.max(1, Math.round(device));
  const spacing = device / passes / s;
  const offsets = Array.from({ length: passes }, (_, i) => (i - (passes - 1) / 2) * spacing);
  return { passes, offsets, alpha: Math.min(1, device), lineWidth: 1 / s };
}

/** Device pixels per user unit of a context's current transform. */
export function deviceScale(ctx: Ctx2D): number {
  const m = ctx.getTransform();
  const s = Math.sqrt(Math.abs(m.a * m.d - m.b * m.c));
  return s > 0 ? s : 1;
}

/**
 * Append a batch's segments as hairlines to the current path of `ctx`: each segment once per
 * offset, shifted along its unit normal.
 */
export function hairlinePath(
  ctx: Pick<Ctx2D, "moveTo" | "lineTo">,
  coords: Float32Array,
  count: number,
  offsets: number[],
): void {
  if (offsets.length === 1 && offsets[0] === 0) {
    for (let k = 0; k < count * 4; k += 4) {
      ctx.moveTo(coords[k], coords[k + 1]);
      ctx.lineTo(coords[k + 2], coords[k + 3]);
    }
    return;
  }
  for (let k = 0; k < count * 4; k += 4) {
    const x0 = coords[k];
    const y0 = coords[k + 1];
    const x1 = coords[k + 2];
    const y1 = coords[k + 3];
    const length = Math.hypot(x1 - x0, y1 - y0) || 1;
    const nx = -(y1 - y0) / length;
    const ny = (x1 - x0) / length;
    for (const o of offsets) {
      ctx.moveTo(x0 + nx * o, y0 + ny * o);
      ctx.lineTo(x1 + nx * o, y1 + ny * o);
    }
  }
}

function scratchFor(ctx: Ctx2D): Ctx2D | null {
  const target = ctx.canvas;
  let scratch = scratches.get(target);
  if (scratch == null) {
    let made: Ctx2D | null = null;
    if (typeof OffscreenCanvas !== "undefined") {
      made = new OffscreenCanvas(target.width, target.height).getContext("2d");
    } else if (typeof document !== "undefined") {
      made = document.createElement("canvas").getContext("2d");
    }
    if (made == null) return null;
    scratch = made;
    scratches.set(target, scratch);
  }
  if (scratch.canvas.width !== target.width || scratch.canvas.height !== target.height) {
    scratch.canvas.width = target.width;
    scratch.canvas.height = target.height;
  }
  return scratch;
}

/**
 * Draw a large batch of segments onto `ctx` as one stroke would (same colour, width and alpha;
 * overlaps do not darken), via opaque hairlines on a scratch layer composited at `lines.alpha`.
 * Falls back to a plain stroke where no scratch canvas can be made.
 */
export function strokeHairlines(ctx: Ctx2D, lines: Lines): void {
  if (ctx.canvas.width === 0 || ctx.canvas.height === 0) return; // nothing shows; drawImage would throw
  const scratch = scratchFor(ctx);
  if (scratch == null) {
    ctx.globalAlpha = lines.alpha;
    ctx.strokeStyle = lines.color;
    ctx.lineWidth = lines.width;
    ctx.beginPath();
    hairlinePath(ctx, lines.coords, lines.count, [0]);
    ctx.stroke();
    return;
  }
  const plan = hairlinePlan(lines.width, deviceScale(ctx));
  scratch.setTransform(1, 0, 0, 1, 0, 0);
  scratch.clearRect(0, 0, scratch.canvas.width, scratch.canvas.height);
  scratch.setTransform(ctx.getTransform());
  scratch.globalAlpha = plan.alpha;
  scratch.strokeStyle = lines.color;
  scratch.lineWidth = plan.lineWidth;
  scratch.lineCap = "butt";
  scratch.beginPath();
  hairlinePath(scratch, lines.coords, lines.count, plan.offsets);
  scratch.stroke();
  ctx.save();
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.globalAlpha = lines.alpha;
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(scratch.canvas, 0, 0);
  ctx.restore();
}
