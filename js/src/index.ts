// Entry point of grokviz/static/widgets.js: one bundle for every grokviz view, chosen by the
// model's `_view` trait, so a page with several grokviz widgets loads Arrow and the shared code once.
import type { AnyModel, Host } from "@anywidget/types";
import "./widgets.css";
import { render as renderExplorer } from "./explorer";
import type { BaseTraits, DiagramModel, ExplorerModel, MatrixModel, TimelineModel } from "./models";
import { render as renderPathways } from "./pathway_diagram";
import { render as renderMatrix } from "./similarity_matrix";
import { render as renderTimeline } from "./timeline";

interface Props {
  model: AnyModel<BaseTraits>;
  el: HTMLElement;
  host?: Host;
}

type Render = (props: Props) => () => void;

// Each view reads its own traits (models.ts); `_view` says which one a model is.
export const VIEWS: Record<string, Render> = {
  pathway_diagram: ({ model, el }) => renderPathways({ model: model as unknown as DiagramModel, el }),
  similarity_matrix: ({ model, el }) => renderMatrix({ model: model as unknown as MatrixModel, el }),
  timeline: ({ model, el }) => renderTimeline({ model: model as unknown as TimelineModel, el }),
  explorer: ({ model, el, host }) => renderExplorer({ model: model as unknown as ExplorerModel, el, host }),
};

function render({ model, el, host }: Props): () => void {
  const name = String(model.get("_view") ?? "");
  const view = VIEWS[name];
  if (view == null) {
    el.textContent = `grokviz: unknown view ${JSON.stringify(name)}; known: ${Object.keys(VIEWS).join(", ")}`;
    return () => {};
  }
  try {
    return view({ model, el, host });
  } catch (error) {
    // Say what failed where the view would be, instead of an empty output.
    el.textContent = `grokviz: the ${name} view failed to draw: ${String(error)}`;
    throw error;
  }
}

export default { render };
