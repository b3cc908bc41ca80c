// A drawing as a list of batched primitives, rendered either to a canvas (fast, on screen) or to an
// SVG string (export). Building the scene once and rendering it twice keeps the PNG and the SVG
// export the same picture.
import { HAIRLINE_BATCH, strokeHairlines } from "./raster";

export interface Lines {
  color: string;
  alpha: number;
  width: number;
  /** x0, y0, x1, y1 for each segment. */
  coords: Float32Array;
  count: number;
  /** A dash pattern in CSS pixels (absent: solid). */
  dash?: number[];
  cap?: "round" | "butt";
}

/** Connected lines: each entry of `points` is one polyline, x0, y0, x1, y1, ... */
export interface Polylines {
  color: string;
  alpha: number;
  width: number;
  points: Float32Array[];
  dash?: number[];
}

/**
 * Filled quadrilaterals, 8 numbers each (four corners in order): route bundles drawn as ribbons.
 * Filling them is several times faster than stroking wide lines in Chromium's software
 * rasterizer; where ribbons of one batch overlap, their opacity adds up, as in a Sankey diagram.
 */
export interface Quads {
  fill: string;
  alpha: number;
  coords: Float32Array;
  count: number;
}

/** Filled polygons (confidence bands), each x0, y0, x1, y1, ... */
export interface Polygons {
  fill: string;
  alpha: number;
  points: Float32Array[];
}

export interface Dots {
  color: string;
  alpha: number;
  /** x, y, r for each dot. */
  xyr: Float32Array;
  count: number;
  stroke?: string;
}

export interface Label {
  x: number;
  y: number;
  text: string;
  color: string;
  align?: "left" | "center" | "right";
  baseline?: "top" | "middle" | "bottom" | "alphabetic";
  rotate?: number;
  font?: string;
}

export interface Rect {
  x: number;
  y: number;
  w: number;
  h: number;
  fill: string;
  alpha?: number;
  stroke?: string;
}

export interface Picture {
  x: number;
  y: number;
  w: number;
  h: number;
  /** A canvas (screen) and its data URL (SVG export) are both given by the caller. */
  source: CanvasImageSource | null;
  href: () => string;
}

export interface Scene {
  width: number;
  height: number;
  background: string;
  font: string;
  lines: Lines[];
  dots: Dots[];
  labels: Label[];
  rects: Rect[];
  pictures: Picture[];
  polylines: Polylines[];
  polygons: Polygons[];
  quads: Quads[];
}

export function emptyScene(width: number, height: number, background: string, font: string): Scene {
  return { width, height, background, font, lines: [], dots: [], labels: [], rects: [], pictures: [], polylines: [], polygons: [], quads: [] };
}

function shift(values: Float32Array, dx: number, dy: number, stride: number, count: number): Float32Array {
  const out = new Float32Array(count * stride);
  for (let k = 0; k < count * stride; k += stride) {
    for (let c = 0; c < stride; c++) out[k + c] = values[k + c] + (c === 0 || (stride === 4 && c === 2) ? dx : c === 1 || (stride === 4 && c === 3) ? dy : 0);
  }
  return out;
}

/**
 * Copy every primitive of `part` into `into`, moved by (dx, dy): how exports put a view's drawing
 * under its title and legend, or two panels side by side.
 */
