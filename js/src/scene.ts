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
}

export function emptyScene(width: number, height: number, background: string, font: string): Scene {
  return { width, height, background, font, lines: [], dots: [], labels: [], rects: [], pictures: [] };
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
  for (const r of scene.rects) {
    ctx.globalAlpha = r.alpha ?? 1;
    ctx.fillStyle = r.fill;
    ctx.fillRect(r.x, r.y, r.w, r.h);
  }
  ctx.globalAlpha = 1;
  for (const p of scene.pictures) {
    if (p.source == null) continue;
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(p.source, p.x, p.y, p.w, p.h);
  }
  ctx.lineCap = "round";
  for (const l of scene.lines) {
    if (l.count === 0) continue;
    if (l.count >= HAIRLINE_BATCH) {
      strokeHairlines(ctx, l);
      continue;
    }
    ctx.globalAlpha = l.alpha;
    ctx.strokeStyle = l.color;
    ctx.lineWidth = l.width;
    ctx.beginPath();
    const c = l.coords;
    for (let k = 0; k < l.count * 4; k += 4) {
      ctx.moveTo(c[k], c[k + 1]);
      ctx.lineTo(c[k + 2], c[k + 3]);
    }
    ctx.stroke();
  }
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
  for (const r of scene.rects) {
    out.push(
      `<rect x="${r2(r.x)}" y="${r2(r.y)}" width="${r2(r.w)}" height="${r2(r.h)}" fill="${escapeXml(r.fill)}"` +
        (r.alpha != null && r.alpha !== 1 ? ` fill-opacity="${r2(r.alpha)}"` : "") +
        "/>",
    );
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
        `stroke-opacity="${r2(l.alpha)}" stroke-linecap="round"/>`,
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
    out.push(
      `<text x="${r2(t.x)}" y="${r2(t.y)}" fill="${escapeXml(t.color)}" ` +
        `text-anchor="${ANCHOR[t.align ?? "left"]}" dominant-baseline="${BASELINE[t.baseline ?? "alphabetic"]}"${rotate}>` +
        `${escapeXml(t.text)}</text>`,
    );
  }
  out.push("</svg>");
  return out.join("\n");
}
