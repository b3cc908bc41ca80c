// Colours: categorical palette for groups, a 256-entry sequential LUT for the distance heatmap,
// and the light/dark theme that follows JupyterLab.

/** Ten distinguishable categorical colours (Tableau 10); groups beyond ten repeat them. */
export const CATEGORICAL = [
  "#4e79a7",
  "#f28e2b",
  "#e15759",
  "#76b7b2",
  "#59a14f",
  "#edc948",
  "#b07aa1",
  "#ff9da7",
  "#9c755f",
  "#bab0ac",
];

export function categorical(index: number): string {
  const n = CATEGORICAL.length;
  return CATEGORICAL[((index % n) + n) % n];
}

/** Parse "#rrggbb" into [r, g, b]. */
export function hexToRgb(hex: string): [number, number, number] {
  const h = hex.replace("#", "");
  const full = h.length === 3 ? h.split("").map((c) => c + c).join("") : h;
  const v = parseInt(full, 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

// Viridis sampled at nine evenly spaced stops; the LUT interpolates linearly between them.
const VIRIDIS_STOPS = [
  "#440154",
  "#472d7b",
  "#3b528b",
  "#2c728e",
  "#21918c",
  "#28ae80",
  "#5ec962",
  "#addc30",
  "#fde725",
];

/**
 * A colour lookup table: `size` RGBA entries packed as Uint32 in the platform's byte order, so an
 * ImageData's Uint32Array view can be filled with one store per pixel.
 */
export function lut(stops: string[] = VIRIDIS_STOPS, size = 256, reverse = false): Uint32Array {
  const rgb = stops.map(hexToRgb);
  const out = new Uint32Array(size);
  const little = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
  for (let i = 0; i < size; i++) {
    const t = (reverse ? size - 1 - i : i) / Math.max(1, size - 1);
    const x = t * (rgb.length - 1);
    const j = Math.min(rgb.length - 2, Math.floor(x));
    const f = x - j;
    const [r, g, b] = [0, 1, 2].map((c) => Math.round(rgb[j][c] * (1 - f) + rgb[j + 1][c] * f));
    out[i] = little
      ? ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0
      : ((r << 24) | (g << 16) | (b << 8) | 255) >>> 0;
  }
  return out;
}

/** Unpack one LUT entry back into [r, g, b, a] (for tests, legends and SVG export). */
export function unpack(value: number): [number, number, number, number] {
  const bytes = new Uint8Array(new Uint32Array([value]).buffer);
  return [bytes[0], bytes[1], bytes[2], bytes[3]];
}

/** Index into a LUT of `size` entries for value v on [lo, hi] (clamped). */
export function lutIndex(v: number, lo: number, hi: number, size = 256): number {
  if (!(hi > lo)) return 0;
  const t = (v - lo) / (hi - lo);
  const i = Math.floor(t * size);
  return i < 0 ? 0 : i >= size ? size - 1 : i;
}

export interface Theme {
  dark: boolean;
  background: string;
  foreground: string;
  muted: string;
  grid: string;
  accent: string;
  font: string;
}

const LIGHT: Theme = {
  dark: false,
  background: "#ffffff",
  foreground: "#212121",
  muted: "#757575",
  grid: "#e0e0e0",
  accent: "#d62728",
  font: "12px system-ui, -apple-system, 'Segoe UI', sans-serif",
};

const DARK: Theme = {
  dark: true,
  background: "#111111",
  foreground: "#e6e6e6",
  muted: "#a0a0a0",
  grid: "#333333",
  accent: "#ff6b6b",
  font: LIGHT.font,
};

/** Relative luminance of a CSS colour "#rgb"/"#rrggbb"/"rgb(r, g, b)"; NaN when unparseable. */
export function luminance(css: string): number {
  const s = css.trim();
  let rgb: number[] | null = null;
  if (/^#[0-9a-f]{3}([0-9a-f]{3})?$/i.test(s)) rgb = hexToRgb(s);
  const m = s.match(/^rgba?\(\s*([\d.]+)[\s,]+([\d.]+)[\s,]+([\d.]+)/i);
  if (m) rgb = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (rgb == null) return NaN;
  return (0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]) / 255;
}

/**
 * Resolve the `theme` trait ("auto" | "light" | "dark") against the page. "auto" follows
 * JupyterLab's body[data-jp-theme-light], then the --jp-layout-color0 variable (VS Code and Colab set
 * their own), then the OS preference.
 */
export function resolveTheme(setting: string, el?: Element): Theme {
  let dark: boolean;
  if (setting === "dark") dark = true;
  else if (setting === "light") dark = false;
  else dark = detectDark(el);
  const base = dark ? DARK : LIGHT;
  if (setting !== "auto" || typeof getComputedStyle === "undefined" || el == null) return base;
  // Under "auto" take the host's own colours where it publishes them.
  const style = getComputedStyle(el);
  const pick = (name: string, fallback: string) => style.getPropertyValue(name).trim() || fallback;
  return {
    ...base,
    background: pick("--jp-layout-color0", base.background),
    foreground: pick("--jp-ui-font-color0", base.foreground),
    muted: pick("--jp-ui-font-color2", base.muted),
    grid: pick("--jp-border-color2", base.grid),
  };
}

function detectDark(el?: Element): boolean {
  if (typeof document === "undefined") return false;
  const flag = document.body?.getAttribute("data-jp-theme-light");
  if (flag === "true") return false;
  if (flag === "false") return true;
  if (el != null && typeof getComputedStyle !== "undefined") {
    const bg = getComputedStyle(el).getPropertyValue("--jp-layout-color0");
    const l = luminance(bg);
    if (!Number.isNaN(l)) return l < 0.5;
  }
  if (document.body?.classList.contains("vscode-dark")) return true;
  return typeof matchMedia !== "undefined" && matchMedia("(prefers-color-scheme: dark)").matches;
}
