import { afterEach, describe, expect, it } from "vitest";
import { deviceScale, HAIRLINE_BATCH, hairlinePath, hairlinePlan, strokeHairlines } from "../src/raster";
import { emptyScene, renderCanvas, SegmentBuffer, type Lines } from "../src/scene";

type Call = [string, ...unknown[]];

/** A 2D context that records what is drawn on it, with the state the renderer reads back. */
class FakeContext {
  calls: Call[] = [];
  canvas: { width: number; height: number };
  matrix = { a: 1, b: 0, c: 0, d: 1, e: 0, f: 0 };
  globalAlpha = 1;
  strokeStyle = "";
  fillStyle = "";
  lineWidth = 1;
  lineCap = "butt";
  imageSmoothingEnabled = true;
  font = "";
  textAlign = "left";
  textBaseline = "alphabetic";
  private stack: { alpha: number; matrix: FakeContext["matrix"] }[] = [];
  constructor(width: number, height: number) {
    this.canvas = { width, height };
  }
  getTransform() {
    return { ...this.matrix };
  }
  setTransform(a: number | typeof this.matrix, b = 0, c = 0, d = 1, e = 0, f = 0) {
    this.matrix = typeof a === "number" ? { a, b, c, d, e, f } : { ...a };
  }
  save() {
    this.stack.push({ alpha: this.globalAlpha, matrix: { ...this.matrix } });
  }
  restore() {
    const top = this.stack.pop();
    if (top != null) ({ alpha: this.globalAlpha, matrix: this.matrix } = top);
  }
  lineJoin = "miter";
  dash: number[] = [];
  setLineDash(dash: number[]) {
    this.dash = dash;
  }
  beginPath() {
    this.calls.push(["beginPath"]);
  }
  moveTo(x: number, y: number) {
    this.calls.push(["moveTo", x, y]);
  }
  lineTo(x: number, y: number) {
    this.calls.push(["lineTo", x, y]);
  }
  stroke() {
    this.calls.push(["stroke", this.strokeStyle, this.lineWidth, this.globalAlpha, this.lineCap]);
  }
  drawImage(source: unknown, x: number, y: number) {
    this.calls.push(["drawImage", source, x, y, this.globalAlpha, { ...this.matrix }]);
  }
  clearRect(...args: number[]) {
    this.calls.push(["clearRect", ...args]);
  }
  fillRect(...args: number[]) {
    this.calls.push(["fillRect", ...args]);
  }
  count(name: string): number {
    return this.calls.filter((c) => c[0] === name).length;
  }
}

const made: FakeContext[] = [];
const g = globalThis as { OffscreenCanvas?: unknown };

function installOffscreen(): void {
  g.OffscreenCanvas = class {
    ctx: FakeContext;
    constructor(width: number, height: number) {
      this.ctx = new FakeContext(width, height);
      made.push(this.ctx);
    }
    getContext() {
      return this.ctx;
    }
  };
}

afterEach(() => {
  delete g.OffscreenCanvas;
  made.length = 0;
});

function batch(n: number, width: number, alpha: number): Lines {
  const b = new SegmentBuffer();
  for (let k = 0; k < n; k++) b.push(0, k, 40, k + 20);
  return { color: "#123456", alpha, width, coords: b.coords, count: b.count };
}

describe("hairline plan", () => {
  it("covers a line's device width with one-pixel hairlines", () => {
    for (const [width, scale] of [
      [3, 1],
      [1.77, 1],
      [5.3, 2],
      [6, 1.5],
    ]) {
      const plan = hairlinePlan(width, scale);
      const device = width * scale;
      expect(plan.passes).toBe(Math.round(device));
      expect(plan.lineWidth * scale).toBeCloseTo(1);
      // Evenly spaced, centred, each pass owning an equal share of the width.
      const spacing = device / plan.passes / scale;
      plan.offsets.forEach((o, i) => expect(o).toBeCloseTo((i - (plan.passes - 1) / 2) * spacing));
      expect(plan.offsets.reduce((s, o) => s + o, 0)).toBeCloseTo(0);
      expect((plan.offsets[plan.passes - 1] - plan.offsets[0] + spacing) * scale).toBeCloseTo(device);
      expect(plan.alpha).toBe(1);
    }
  });

  it("draws lines thinner than a device pixel as one fainter hairline", () => {
    const plan = hairlinePlan(0.3, 2);
    expect(plan.passes).toBe(1);
    expect(plan.offsets).toEqual([0]);
    expect(plan.alpha).toBeCloseTo(0.6);
    expect(hairlinePlan(0, 1).alpha).toBe(0);
  });

  it("reads the device scale from the transform", () => {
    const ctx = new FakeContext(10, 10);
    ctx.setTransform(2, 0, 0, 2, 5, 5);
    expect(deviceScale(ctx as unknown as CanvasRenderingContext2D)).toBe(2);
    ctx.setTransform(0, 1.5, -1.5, 0, 0, 0); // rotated
    expect(deviceScale(ctx as unknown as CanvasRenderingContext2D)).toBeCloseTo(1.5);
  });

  it("offsets each segment along its normal", () => {
    const ctx = new FakeContext(10, 10);
    const coords = new Float32Array([0, 0, 30, 40, 5, 5, 5, 25]);
    hairlinePath(ctx, coords, 2, [-1, 2]);
    const moves = ctx.calls.filter((c) => c[0] === "moveTo").map((c) => [c[1], c[2]] as number[]);
    const ends = ctx.calls.filter((c) => c[0] === "lineTo").map((c) => [c[1], c[2]] as number[]);
    expect(moves).toHaveLength(4);
    const segs = [
      [0, 0, 30, 40],
      [5, 5, 5, 25],
    ];
    moves.forEach(([mx, my], i) => {
      const [x0, y0, x1, y1] = segs[i >> 1];
      const offset = [-1, 2][i % 2];
      // Signed distance of both ends from the original segment's line, and the same direction.
      const len = Math.hypot(x1 - x0, y1 - y0);
      const dist = (px: number, py: number) => ((x1 - x0) * (py - y0) - (y1 - y0) * (px - x0)) / len;
      expect(dist(mx, my)).toBeCloseTo(offset);
      expect(dist(ends[i][0], ends[i][1])).toBeCloseTo(offset);
      expect(ends[i][0] - mx).toBeCloseTo(x1 - x0);
      expect(ends[i][1] - my).toBeCloseTo(y1 - y0);
    });
  });
});