export function place(into: Scene, part: Scene, dx: number, dy: number): void {
  if (part.background !== "transparent") into.rects.push({ x: dx, y: dy, w: part.width, h: part.height, fill: part.background });
  for (const p of part.polygons) into.polygons.push({ ...p, points: p.points.map((q) => shift(q, dx, dy, 2, q.length / 2)) });
  for (const r of part.rects) into.rects.push({ ...r, x: r.x + dx, y: r.y + dy });
  for (const q of part.quads) into.quads.push({ ...q, coords: shift(q.coords, dx, dy, 2, q.count * 4) });
  for (const p of part.pictures) into.pictures.push({ ...p, x: p.x + dx, y: p.y + dy });
  for (const l of part.lines) into.lines.push({ ...l, coords: shift(l.coords, dx, dy, 4, l.count) });
  for (const l of part.polylines) into.polylines.push({ ...l, points: l.points.map((q) => shift(q, dx, dy, 2, q.length / 2)) });
  for (const d of part.dots) into.dots.push({ ...d, xyr: shift(d.xyr, dx, dy, 3, d.count) });
  for (const t of part.labels) into.labels.push({ ...t, x: t.x + dx, y: t.y + dy });
}

let measurer: CanvasRenderingContext2D | null = null;

/** Width of `text` in `font`, in CSS pixels (an estimate where no canvas exists, as in tests). */
export function textWidth(text: string, font: string): number {
  if (measurer == null && typeof document !== "undefined") {
    measurer = document.createElement("canvas").getContext("2d");
  }
  if (measurer == null) return text.length * 6.5;
  measurer.font = font;
  return measurer.measureText(text).width;
}

/** A growable batch of segments (avoids one JS object per segment). */
export class SegmentBuffer {
  coords: Float32Array;
  count = 0;
  constructor(capacity = 64) {
    this.coords = new Float32Array(capacity * 4);
  }
  push(x0: number, y0: number, x1: number, y1: number): void {
    if ((this.count + 1) * 4 > this.coords.length) {
      const grown = new Float32Array(this.coords.length * 2);
      grown.set(this.coords);
      this.coords = grown;
    }
    const k = this.count * 4;
    this.coords[k] = x0;
    this.coords[k + 1] = y0;
    this.coords[k + 2] = x1;
    this.coords[k + 3] = y1;
    this.count++;
  }
}

