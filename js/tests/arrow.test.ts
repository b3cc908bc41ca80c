import { tableFromArrays, tableToIPC } from "apache-arrow";
import { describe, expect, it } from "vitest";
import { asBytes, decodeArray, decodeTable, numeric, text } from "../src/arrow";

describe("Arrow decoding", () => {
  it("decodes an IPC stream from a DataView at an offset", () => {
    const table = tableFromArrays({
      sample: new Uint32Array([0, 1, 2]),
      weight: new Float32Array([0.5, 0.25, 0.125]),
      sample_id: ["a", "b", "c"],
    });
    const ipc = tableToIPC(table, "stream");
    // Widget comms hand over DataViews into larger buffers.
    const padded = new Uint8Array(ipc.byteLength + 3);
    padded.set(ipc, 3);
    const view = new DataView(padded.buffer, 3, ipc.byteLength);
    const { length, columns } = decodeTable(view);
    expect(length).toBe(3);
    expect(Array.from(numeric(columns, "sample"))).toEqual([0, 1, 2]);
    expect(Array.from(numeric(columns, "weight"))).toEqual([0.5, 0.25, 0.125]);
    expect(text(columns, "sample_id")).toEqual(["a", "b", "c"]);
  });

  it("decodes nothing to an empty table", () => {
    expect(decodeTable(null)).toEqual({ length: 0, columns: {} });
    expect(decodeTable(new ArrayBuffer(0)).length).toBe(0);
  });

  it("reads raw little-endian arrays, aligned or not", () => {
    const src = new Float32Array([1.5, -2, 3.25]);
    const bytes = new Uint8Array(src.buffer);
    expect(Array.from(decodeArray(bytes, "float32"))).toEqual([1.5, -2, 3.25]);
    const shifted = new Uint8Array(bytes.byteLength + 1);
    shifted.set(bytes, 1);
    const view = new DataView(shifted.buffer, 1, bytes.byteLength);
    expect(Array.from(decodeArray(view, "float32"))).toEqual([1.5, -2, 3.25]);
    const u16 = new Uint8Array([1, 0, 0, 1]); // little-endian 1 and 256
    expect(Array.from(decodeArray(u16, "uint16"))).toEqual([1, 256]);
    expect(() => decodeArray(new Uint8Array(3), "uint16")).toThrow(/whole number/);
  });

  it("views bytes without copying", () => {
    const buf = new ArrayBuffer(8);
    expect(asBytes(new DataView(buf, 2, 4)).buffer).toBe(buf);
  });
});
