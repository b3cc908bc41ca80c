// Decoding of the bytes the Python side sends (grokviz/widgets/_serialization.py).
//
// Tables cross the wire as Arrow IPC streams, dense matrices as raw little-endian typed arrays.
// ipywidgets hands binary traits to the front end as a DataView (or ArrayBuffer/Uint8Array in
// some hosts), so every decoder accepts all three.
import { tableFromIPC } from "apache-arrow";

export type Binary = DataView | ArrayBuffer | Uint8Array | null | undefined;
export type Column = ArrayLike<number> | string[];
export type Columns = Record<string, Column>;

/** View any binary trait value as a Uint8Array without copying. */
export function asBytes(value: Binary): Uint8Array {
  if (value == null) return new Uint8Array(0);
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
}

/**
 * Decode an Arrow IPC stream into plain columns: typed arrays for numbers, string arrays for text.
 * An empty payload decodes to an empty record so views can render before data arrives.
 */
export function decodeTable(value: Binary): { length: number; columns: Columns } {
  const bytes = asBytes(value);
  if (bytes.byteLength === 0) return { length: 0, columns: {} };
  const table = tableFromIPC(bytes);
  const columns: Columns = {};
  for (const field of table.schema.fields) {
    const vector = table.getChild(field.name);
    if (vector == null) continue;
    const values = vector.toArray() as unknown;
    if (ArrayBuffer.isView(values)) {
      columns[field.name] = values as unknown as ArrayLike<number>;
    } else {
      columns[field.name] = Array.from(values as Iterable<unknown>, (v) => (v == null ? "" : String(v)));
    }
  }
  return { length: table.numRows, columns };
}

export type DType = "uint8" | "uint16" | "int16" | "int32" | "uint32" | "float32" | "float64";

const WIDTH: Record<DType, number> = {
  uint8: 1,
  uint16: 2,
  int16: 2,
  int32: 4,
  uint32: 4,
  float32: 4,
  float64: 8,
};

/**
 * Read raw little-endian numbers. Copies only when the payload is not aligned for the type
 * (DataViews from the widget comm may start at any offset).
 */
export function decodeArray(value: Binary, dtype: DType): ArrayLike<number> & Iterable<number> {
  const src = asBytes(value);
  const width = WIDTH[dtype];
  if (src.byteLength % width !== 0) {
    throw new Error(`grokviz: ${src.byteLength} bytes is not a whole number of ${dtype} values`);
  }
  const aligned = src.byteOffset % width === 0 ? src : src.slice();
  const { buffer, byteOffset } = aligned;
  const n = aligned.byteLength / width;
  switch (dtype) {
    case "uint8":
      return new Uint8Array(buffer, byteOffset, n);
    case "uint16":
      return new Uint16Array(buffer, byteOffset, n);
    case "int16":
      return new Int16Array(buffer, byteOffset, n);
    case "int32":
      return new Int32Array(buffer, byteOffset, n);
    case "uint32":
      return new Uint32Array(buffer, byteOffset, n);
    case "float32":
      return new Float32Array(buffer, byteOffset, n);
    case "float64":
      return new Float64Array(buffer, byteOffset, n);
  }
}

/** A numeric column, or an error naming the table field that is missing. */
export function numeric(columns: Columns, name: string): ArrayLike<number> {
  const column = columns[name];
  if (column == null) return new Float64Array(0);
  if (Array.isArray(column)) throw new Error(`grokviz: column ${name} is text, expected numbers`);
  return column as ArrayLike<number>;
}

/** A text column (empty when absent). */
export function text(columns: Columns, name: string): string[] {
  const column = columns[name];
  if (column == null) return [];
  return Array.isArray(column) ? column : Array.from(column as ArrayLike<number>, String);
}
