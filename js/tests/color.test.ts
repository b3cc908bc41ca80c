import { describe, expect, it } from "vitest";
import { categorical, hexToRgb, lut, lutIndex, luminance, resolveTheme, unpack } from "../src/color";

describe("colour LUT", () => {
  it("starts and ends at the first and last stop and is opaque", () => {
    const t = lut(["#000000", "#ff8000"], 256);
    expect(unpack(t[0])).toEqual([0, 0, 0, 255]);
    expect(unpack(t[255])).toEqual([255, 128, 0, 255]);
    const [r, g, b] = unpack(t[128]);
    expect(r).toBeCloseTo(255 * (128 / 255), -0.5);
    expect(g).toBeCloseTo(128 * (128 / 255), -0.5);
    expect(b).toBe(0);
  });

  it("reverses", () => {
    const t = lut(["#000000", "#ffffff"], 16, true);
    expect(unpack(t[0])).toEqual([255, 255, 255, 255]);
    expect(unpack(t[15])).toEqual([0, 0, 0, 255]);
  });

  it("indexes values into the table, clamped", () => {
    expect(lutIndex(0, 0, 1)).toBe(0);
    expect(lutIndex(1, 0, 1)).toBe(255);
    expect(lutIndex(0.5, 0, 1)).toBe(128);
    expect(lutIndex(-3, 0, 1)).toBe(0);
    expect(lutIndex(7, 0, 1)).toBe(255);
    expect(lutIndex(5, 5, 5)).toBe(0);
  });

  it("parses colours", () => {
    expect(hexToRgb("#f80")).toEqual([255, 136, 0]);
    expect(categorical(10)).toBe(categorical(0));
    expect(luminance("#ffffff")).toBeCloseTo(1);
    expect(luminance("rgb(0, 0, 0)")).toBe(0);
    expect(Number.isNaN(luminance("var(--x)"))).toBe(true);
  });

  it("resolves explicit themes without a DOM", () => {
    expect(resolveTheme("dark").dark).toBe(true);
    expect(resolveTheme("light").dark).toBe(false);
    expect(resolveTheme("auto").dark).toBe(false);
  });
});
