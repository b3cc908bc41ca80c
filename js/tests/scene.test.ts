import { describe, expect, it } from "vitest";
import { emptyScene, escapeXml, renderSvg, SegmentBuffer } from "../src/scene";
import { expertNodes, flowSegments, level, levelShare, LEVELS, levelWidth, routeInto, shareWidth } from "../src/diagram_scene";
import { band } from "../src/scales";
import { blockMeans, blocks, boundaries, cellAt, paint, paintWindow, pixelOf, readMatrix } from "../src/matrix_data";
import { lut, resolveTheme } from "../src/color";
import { framed, legendLayout } from "../src/frame";
import { place } from "../src/scene";

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
    expect(level(1, 1)).toBe(LEVELS - 1);
    expect(level(0.25, 1)).toBe(LEVELS / 2);
    expect(level(2, 1)).toBe(LEVELS - 1);
    expect(levelWidth(7, 8)).toBeGreaterThan(levelWidth(0, 8));
  });

  it("turns route shares into segments between layer columns and expert rows", () => {
    const x = band(3, [0, 300]); // layer centres 50, 150, 250
    const y = band(2, [0, 100]); // expert centres 25, 75
    // 2 groups x 2 gaps x 2x2 experts; group 1, gap 1, expert 1 -> 0 carries every sample.
    const flow = new Float32Array(16);
    flow[(0 * 2 + 0) * 4 + 0 * 2 + 1] = 0.25; // group 0, gap 0, 0 -> 1
    flow[(1 * 2 + 1) * 4 + 1 * 2 + 0] = 1.0; // group 1, gap 1, 1 -> 0
    flow[(1 * 2 + 0) * 4 + 0] = 0.01; // under min_share: not drawn
    const out = flowSegments(flow, 2, 2, x, y, 0.02);
    const lane = Math.min(4, (y.step * 0.5) / 2);
    const drawn = out.flatMap((b, k) => (b.count ? [[k, ...Array.from(b.coords.subarray(0, 4))]] : []));
    // Level-major buffers (wide over thin), each group on its own lane around the centre line.
    expect(drawn).toEqual([
      [Math.floor(Math.sqrt(0.25) * LEVELS) * 2 + 0, 50, 25 - lane / 2, 150, 75 - lane / 2],
      [(LEVELS - 1) * 2 + 1, 150, 75 + lane / 2, 250, 25 + lane / 2],
    ]);
  });

  it("draws a bundle as wide as its share, whichever level it falls in", () => {
    // Level centres are even in the square root of the share, widths proportional to the share.
    for (let lv = 0; lv < LEVELS; lv++) {
      const share = levelShare(lv);
      expect(Math.floor(Math.sqrt(share) * LEVELS)).toBe(lv);
      expect(shareWidth(share, 20)).toBeCloseTo(Math.max(0.75, share * 20), 9);
    }
    expect(shareWidth(1, 20)).toBe(20);
    expect(shareWidth(1e-4, 20)).toBe(0.75); // still a visible hairline
  });

  it("buckets every route at the level of its share", () => {
    let seed = 7;
    const rand = () => ((seed = (seed * 16807) % 2147483647) - 1) / 2147483646;
    const x = band(3, [0, 300]);
    const y = band(5, [0, 100]);
    const flow = Float32Array.from({ length: 3 * 2 * 25 }, () => (rand() < 0.3 ? 0 : rand() ** 2));
    const out = flowSegments(flow, 3, 2, x, y, 0.05);
    const lane = Math.min(4, (y.step * 0.5) / 3);
    const expected = new Map<string, number>();
    flow.forEach((v, i) => {
      const [g, l, from, to] = [Math.floor(i / 50), Math.floor(i / 25) % 2, Math.floor(i / 5) % 5, i % 5];
      if (v >= 0.05) expected.set(`${g} ${l} ${from} ${to}`, Math.min(LEVELS - 1, Math.floor(Math.sqrt(v) * LEVELS)));
    });
    const got = new Map<string, number>();
    out.forEach((b, k) => {
      const [lv, g] = [Math.floor(k / 3), k % 3];
      const off = (g - 1) * lane;
      for (let i = 0; i < b.count; i++) {
        const [x0, y0, , y1] = Array.from(b.coords.subarray(i * 4, i * 4 + 4));
        const l = Math.round((x0 - x(0)) / x.step);
        const from = Math.round((y0 - off - y(0)) / y.step);
        const to = Math.round((y1 - off - y(0)) / y.step);
        got.set(`${g} ${l} ${from} ${to}`, lv);
      }
    });
    expect(expected.size).toBeGreaterThan(20);
    expect(got).toEqual(expected);
  });

  it("sizes expert dots by load and draws a token route through its experts", () => {
    const x = band(2, [0, 200]);
    const y = band(2, [0, 100]);
    const s = emptyScene(200, 100, "#fff", "12px sans");
    expertNodes(s, new Float32Array([1, 0, 0.25, 0.25]), x, y, resolveTheme("light"));
    const [idle, used] = s.dots;
    expect(idle.count).toBe(1); // the unused expert: a small ring
    expect(used.count).toBe(3);
    const r = Array.from(used.xyr.subarray(0, 9));
    expect(r[2]).toBeCloseTo(2 * r[5], 6); // area proportional to load: load 1 vs 0.25
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

describe("exports", () => {
  it("frame a view with its title, subtitle and legend above it", () => {
    const body = emptyScene(400, 100, "#fff", "12px sans");
    body.rects.push({ x: 10, y: 10, w: 5, h: 5, fill: "#123456" });
    const legend = [
      { label: "add", color: "#0072B2" },
      { label: "random (control)", color: "#8C8C8C", kind: "dash" as const },
    ];
    const s = framed(body, { title: "Pathways at step-5", subtitle: "pathways: top-2", legend }, resolveTheme("light"));
    const texts = s.labels.map((l) => l.text);
    expect(texts).toEqual(expect.arrayContaining(["Pathways at step-5", "pathways: top-2", "add", "random (control)"]));
    // The body is moved below the header, unchanged.
    const moved = s.rects.find((r) => r.fill === "#123456")!;
    expect(moved.x).toBe(10);
    expect(moved.y).toBeGreaterThan(40);
    expect(s.height).toBeGreaterThan(body.height + 40);
    // A control's legend key is a dashed line, a group's a swatch.
    expect(s.lines.some((l) => l.dash && l.color === "#8C8C8C")).toBe(true);
    expect(s.rects.some((r) => r.fill === "#0072B2")).toBe(true);
    expect(renderSvg(s)).toContain("random (control)");
  });

  it("wraps legend rows at the width and places scenes by an offset", () => {
    const items = Array.from({ length: 12 }, (_, i) => ({ label: `group-${i}`, color: "#000" }));
    const placed = legendLayout(items, 200, "12px sans");
    expect(Math.max(...placed.map((p) => p.y))).toBeGreaterThan(0);
    expect(placed.every((p) => p.x < 200)).toBe(true);
    const a = emptyScene(10, 10, "transparent", "12px sans");
    a.dots.push({ color: "#f00", alpha: 1, xyr: new Float32Array([1, 2, 3]), count: 1 });
    const b = emptyScene(100, 100, "#fff", "12px sans");
    place(b, a, 5, 7);
    expect(Array.from(b.dots[0].xyr)).toEqual([6, 9, 3]);
  });
});

describe("similarity matrix", () => {
  it("paints every cell through the LUT by value", () => {
    const values = new Float32Array([0, 4, 8, 4, 0, 6, 8, 6, 0]);
    const m = readMatrix(values, 3, null);
    // The diagonal is left out of the colour range.
    expect([m.lo, m.hi]).toEqual([4, 8]);
    const table = lut(["#000000", "#ffffff"], 5);
    const px = paint(m, table);
    // (v - 4) / 4 * 5 -> 0, 2.5, 5 -> entries 0, 2, 4 (clamped); the zero diagonal clamps to 0.
    expect(Array.from(px)).toEqual([0, 0, 4, 0, 0, 2, 4, 2, 0].map((i) => table[i]));
    expect(() => readMatrix(values, 2, null)).toThrow(/expected 2×2/);
    // A fixed range (the same at every checkpoint) is used as given.
    const fixed = readMatrix(values, 3, [0, 10]);
    expect([fixed.lo, fixed.hi]).toEqual([0, 10]);
  });

  it("maps device pixels to cells the same way for painting and hit-testing", () => {
    // 7 cells over 10 device pixels (cells of 1.43 px) and 300 over 520 (0.58 px: several per pixel).
    for (const [n, D] of [
      [7, 10],
      [300, 520],
      [2000, 1040],
    ]) {
      const seen = new Set<number>();
      for (let d = 0; d < D; d++) {
        const i = cellAt(d, 0, n, D);
        expect(i).toBeGreaterThanOrEqual(0);
        expect(i).toBeLessThan(n);
        if (d > 0) expect(i).toBeGreaterThanOrEqual(cellAt(d - 1, 0, n, D)); // monotone
        seen.add(i);
        // A cell's first pixel maps back to that cell.
        expect(cellAt(pixelOf(i, 0, n, D), 0, n, D)).toBe(i);
        // Fractional pointer positions inside a device pixel hit that pixel's cell.
        expect(cellAt(d + 0.99, 0, n, D)).toBe(i);
      }
      if (n <= D) expect(seen.size).toBe(n); // every cell gets at least one pixel
    }
    expect(cellAt(-0.5, 0, 7, 10)).toBe(-1);
    expect(cellAt(10, 0, 7, 10)).toBe(-1);
    expect(cellAt(3, 2, 4, 4)).toBe(3); // a zoomed window [2, 4)
  });

  it("paints each device pixel with the colour of the cell under it", () => {
    const n = 7;
    const values = Float32Array.from({ length: n * n }, (_, k) => (k % n === Math.floor(k / n) ? 0 : (k * 13) % 11));
    const m = readMatrix(values, n, [0, 10]);
    const table = lut(["#000000", "#ffffff"], 11);
    const D = 10;
    const out = new Uint32Array(D * D);
    paintWindow(m, table, { r0: 0, r1: n, c0: 0, c1: n }, D, out);
    const expected = paint(m, table);
    for (let y = 0; y < D; y++) {
      for (let x = 0; x < D; x++) {
        expect(out[y * D + x]).toBe(expected[cellAt(y, 0, n, D) * n + cellAt(x, 0, n, D)]);
      }
    }
  });

  it("summarises group blocks by their mean distance", () => {
    const groups = ["a", "a", "b", "b", "b"];
    const runs = blocks(groups);
    expect(runs).toEqual([
      { start: 0, end: 2, group: "a" },
      { start: 2, end: 5, group: "b" },
    ]);
    const n = 5;
    const values = Float32Array.from({ length: n * n }, (_, k) => {
      const [i, j] = [Math.floor(k / n), k % n];
      return i === j ? 0 : groups[i] === groups[j] ? 1 : 4;
    });
    const { mean, pairs } = blockMeans(readMatrix(values, n, null), runs);
    expect(Array.from(mean)).toEqual([1, 4, 4, 1]);
    expect(Array.from(pairs)).toEqual([2, 6, 6, 6]); // the diagonal is left out
  });

  it("finds group boundaries", () => {
    expect(boundaries(["a", "a", "b", "b", "b", "c"])).toEqual([2, 5]);
    expect(boundaries([])).toEqual([]);
  });
});
