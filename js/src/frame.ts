// Exports that describe themselves: a view's drawing framed by its title, subtitle (checkpoint,
// pathway definition), legend and a closing note, as one scene, so a PNG or SVG saved from a view
// still says what it shows once it is pasted into a slide or a paper.
import type { Theme } from "./color";
import { emptyScene, place, SegmentBuffer, textWidth, type Scene } from "./scene";
import type { LegendItem } from "./view";

const PAD = 12;
const TITLE_FONT = "600 14px system-ui, -apple-system, 'Segoe UI', sans-serif";
const SUB_FONT = "12px system-ui, -apple-system, 'Segoe UI', sans-serif";

export interface FrameText {
  title: string;
  subtitle?: string;
  legend?: LegendItem[];
  note?: string;
}

/** Lay legend items out in rows no wider than `width`; returns their positions and the height. */
export function legendLayout(items: LegendItem[], width: number, font: string): { x: number; y: number; item: LegendItem }[] {
  const out: { x: number; y: number; item: LegendItem }[] = [];
  let x = 0;
  let y = 0;
  for (const item of items) {
    const w = 22 + textWidth(item.label, font) + 14;
    if (x > 0 && x + w > width) {
      x = 0;
      y += 18;
    }
    out.push({ x, y, item });
    x += w;
  }
  return out;
}

/** Draw legend items into `s` at (x0, y0) (the first row's vertical centre). */
export function drawLegend(s: Scene, items: LegendItem[], x0: number, y0: number, width: number, theme: Theme, font = SUB_FONT): number {
  const placed = legendLayout(items, width, font);
  for (const { x, y, item } of placed) {
    const cx = x0 + x;
    const cy = y0 + y;
    const kind = item.kind ?? "swatch";
    if (kind === "swatch") s.rects.push({ x: cx, y: cy - 5, w: 14, h: 10, fill: item.color });
    else {
      const b = new SegmentBuffer(1);
      b.push(cx, cy, cx + 16, cy);
      const dash = kind === "dash" ? [5, 3] : kind === "dot" ? [2, 2] : undefined;
      s.lines.push({ color: item.color, alpha: 1, width: 2.5, coords: b.coords, count: 1, dash, cap: "butt" });
    }
    s.labels.push({ x: cx + 22, y: cy, text: item.label, color: theme.foreground, baseline: "middle", font });
  }
  return placed.length ? placed[placed.length - 1].y + 18 : 0;
}

/** `body` under a header (title, subtitle, legend) and above a note, on the theme's background. */
export function framed(body: Scene, text: FrameText, theme: Theme): Scene {
  const width = Math.max(body.width, 360);
  const inner = width - 2 * PAD;
  const legend = text.legend ?? [];
  const legendHeight = legend.length ? legendLayout(legend, inner, SUB_FONT).at(-1)!.y + 18 : 0;
  let y = PAD;
  const titleY = y + 8;
  y += 20;
  const subY = y + 7;
  if (text.subtitle) y += 18;
  const legendY = y + 8;
  y += legendHeight + (legendHeight ? 6 : 0);
  const bodyY = y;
  y += body.height;
  const noteY = y + 10;
  if (text.note) y += 22;
  const s = emptyScene(width, y + PAD, theme.background, body.font);
  s.labels.push({ x: PAD, y: titleY, text: text.title, color: theme.foreground, baseline: "middle", font: TITLE_FONT });
  if (text.subtitle) s.labels.push({ x: PAD, y: subY, text: text.subtitle, color: theme.muted, baseline: "middle", font: SUB_FONT });
  if (legend.length) drawLegend(s, legend, PAD, legendY, inner, theme);
  place(s, { ...body, background: "transparent" }, 0, bodyY);
  if (text.note) s.labels.push({ x: PAD, y: noteY, text: text.note, color: theme.muted, baseline: "middle", font: SUB_FONT });
  return s;
}
