// Entry point of grokviz/static/widgets.js: one bundle for every grokviz view, chosen by the
// model's `_view` trait, so a page with several grokviz widgets loads Arrow and the shared code once.
import "./widgets.css";
import { render as renderPathways } from "./pathway_diagram";
import { render as renderMatrix } from "./similarity_matrix";
import type { ModelLike } from "./view";

type Render = (props: { model: ModelLike; el: HTMLElement }) => () => void;

export const VIEWS: Record<string, Render> = {
  pathway_diagram: renderPathways,
  similarity_matrix: renderMatrix,
};

function render({ model, el }: { model: ModelLike; el: HTMLElement }): () => void {
  const name = String(model.get("_view") ?? "");
  const view = VIEWS[name];
  if (view == null) {
    el.textContent = `grokviz: unknown view ${JSON.stringify(name)}; known: ${Object.keys(VIEWS).join(", ")}`;
    return () => {};
  }
  return view({ model, el });
}

export default { render };
