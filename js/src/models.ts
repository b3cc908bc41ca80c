// The synced traits of every grokviz widget, one interface per widget, mirroring its Python class
// (the file named above each). The views read them through `AnyModel<...>` so `model.get("x")`
// has the Python trait's type and no view casts.
import type { AnyModel } from "@anywidget/types";

/** Bytes of a `traitlets.Bytes` trait, as the widget comm hands them over. */
export type Bytes = DataView | ArrayBuffer | Uint8Array | null;

/** grokviz/widgets/palette.py `Palette.to_json()`: one colour per group, per theme. */
export interface PaletteJson {
  groups: string[];
  light: Record<string, string>;
  dark: Record<string, string>;
  controls: string[];
  labels: Record<string, string>;
}

/** grokviz/widgets/_base.py `GrokvizWidget`. */
export interface BaseTraits {
  _view: string;
  theme: "auto" | "light" | "dark";
  checkpoints: string[];
  checkpoint: string | null;
  _palette: PaletteJson | null;
}

/** grokviz/widgets/pathway_diagram.py `PathwayDiagram`. */
export interface PathwayDiagramTraits extends BaseTraits {
  _paths: Bytes;
  _samples: Bytes;
  _tokens: Bytes;
  _token_routes: Bytes;
  _n_layers: number;
  _n_experts: number;
  tau: number | null;
  top_k: number | null;
  mode: "samples" | "tokens";
  aggregate: "auto" | "always" | "never";
  compare: string | null;
  min_share: number;
  selected_samples: string[];
  token_sample: string | null;
  selected_token: number | null;
  width: number | null;
  height: number | null;
}

/** grokviz/widgets/similarity_matrix.py `SimilarityMatrix`. */
export interface SimilarityMatrixTraits extends BaseTraits {
  _matrices: Bytes;
  _loaded: number[];
  _dtype: "uint16" | "float32";
  _n: number;
  _samples: Bytes;
  _paths: Bytes;
  _n_layers: number;
  _range: [number, number] | null;
  tau: number | null;
  top_k: number | null;
  order: "group" | "cluster" | "none";
  display: "auto" | "samples" | "groups";
  selected_pair: string[];
  size: number | null;
}

/** grokviz/widgets/timeline.py `Timeline`. */
export interface TimelineTraits extends BaseTraits {
  _series: Bytes;
  _accuracy: Bytes;
  _rules: Bytes;
  _pairs: Bytes;
  _meta: TimelineMeta;
  width: number | null;
  row_height: number;
}

export interface TimelineMeta {
  metrics: { name: string; title: string }[];
  groups: string[];
  steps: number[];
  /** Tasks of the accuracy table, and the group each is drawn as. */
  tasks: { task: string; group: string }[];
  title: string;
}

/** grokviz/widgets/explorer.py `Explorer`. */
export interface ExplorerTraits extends BaseTraits {
  source: string;
  search: string;
  _options: Bytes;
  selected_samples: string[];
  running: boolean;
  progress: [number, number];
  progress_style: "" | "success" | "danger";
  status: string;
  errors: string[];
  _views: string[];
  _clicks: number;
}

export type DiagramModel = AnyModel<PathwayDiagramTraits>;
export type MatrixModel = AnyModel<SimilarityMatrixTraits>;
export type TimelineModel = AnyModel<TimelineTraits>;
export type ExplorerModel = AnyModel<ExplorerTraits>;
export type BaseModel = AnyModel<BaseTraits>;
