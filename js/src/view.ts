// Pieces every grokviz view shares: layered canvases sized for the device pixel ratio, a tooltip,
// export buttons (PNG via canvas.toDataURL, SVG from the same scene), theme tracking and a cleanup
// list so render() can run many times for one model and leave nothing behind when a view goes.
import { resolveTheme, type Theme } from "./color";
import { renderCanvas, renderSvg, type Scene } from "./scene";

export interface ModelLike {
  get(name: string): unknown;
  set(name: string, value: unknown): void;
  save_changes(): void;
  on(name: string, callback: () => void): void;
  off(name: string, callback: () => void): void;
}

export class Disposer {
  private fns: (() => void)[] = [];
  add(fn: () => void): void {
    this.fns.push(fn);
  }
  listen<K extends keyof HTMLElementEventMap>(
    target: HTMLElement,
    type: K,
    fn: (ev: HTMLElementEventMap[K]) => void,
  ): void {
    target.addEventListener(type, fn);
    this.add(() => target.removeEventListener(type, fn));
  }
  on(model: ModelLike, names: string[], fn: () => void): void {
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
  constructor(testid: string, overlay = false) {
    this.canvas = document.createElement("canvas");
    this.canvas.dataset.testid = testid;
    this.canvas.className = overlay ? "grokviz-overlay" : "grokviz-base";
    this.ctx = this.canvas.getContext("2d") as CanvasRenderingContext2D;
  }
  resize(width: number, height: number): void {
    const dpr = typeof devicePixelRatio === "number" && devicePixelRatio > 0 ? devicePixelRatio : 1;
    this.width = width;
    this.height = height;
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

export function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  text?: string,
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("data-")) node.setAttribute(k, v);
    else if (k === "class") node.className = v;
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

/** Draw the base scene plus the overlay's current pixels onto one canvas, as a PNG data URL. */
export function toPng(scene: Scene, overlay: Layer | null, scale = 2): string {
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(scene.width * scale);
  canvas.height = Math.round(scene.height * scale);
  const ctx = canvas.getContext("2d") as CanvasRenderingContext2D;
  ctx.setTransform(scale, 0, 0, scale, 0, 0);
  renderCanvas(ctx, scene);
  if (overlay != null) ctx.drawImage(overlay.canvas, 0, 0, scene.width, scene.height);
  return canvas.toDataURL("image/png");
}

export function toSvgUrl(scenes: Scene[]): string {
  const [first, ...rest] = scenes;
  let svg = renderSvg(first);
  for (const s of rest) {
    // Overlay scenes go on top: splice their content (without the outer svg) before the close tag.
    const inner = renderSvg({ ...s, background: "transparent" })
      .split("\n")
      .slice(1, -1)
      .join("\n");
    svg = svg.replace(/<\/svg>$/, `${inner}\n</svg>`);
  }
  return `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}`;
}

export interface Shell {
  root: HTMLDivElement;
  toolbar: HTMLDivElement;
  stage: HTMLDivElement;
  tooltip: HTMLDivElement;
  theme: Theme;
}

/**
 * The common frame: root (data-testid), toolbar with PNG/SVG export buttons, a stage for canvases
 * and a tooltip. `onTheme` runs whenever the resolved theme changes (trait or JupyterLab switch).
 */
export function shell(
  el: HTMLElement,
  model: ModelLike,
  disposer: Disposer,
  opts: { testid: string; onExport: (kind: "png" | "svg") => void; onTheme: () => void },
): Shell {
  const root = element("div", { class: "grokviz-root", "data-testid": opts.testid });
  const toolbar = element("div", { class: "grokviz-toolbar" });
  const stage = element("div", { class: "grokviz-stage" });
  const tooltip = element("div", { class: "grokviz-tooltip", "data-testid": `${opts.testid}-tooltip` });
  tooltip.style.display = "none";
  const spacer = element("span", { class: "grokviz-spacer" });
  const png = element("button", { class: "grokviz-button", "data-testid": "export-png", title: "Save as PNG" }, "PNG");
  const svg = element("button", { class: "grokviz-button", "data-testid": "export-svg", title: "Save as SVG" }, "SVG");
  toolbar.append(spacer, png, svg);
  stage.append(tooltip);
  root.append(toolbar, stage);
  el.replaceChildren(root);
  disposer.add(() => root.remove());
  disposer.listen(png, "click", () => opts.onExport("png"));
  disposer.listen(svg, "click", () => opts.onExport("svg"));

  const out: Shell = { root, toolbar, stage, tooltip, theme: resolveTheme("light") };
  const applyTheme = () => {
    out.theme = resolveTheme(String(model.get("theme") ?? "auto"), el);
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
  disposer.on(model, ["theme"], rethemed);
  if (typeof MutationObserver !== "undefined" && document.body) {
    // JupyterLab flips body[data-jp-theme-light] when the user switches themes.
    const observer = new MutationObserver(() => {
      if (model.get("theme") === "auto") rethemed();
    });
    observer.observe(document.body, { attributes: true, attributeFilter: ["data-jp-theme-light", "class"] });
    disposer.add(() => observer.disconnect());
  }
  return out;
}

export function showTooltip(tip: HTMLDivElement, x: number, y: number, lines: string[]): void {
  tip.replaceChildren(...lines.map((line) => element("div", {}, line)));
  tip.style.display = "block";
  tip.style.left = `${x + 12}px`;
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
