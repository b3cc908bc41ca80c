// Pieces every grokviz view shares: layered canvases sized for the device pixel ratio, the frame
// (title, legend, toolbar with PNG/SVG export, stage, tooltip), width that follows the container,
// theme tracking, and a cleanup list so render() can run many times for one model and leave
// nothing behind when a view goes.
import type { AnyModel } from "@anywidget/types";
import { resolveTheme, type Theme } from "./color";
import type { BaseTraits } from "./models";
import { palette, type Palette } from "./palette";
import { renderCanvas, renderSvg, type Scene } from "./scene";

type Listener = () => void;

export class Disposer {
  private fns: (() => void)[] = [];
  add(fn: () => void): void {
    this.fns.push(fn);
  }
  listen<K extends keyof HTMLElementEventMap>(
    target: HTMLElement | Window,
    type: K,
    fn: (ev: HTMLElementEventMap[K]) => void,
    options?: AddEventListenerOptions,
  ): void {
    target.addEventListener(type, fn as EventListener, options);
    this.add(() => target.removeEventListener(type, fn as EventListener, options));
  }
  /** `model.on("change:<name>")` for each trait name, undone on dispose. */
  on<T extends BaseTraits>(model: AnyModel<T>, names: (keyof T & string)[], fn: Listener): void {
    for (const name of names) {
      model.on(`change:${name}`, fn);
      this.add(() => model.off(`change:${name}`, fn));
    }
  }
  dispose(): void {
    for (const fn of this.fns.splice(0).reverse()) fn();
  }
}

/** A canvas whose backing store follows devicePixelRatio; drawing uses CSS pixels. */
export class Layer {
  canvas: HTMLCanvasElement;
  ctx: CanvasRenderingContext2D;
  width = 0;
  height = 0;
  dpr = 1;
  constructor(testid: string, overlay = false) {
    this.canvas = document.createElement("canvas");
    this.canvas.dataset.testid = testid;
    this.canvas.className = overlay ? "grokviz-overlay" : "grokviz-base";
    this.ctx = this.canvas.getContext("2d") as CanvasRenderingContext2D;
  }
  resize(width: number, height: number): void {
    const dpr = pixelRatio();
    if (width === this.width && height === this.height && dpr === this.dpr) return;
    this.width = width;
    this.height = height;
    this.dpr = dpr;
    this.canvas.width = Math.round(width * dpr);
    this.canvas.height = Math.round(height * dpr);
    this.canvas.style.width = `${width}px`;
    this.canvas.style.height = `${height}px`;
    this.ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  }
  clear(): void {
    this.ctx.clearRect(0, 0, this.width, this.height);
  }
}

export function pixelRatio(): number {
  return typeof devicePixelRatio === "number" && devicePixelRatio > 0 ? devicePixelRatio : 1;
}

export function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  text?: string,
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  if (text != null) node.textContent = text;
  return node;
}

/**
 * Make the browser rasterize what was drawn on the layers so far, now: canvas drawing is recorded
 * and replayed later, and reading one pixel back replays it. Used once per view, to time the first
 * draw honestly (repeated readbacks can make Chromium move a canvas off the GPU).
 */
export function rasterize(...layers: Layer[]): void {
  for (const layer of layers) {
    if (layer.canvas.width > 0 && layer.canvas.height > 0) layer.ctx.getImageData(0, 0, 1, 1);
  }
}

export function download(filename: string, href: string): void {
  const a = document.createElement("a");
  a.href = href;
  a.download = filename;
  a.style.display = "none";
  document.body.appendChild(a);
  a.click();
  a.remove();
}

/** A scene as a PNG data URL, drawn at `scale` device pixels per CSS pixel. */
export function toPng(scene: Scene, scale = 2): string {
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(scene.width * scale);
  canvas.height = Math.round(scene.height * scale);
  const ctx = canvas.getContext("2d") as CanvasRenderingContext2D;
  ctx.setTransform(scale, 0, 0, scale, 0, 0);
  renderCanvas(ctx, scene);
  return canvas.toDataURL("image/png");
}

export function toSvgUrl(scene: Scene): string {
  return `data:image/svg+xml;charset=utf-8,${encodeURIComponent(renderSvg(scene))}`;
}