export function renderCanvas(ctx: CanvasRenderingContext2D, scene: Scene, clear = true): void {
  if (clear) {
    ctx.clearRect(0, 0, scene.width, scene.height);
    if (scene.background !== "transparent") {
      ctx.fillStyle = scene.background;
      ctx.fillRect(0, 0, scene.width, scene.height);
    }
  }
  for (const p of scene.polygons) {
    ctx.globalAlpha = p.alpha;
    ctx.fillStyle = p.fill;
    ctx.beginPath();
    for (const q of p.points) {
      for (let k = 0; k < q.length; k += 2) (k === 0 ? ctx.moveTo : ctx.lineTo).call(ctx, q[k], q[k + 1]);
      ctx.closePath();
    }
    ctx.fill();
  }
  for (const r of scene.rects) {
    ctx.globalAlpha = r.alpha ?? 1;
    if (r.fill !== "none") {
      ctx.fillStyle = r.fill;
      ctx.fillRect(r.x, r.y, r.w, r.h);
    }
    if (r.stroke) {
      ctx.strokeStyle = r.stroke;
      ctx.lineWidth = 1;
      ctx.strokeRect(r.x + 0.5, r.y + 0.5, r.w - 1, r.h - 1);
    }
  }
  for (const q of scene.quads) {
    if (q.count === 0) continue;
    ctx.globalAlpha = q.alpha;
    ctx.fillStyle = q.fill;
    const c = q.coords;
    // One fill per ribbon: a small convex path takes Skia's fast path, where one path of
    // thousands of overlapping subpaths is filled several times slower.
    for (let k = 0; k < q.count * 8; k += 8) {
      ctx.beginPath();
      ctx.moveTo(c[k], c[k + 1]);
      ctx.lineTo(c[k + 2], c[k + 3]);
      ctx.lineTo(c[k + 4], c[k + 5]);
      ctx.lineTo(c[k + 6], c[k + 7]);
      ctx.closePath();
      ctx.fill();
    }
  }
  ctx.globalAlpha = 1;
  for (const p of scene.pictures) {
    if (p.source == null) continue;
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(p.source, p.x, p.y, p.w, p.h);
  }
  for (const l of scene.lines) {
    if (l.count === 0) continue;
    if (l.count >= HAIRLINE_BATCH && !l.dash) {
      strokeHairlines(ctx, l);
      continue;
    }
    ctx.lineCap = l.cap ?? "round";
    ctx.globalAlpha = l.alpha;
    ctx.strokeStyle = l.color;
    ctx.lineWidth = l.width;
    ctx.setLineDash(l.dash ?? []);
    ctx.beginPath();
    const c = l.coords;
    for (let k = 0; k < l.count * 4; k += 4) {
      ctx.moveTo(c[k], c[k + 1]);
      ctx.lineTo(c[k + 2], c[k + 3]);
    }
    ctx.stroke();
  }
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  for (const l of scene.polylines) {
    ctx.globalAlpha = l.alpha;
    ctx.strokeStyle = l.color;
    ctx.lineWidth = l.width;
    ctx.setLineDash(l.dash ?? []);
    ctx.beginPath();
    for (const q of l.points) {
      for (let k = 0; k < q.length; k += 2) (k === 0 ? ctx.moveTo : ctx.lineTo).call(ctx, q[k], q[k + 1]);
    }
    ctx.stroke();
  }
  ctx.setLineDash([]);
  for (const d of scene.dots) {
    if (d.count === 0) continue;
    ctx.globalAlpha = d.alpha;
    ctx.fillStyle = d.color;
    ctx.beginPath();
    const c = d.xyr;
    for (let k = 0; k < d.count * 3; k += 3) {
      ctx.moveTo(c[k] + c[k + 2], c[k + 1]);
      ctx.arc(c[k], c[k + 1], c[k + 2], 0, Math.PI * 2);
    }
    ctx.fill();
    if (d.stroke) {
      ctx.strokeStyle = d.stroke;
      ctx.lineWidth = 1.5;
      ctx.stroke();
    }
  }
  ctx.globalAlpha = 1;
  for (const t of scene.labels) {
    ctx.save();
    ctx.font = t.font ?? scene.font;
    ctx.fillStyle = t.color;
    ctx.textAlign = t.align ?? "left";
    ctx.textBaseline = t.baseline ?? "alphabetic";
    ctx.translate(t.x, t.y);
    if (t.rotate) ctx.rotate((t.rotate * Math.PI) / 180);
    ctx.fillText(t.text, 0, 0);
    ctx.restore();
  }
}

export function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) =>
    c === "<" ? "&lt;" : c === ">" ? "&gt;" : c === "&" ? "&amp;" : c === '"' ? "&quot;" : "&#39;",
  );
}

const r2 = (v: number) => Math.round(v * 100) / 100;

const ANCHOR = { left: "start", center: "middle", right: "end" } as const;
const BASELINE = {
  top: "hanging",
  middle: "central",
  bottom: "text-after-edge",
  alphabetic: "alphabetic",
} as const;

function pathData(q: Float32Array): string {
  let d = "";
  for (let k = 0; k < q.length; k += 2) d += `${k === 0 ? "M" : "L"}${r2(q[k])} ${r2(q[k + 1])}`;
  return d;
}

function dashAttr(dash?: number[]): string {
  return dash && dash.length ? ` stroke-dasharray="${dash.join(" ")}"` : "";
}

