import { describe, expect, it } from "vitest";
import { emptyScene, escapeXml, renderSvg, SegmentBuffer } from "../src/scene";
import { bundleSegments, level, LEVELS, levelWidth, nodeDots, routeInto } from "../src/diagram_scene";
import { band } from "../src/scales";
import { boundaries, paint, readMatrix } from "../src/similarity_matrix";
import { lut } from "../src/color";

describe("scene", () => {
  it("grows segment buffers", () => {
    const b = new SegmentBuffer(1);
    for (let k = 0; k < 10; k++) b.push(k, k, k + 1, k + 1);
    expect(b.count).toBe(10);
    expect(Array.from(b.coords.subarray(36, 40))).toEqual([9, 9, 10, 10]);
  });

  it("renders the same primitives to SVG", () => {
    const s = emptyScene(100, 50, "#fff", "12px sans");
    const b = new SegmentBuffer();
    b.push(0, 0, 10, 10);
    b.push(5, 5, 20, 0);
    s.lines.push({ color: "#f00", alpha: 0.5, width: 2, coords: b.coords, count: b.count });
    s.dots.push({ color: "#00f", alpha: 1, xyr: new Float32Array([1, 2, 3]), count: 1 });
    s.labels.push({ x: 3, y: 4, text: "a<b & c", color: "#000" });
    const svg = renderSvg(s);
    expect(svg).toMatch(/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg" width="100" height="50"/);
    expect(svg).toContain('<path d="M0 0L10 10M5 5L20 0"');
    expect(svg).toContain('<circle cx="1" cy="2" r="3"/>');
    expect(svg).toContain(">a&lt;b &amp; c</text>");
    expect(svg.trim().endsWith("</svg>")).toBe(true);
    expect(escapeXml(`"'`)).toBe("&quot;&#39;");
  });
});

describe("pathway diagram layout", () => {
  it("quantises edge widths by relative weight", () => {
    expect(level(0, 1)).toBe(-1);
    expect(level(1e-4, 1)).toBe(-1);
    expect(level(1, 1)).toBe(7);
    expect(level(0.25, 1)).toBe(4);
    expect(level(2, 1)).toBe(7);
    expect(levelWidth(7, 8)).toBeGreaterThan(levelWidth(0, 8));
  });

  it("turns bundle flows into segments between layer columns and expert rows", () => {
    const x = band(3, [0, 300]); // layer centres 50, 150, 250
    const y = band(2, [0, 100]); // expert centres 25, 75
    // 2 groups x 2 gaps x 2x2 experts; group 1, gap 1, expert 1 -> 0 carries the largest flow.
    const flow = new Float32Array(16);
    flow[(0 * 2 + 0) * 4 + 0 * 2 + 1] = 0.25; // group 0, gap 0, 0 -> 1
    flow[(1 * 2 + 1) * 4 + 1 * 2 + 0] = 1.0; // group 1, gap 1, 1 -> 0
    flow[(1 * 2 + 0) * 4 + 0] = 1e-5; // too faint to draw
    const out = bundleSegments(flow, 2, 2, x, y);
    const drawn = out.flatMap((b, k) => (b.count ? [[k, ...Array.from(b.coords.subarray(0, 4))]] : []));
    expect(drawn).toEqual([
      [0 * LEVELS + level(0.25, 1), 50, 25, 150, 75],
      [1 * LEVELS + LEVELS - 1, 150, 75, 250, 25],
    ]);
  });

  it("buckets every bundle edge at the width level of its flow", () => {
    // A seeded mix of zero, faint and strong flows over 3 groups x 2 gaps x 5x5 experts.
    let seed = 7;
    const rand = () => ((seed = (seed * 16807) % 2147483647) - 1) / 2147483646;
    const x = band(3, [0, 300]);
    const y = band(5, [0, 100]);
    const flow = Float32Array.from({ length: 3 * 2 * 25 }, () => (rand() < 0.3 ? 0 : rand() ** 4));
    const max = Math.max(...flow);
    const out = bundleSegments(flow, 3, 2, x, y);
    const expected = new Map<string, number>();
    flow.forEach((v, i) => {
      const [g, l, from, to] = [Math.floor(i / 50), Math.floor(i / 25) % 2, Math.floor(i / 5) % 5, i % 5];
      const lv = level(v, max);
      if (lv >= 0) expected.set(`${g} ${x(l)} ${y(from)} ${x(l + 1)} ${y(to)}`, lv);
    });
    const got = new Map<string, number>();
    out.forEach((b, k) => {
      for (let i = 0; i < b.count; i++) {
        const c = Array.from(b.coords.subarray(i * 4, i * 4 + 4), (v) => Math.round(v * 1000) / 1000);
        got.set(`${Math.floor(k / LEVELS)} ${c.join(" ")}`, k % LEVELS);
      }
    });
    expect(expected.size).toBeGreaterThan(20);
    expect(got).toEqual(expected);
  });

  it("sizes node dots by mass and draws a token route through its experts", () => {
    const x = band(2, [0, 200]);
    const y = band(2, [0, 100]);
    const s = emptyScene(200, 100, "#fff", "12px sans");
    nodeDots(s, new Float32Array([1, 0, 0.25, 0.25]), x, y, "#888");
    expect(s.dots[0].count).toBe(3);
    const r = Array.from(s.dots[0].xyr.subarray(0, 9));
    expect(r[2]).toBeGreaterThan(r[5]); // mass 1 bigger than 0.25
    expect(r.slice(3, 5)).toEqual([150, 25]);
    const t = emptyScene(200, 100, "#fff", "12px sans");
    routeInto(t, [
      { layer: 0, expert: 1, weight: 0.9 },
      { layer: 1, expert: 0, weight: 0.6 },
      { layer: 1, expert: 1, weight: 0.3 },
    ], x, y, "#f00", "#fff");
    const segs = t.lines.flatMap((l) => Array.from({ length: l.count }, (_, k) => Array.from(l.coords.subarray(k * 4, k * 4 + 4))));
    expect(segs).toHaveLength(2);
    expect(segs).toContainEqual([50, 75, 150, 25]);
    expect(segs).toContainEqual([50, 75, 150, 75]);
    expect(t.dots[0].count).toBe(3);
  });
});

describe("similarity matrix", () => {
  it("paints every cell through the LUT by value", () => {
    const values = new Float32Array([0, 4, 8, 4, 0, 6, 8, 6, 0]);
    const m = readMatrix(new Uint8Array(values.buffer), "float32", 3);
    // The diagonal is left out of the colour range.
    expect([m.lo, m.hi]).toEqual([4, 8]);
    const table = lut(["#000000", "#ffffff"], 5);
    const px = paint(m, table);
    // (v - 4) / 4 * 5 -> 0, 2.5, 5 -> entries 0, 2, 4 (clamped); the zero diagonal clamps to 0.
    expect(Array.from(px)).toEqual([0, 0, 4, 0, 0, 2, 4, 2, 0].map((i) => table[i]));
    expect(() => readMatrix(new Uint8Array(values.buffer), "float32", 2)).toThrow(/expected 2×2/);
  });

  it("finds group boundaries", () => {
    expect(boundaries(["a", "a", "b", "b", "b", "c"])).toEqual([2, 5]);
    expect(boundaries([])).toEqual([]);
  });
});