export interface LegendItem {
  label: string;
  color: string;
  /** How the item is drawn: a filled swatch, a solid, dashed or dotted line. */
  kind?: "swatch" | "line" | "dash" | "dot";
  /** Group name, for hover highlighting (absent for keys such as "test accuracy"). */
  group?: string;
}

export interface Shell {
  root: HTMLDivElement;
  header: HTMLDivElement;
  title: HTMLDivElement;
  subtitle: HTMLDivElement;
  toolbar: HTMLDivElement;
  legend: HTMLDivElement;
  controls: HTMLSpanElement;
  stage: HTMLDivElement;
  tooltip: HTMLDivElement;
  theme: Theme;
  palette: Palette;
  /** The width available to the drawing, in CSS pixels (follows the container). */
  width: number;
  setLegend(items: LegendItem[]): void;
  setTitle(title: string, subtitle?: string): void;
}

/**
 * The common frame: root (data-testid), header (title, subtitle), toolbar (legend, controls, PNG
 * and SVG buttons), a stage for canvases and a tooltip. `onTheme` runs whenever the resolved theme
 * or the palette changes; `onResize` when the container's width changes.
 */
export function shell<T extends BaseTraits>(
  el: HTMLElement,
  model: AnyModel<T>,
  disposer: Disposer,
  opts: {
    testid: string;
    onExport: (kind: "png" | "svg") => void;
    onTheme: () => void;
    onResize?: () => void;
    onLegendHover?: (group: string | null) => void;
    onLegendClick?: (group: string) => void;
  },
): Shell {
  const root = element("div", { class: "grokviz-root", "data-testid": opts.testid });
  const header = element("div", { class: "grokviz-header" });
  const title = element("div", { class: "grokviz-title", "data-testid": "view-title" });
  const subtitle = element("div", { class: "grokviz-subtitle", "data-testid": "view-subtitle" });
  header.append(title, subtitle);
  const toolbar = element("div", { class: "grokviz-toolbar" });
  const legend = element("div", { class: "grokviz-legend", "data-testid": "group-legend" });
  const spacer = element("span", { class: "grokviz-spacer" });
  const controls = element("span", { class: "grokviz-controls" });
  const tooltip = element("div", { class: "grokviz-tooltip", "data-testid": `${opts.testid}-tooltip` });
  tooltip.style.display = "none";
  const png = element("button", { class: "grokviz-button", "data-testid": "export-png", title: "Save as PNG (with title and legend)" }, "PNG");
  const svg = element("button", { class: "grokviz-button", "data-testid": "export-svg", title: "Save as SVG (with title and legend)" }, "SVG");
  toolbar.append(legend, spacer, controls, png, svg);
  const stage = element("div", { class: "grokviz-stage" });
  stage.append(tooltip);
  root.append(header, toolbar, stage);
  el.replaceChildren(root);
  disposer.add(() => root.remove());
  disposer.listen(png, "click", () => opts.onExport("png"));
  disposer.listen(svg, "click", () => opts.onExport("svg"));

  const out: Shell = {
    root,
    header,
    title,
    subtitle,
    toolbar,
    legend,
    controls,
    stage,
    tooltip,
    theme: resolveTheme("light"),
    palette: palette(null, resolveTheme("light")),
    width: 0,
    setLegend(items) {
      legend.replaceChildren(
        ...items.map((item) => {
          const entry = element("span", { class: "grokviz-legend-item" });
          if (item.group != null) entry.dataset.group = item.group;
          const mark = element("span", { class: `grokviz-swatch grokviz-swatch-${item.kind ?? "swatch"}` });
          mark.style.setProperty("--swatch", item.color);
          entry.append(mark, document.createTextNode(item.label));
          return entry;
        }),
      );
    },
    setTitle(text, sub) {
      title.textContent = text;
      subtitle.textContent = sub ?? "";
      subtitle.style.display = sub ? "" : "none";
    },
  };
  if (opts.onLegendHover) {
    const hover = opts.onLegendHover;
    disposer.listen(legend, "pointerover", (ev) => {
      const item = (ev.target as HTMLElement | null)?.closest("[data-group]") as HTMLElement | null;
      hover(item?.dataset.group ?? null);
    });
    disposer.listen(legend, "pointerleave", () => hover(null));
  }
  if (opts.onLegendClick) {
    const click = opts.onLegendClick;
    disposer.listen(legend, "click", (ev) => {
      const item = (ev.target as HTMLElement | null)?.closest("[data-group]") as HTMLElement | null;
      if (item?.dataset.group != null) click(item.dataset.group);
    });
  }
  const applyTheme = () => {
    out.theme = resolveTheme(String(model.get("theme") ?? "auto"), el);
    out.palette = palette(model.get("_palette"), out.theme);
    root.classList.toggle("grokviz-dark", out.theme.dark);
    root.style.setProperty("--grokviz-bg", out.theme.background);
    root.style.setProperty("--grokviz-fg", out.theme.foreground);
    root.style.setProperty("--grokviz-muted", out.theme.muted);
    root.style.setProperty("--grokviz-grid", out.theme.grid);
    root.style.setProperty("--grokviz-accent", out.theme.accent);
  };
  applyTheme();
  const rethemed = () => {
    applyTheme();
    opts.onTheme();
  };
  disposer.on(model, ["theme", "_palette"], rethemed);
  if (typeof MutationObserver !== "undefined" && document.body) {
    // JupyterLab flips body[data-jp-theme-light]; marimo and VS Code toggle classes.
    const observer = new MutationObserver(() => {
      if (model.get("theme") === "auto") rethemed();
    });
    observer.observe(document.body, { attributes: true, attributeFilter: ["data-jp-theme-light", "class"] });
    observer.observe(document.documentElement, { attributes: true, attributeFilter: ["class", "data-theme"] });
    disposer.add(() => observer.disconnect());
  }
  // Width follows the container: measured now, and again whenever it changes (a file browser
  // opened, a window resized), redrawn at most once per frame.
  const measure = () => {
    const w = Math.floor(root.clientWidth - horizontalPadding(root));
    return w > 0 ? w : 0;
  };
  out.width = measure();
  if (typeof ResizeObserver !== "undefined") {
    let frame = 0;
    const observer = new ResizeObserver(() => {
      cancelAnimationFrame(frame);
      frame = requestAnimationFrame(() => {
        const w = measure();
        if (w > 0 && Math.abs(w - out.width) >= 1) {
          out.width = w;
          opts.onResize?.();
        }
      });
    });
    observer.observe(root);
    disposer.add(() => {
      cancelAnimationFrame(frame);
      observer.disconnect();
    });
  }
  return out;
}

