import { describe, expect, it } from "vitest";
import { band, linear, segmentDistance2, ticks } from "../src/scales";

describe("scales", () => {
  it("maps and inverts linearly", () => {
    const s = linear([0, 10], [100, 200]);
    expect(s(0)).toBe(100);
    expect(s(2.5)).toBe(125);
    expect(s.invert(150)).toBe(5);
    expect(linear([3, 3], [0, 10])(3)).toBe(5);
  });

  it("centres bands and finds the band under a pixel", () => {
    const b = band(4, [0, 100]);
    expect([0, 1, 2, 3].map(b)).toEqual([12.5, 37.5, 62.5, 87.5]);
    expect(b.index(0)).toBe(0);
    expect(b.index(99.9)).toBe(3);
    expect(b.index(100)).toBe(-1);
    expect(b.index(-1)).toBe(-1);
  });

  it("makes round ticks", () => {
    expect(ticks(0, 10, 5)).toEqual([0, 2, 4, 6, 8, 10]);
    expect(ticks(480, 690, 4)).toEqual([500, 550, 600, 650]);
  });

  it("measures point-to-segment distance", () => {
    expect(segmentDistance2(5, 3, 0, 0, 10, 0)).toEqual([9, 0.5]);
    expect(segmentDistance2(-3, 4, 0, 0, 10, 0)).toEqual([25, 0]);
  });
});