describe("layered hairline batches", () => {
  it("draws a large batch opaque on a scratch layer and composites it once at its alpha", () => {
    installOffscreen();
    const ctx = new FakeContext(200, 100);
    ctx.setTransform(2, 0, 0, 2, 0, 0);
    const lines = batch(HAIRLINE_BATCH + 10, 1.5, 0.35);
    strokeHairlines(ctx as unknown as CanvasRenderingContext2D, lines);
    expect(made).toHaveLength(1);
    const scratch = made[0];
    expect(scratch.canvas).toEqual({ width: 200, height: 100 });
    // 1.5 units at 2 device pixels per unit: 3 hairlines per segment, one stroke, opaque.
    expect(scratch.count("moveTo")).toBe(3 * lines.count);
    const strokes = scratch.calls.filter((c) => c[0] === "stroke");
    expect(strokes).toEqual([["stroke", "#123456", 0.5, 1, "butt"]]);
    expect(scratch.calls.findIndex((c) => c[0] === "clearRect")).toBeLessThan(
      scratch.calls.findIndex((c) => c[0] === "stroke"),
    );
    // The target gets the layer once, unscaled (device pixels), at the batch's alpha.
    const draws = ctx.calls.filter((c) => c[0] === "drawImage");
    expect(draws).toHaveLength(1);
    expect(draws[0].slice(2, 5)).toEqual([0, 0, 0.35]);
    expect(draws[0][5]).toMatchObject({ a: 1, d: 1, e: 0, f: 0 });
    expect(ctx.count("stroke")).toBe(0);
    expect(ctx.getTransform().a).toBe(2); // the caller's transform is restored

    // The scratch layer is reused for the next batch on the same canvas.
    strokeHairlines(ctx as unknown as CanvasRenderingContext2D, batch(HAIRLINE_BATCH, 0.25, 0.5));
    expect(made).toHaveLength(1);
    expect(scratch.calls.filter((c) => c[0] === "stroke")[1]).toEqual(["stroke", "#123456", 0.5, 0.5, "butt"]);
  });

  it("routes only large batches through the layer; small ones are stroked at their width", () => {
    installOffscreen();
    const ctx = new FakeContext(100, 100);
    const s = emptyScene(100, 100, "#fff", "12px sans");
    s.lines.push(batch(3, 2.5, 0.9), batch(HAIRLINE_BATCH, 2.5, 0.35));
    renderCanvas(ctx as unknown as CanvasRenderingContext2D, s);
    const strokes = ctx.calls.filter((c) => c[0] === "stroke");
    expect(strokes).toHaveLength(1);
    expect(strokes[0].slice(1, 4)).toEqual(["#123456", 2.5, 0.9]);
    expect(ctx.count("drawImage")).toBe(1);
    expect(made[0].count("moveTo")).toBe(Math.round(2.5) * HAIRLINE_BATCH);
  });

  it("draws nothing on a canvas without pixels", () => {
    installOffscreen();
    const ctx = new FakeContext(0, 100);
    strokeHairlines(ctx as unknown as CanvasRenderingContext2D, batch(HAIRLINE_BATCH, 2, 0.4));
    expect(ctx.calls).toEqual([]);
    expect(made).toHaveLength(0);
  });

  it("strokes directly where no scratch canvas can be made", () => {
    const ctx = new FakeContext(100, 100);
    strokeHairlines(ctx as unknown as CanvasRenderingContext2D, batch(HAIRLINE_BATCH, 2, 0.4));
    expect(ctx.calls.filter((c) => c[0] === "stroke")).toEqual([["stroke", "#123456", 2, 0.4, "butt"]]);
    expect(ctx.count("moveTo")).toBe(HAIRLINE_BATCH);
  });
});