function horizontalPadding(node: HTMLElement): number {
  if (typeof getComputedStyle === "undefined") return 0;
  const style = getComputedStyle(node);
  return (parseFloat(style.paddingLeft) || 0) + (parseFloat(style.paddingRight) || 0);
}

/** The drawing width: the trait when set, else the container's (at least `min`), else `fallback`. */
export function fitWidth(trait: number | null | undefined, available: number, fallback: number, min = 320): number {
  if (trait != null && trait > 0) return trait;
  if (available > 0) return Math.max(min, available);
  return fallback;
}

export function showTooltip(tip: HTMLDivElement, x: number, y: number, lines: string[]): void {
  tip.replaceChildren(...lines.map((line) => element("div", {}, line)));
  tip.style.display = "block";
  // Keep the tooltip inside the stage: flip it to the left of the pointer near the right edge.
  const stage = tip.parentElement;
  const room = stage ? stage.clientWidth : Infinity;
  const w = tip.offsetWidth || 160;
  tip.style.left = `${x + 12 + w > room ? Math.max(0, x - 12 - w) : x + 12}px`;
  tip.style.top = `${y + 12}px`;
}

export function hideTooltip(tip: HTMLDivElement): void {
  tip.style.display = "none";
}

/**
 * Run `fn` once after the current task however many times the wrapper is called in it: a grouped
 * update from Python (`hold_sync`) fires one change event per trait, but needs one reload.
 */
export function coalesce(fn: () => void): () => void {
  let queued = false;
  return () => {
    if (queued) return;
    queued = true;
    queueMicrotask(() => {
      queued = false;
      fn();
    });
  };
}

export function now(): number {
  return typeof performance !== "undefined" ? performance.now() : Date.now();
}

/** Record a timing on the view's root and host element (read by the tests and the benchmark). */
export function stamp(nodes: HTMLElement[], name: "drawMs" | "hoverMs" | "renderMs" | "rasterMs", ms: number): void {
  for (const node of nodes) node.dataset[name] = ms.toFixed(2);
}