/** The scene as a standalone SVG document. */
export function renderSvg(scene: Scene): string {
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${scene.width}" height="${scene.height}" ` +
      `viewBox="0 0 ${scene.width} ${scene.height}" font-family="system-ui, sans-serif" font-size="12">`,
  );
  if (scene.background !== "transparent") {
    out.push(`<rect width="100%" height="100%" fill="${escapeXml(scene.background)}"/>`);
  }
  for (const p of scene.polygons) {
    const d = p.points.map((q) => pathData(q) + "Z").join("");
    out.push(`<path d="${d}" fill="${escapeXml(p.fill)}" fill-opacity="${r2(p.alpha)}" stroke="none"/>`);
  }
  for (const r of scene.rects) {
    out.push(
      `<rect x="${r2(r.x)}" y="${r2(r.y)}" width="${r2(r.w)}" height="${r2(r.h)}" fill="${escapeXml(r.fill)}"` +
        (r.alpha != null && r.alpha !== 1 ? ` fill-opacity="${r2(r.alpha)}"` : "") +
        (r.stroke ? ` stroke="${escapeXml(r.stroke)}"` : "") +
        "/>",
    );
  }
  for (const q of scene.quads) {
    if (q.count === 0) continue;
    const d: string[] = [];
    const c = q.coords;
    for (let k = 0; k < q.count * 8; k += 8) {
      d.push(`M${r2(c[k])} ${r2(c[k + 1])}L${r2(c[k + 2])} ${r2(c[k + 3])}L${r2(c[k + 4])} ${r2(c[k + 5])}L${r2(c[k + 6])} ${r2(c[k + 7])}Z`);
    }
    out.push(`<path d="${d.join("")}" fill="${escapeXml(q.fill)}" fill-opacity="${r2(q.alpha)}" stroke="none"/>`);
  }
  for (const p of scene.pictures) {
    out.push(
      `<image x="${r2(p.x)}" y="${r2(p.y)}" width="${r2(p.w)}" height="${r2(p.h)}" ` +
        `preserveAspectRatio="none" style="image-rendering:pixelated" href="${p.href()}"/>`,
    );
  }
  for (const l of scene.lines) {
    if (l.count === 0) continue;
    const d: string[] = [];
    const c = l.coords;
    for (let k = 0; k < l.count * 4; k += 4) {
      d.push(`M${r2(c[k])} ${r2(c[k + 1])}L${r2(c[k + 2])} ${r2(c[k + 3])}`);
    }
    out.push(
      `<path d="${d.join("")}" fill="none" stroke="${escapeXml(l.color)}" stroke-width="${r2(l.width)}" ` +
        `stroke-opacity="${r2(l.alpha)}" stroke-linecap="${l.cap ?? "round"}"${dashAttr(l.dash)}/>`,
    );
  }
  for (const l of scene.polylines) {
    out.push(
      `<path d="${l.points.map(pathData).join("")}" fill="none" stroke="${escapeXml(l.color)}" ` +
        `stroke-width="${r2(l.width)}" stroke-opacity="${r2(l.alpha)}" stroke-linecap="round" ` +
        `stroke-linejoin="round"${dashAttr(l.dash)}/>`,
    );
  }
  for (const dots of scene.dots) {
    const c = dots.xyr;
    const stroke = dots.stroke ? ` stroke="${escapeXml(dots.stroke)}" stroke-width="1.5"` : "";
    out.push(`<g fill="${escapeXml(dots.color)}" fill-opacity="${r2(dots.alpha)}"${stroke}>`);
    for (let k = 0; k < dots.count * 3; k += 3) {
      out.push(`<circle cx="${r2(c[k])}" cy="${r2(c[k + 1])}" r="${r2(c[k + 2])}"/>`);
    }
    out.push("</g>");
  }
  for (const t of scene.labels) {
    const rotate = t.rotate ? ` transform="rotate(${t.rotate} ${r2(t.x)} ${r2(t.y)})"` : "";
    const font = t.font ? ` style="font:${escapeXml(t.font)}"` : "";
    out.push(
      `<text x="${r2(t.x)}" y="${r2(t.y)}" fill="${escapeXml(t.color)}"${font} ` +
        `text-anchor="${ANCHOR[t.align ?? "left"]}" dominant-baseline="${BASELINE[t.baseline ?? "alphabetic"]}"${rotate}>` +
        `${escapeXml(t.text)}</text>`,
    );
  }
  out.push("</svg>");
  return out.join("\n");
}
