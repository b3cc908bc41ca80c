// Explorer view. Python side: grokviz/widgets/explorer.py (traits: models.ts).
//
// The controls (series, checkpoint, search, the sample list, Trace/Stop, progress, errors) are
// drawn here from synced traits, and the views (a PathwayDiagram and a SimilarityMatrix by default)
// are child widgets rendered through anywidget's host (`_views` holds their references). So the
// Explorer is one anywidget: it works where ipywidgets containers do not (marimo) as in Jupyter.
import type { Host } from "@anywidget/types";
import { decodeTable, text } from "./arrow";
import type { ExplorerModel } from "./models";
import { coalesce, Disposer, element, shell } from "./view";

export function render({ model, el, host }: { model: ExplorerModel; el: HTMLElement; host?: Host }): () => void {
  const disposer = new Disposer();
  const ui = shell(el, model, disposer, { testid: "grokviz-explorer", onExport: () => {}, onTheme: () => {} });
  ui.root.classList.add("grokviz-explorer");
  for (const b of ui.toolbar.querySelectorAll("[data-testid^=export]")) (b as HTMLElement).style.display = "none";
  ui.setTitle("Explorer", "choose a checkpoint and samples, press Trace: their pathways stream into the views below");

  const field = (cls: string, label: string, input: HTMLElement) => {
    const box = element("label", { class: `grokviz-field ${cls}` });
    box.append(element("span", { class: "grokviz-field-label" }, label), input);
    return box;
  };
  const source = element("input", { type: "text", placeholder: "checkpoint series: a folder or a hub repo id" });
  const menu = element("select", {});
  const search = element("input", { type: "search", placeholder: "search id, domain or text" });
  const table = element("select", { multiple: "", size: "8" });
  const button = element("button", { class: "grokviz-button grokviz-primary explorer-trace" }, "Trace");
  const bar = element("div", { class: "progress-bar" });
  const progress = element("div", { class: "grokviz-progress explorer-progress", role: "progressbar" });
  progress.append(bar);
  const count = element("span", { class: "grokviz-progress-text" });
  const status = element("span", { class: "grokviz-status explorer-status" });
  const errors = element("div", { class: "explorer-errors" });
  const views = element("div", { class: "explorer-views" });
  const placeholder = element("div", { class: "grokviz-placeholder" }, "Select samples and press Trace: their pathways appear here as they stream in.");

  const controls = element("div", { class: "grokviz-explorer-controls" });
  const row1 = element("div", { class: "grokviz-row-controls" });
  row1.append(field("explorer-source", "source", source), field("explorer-checkpoint", "checkpoint", menu));
  const tableBox = element("div", { class: "explorer-table" });
  tableBox.append(table);
  const row3 = element("div", { class: "grokviz-row-controls" });
  row3.append(button, progress, count, status);
  controls.append(row1, field("explorer-search", "search", search), tableBox, row3, errors);
  ui.stage.replaceWith(controls);
  ui.root.append(views);

  // -- kernel -> view ------------------------------------------------------------------------
  const syncSource = () => {
    if (document.activeElement !== source) source.value = model.get("source") ?? "";
  };
  const syncMenu = () => {
    const names = model.get("checkpoints") ?? [];
    const chosen = model.get("checkpoint") ?? "";
    menu.replaceChildren(...names.map((n) => element("option", { value: n }, n)));
    menu.value = chosen;
    menu.disabled = names.length === 0;
  };
  const syncSearch = () => {
    if (document.activeElement !== search) search.value = model.get("search") ?? "";
  };
  const syncTable = () => {
    const rows = decodeTable(model.get("_options"));
    const ids = text(rows.columns, "sample_id");
    const labels = text(rows.columns, "label");
    const selected = new Set(model.get("selected_samples") ?? []);
    table.replaceChildren(
      ...ids.map((id, i) => {
        const option = element("option", { value: id }, labels[i] ?? id);
        option.selected = selected.has(id);
        return option;
      }),
    );
  };
  const syncSelection = () => {
    const selected = new Set(model.get("selected_samples") ?? []);
    for (const option of table.options) option.selected = selected.has(option.value);
  };
  const syncRun = () => {
    const running = model.get("running");
    button.textContent = running ? "Stop" : "Trace";
    button.classList.toggle("grokviz-stop", running);
    const [done, total] = model.get("progress") ?? [0, 0];
    bar.style.width = total > 0 ? `${Math.round((100 * done) / total)}%` : "0%";
    bar.className = `progress-bar ${model.get("progress_style") ? `progress-${model.get("progress_style")}` : ""}`;
    progress.setAttribute("aria-valuenow", String(done));
    progress.setAttribute("aria-valuemax", String(total));
    count.textContent = total > 0 ? `${done} / ${total}` : "";
    status.textContent = model.get("status") ?? "";
  };
  const syncErrors = () => {
    errors.replaceChildren(...(model.get("errors") ?? []).map((m) => element("pre", { class: "grokviz-error" }, m)));
  };

  // The child views: rendered through the host, replaced when Python swaps them.
  let children: AbortController[] = [];
  const syncViews = async () => {
    for (const c of children) c.abort();
    children = [];
    const refs = model.get("_views") ?? [];
    if (!refs.length || host == null) {
      views.replaceChildren(placeholder);
      if (refs.length && host == null) placeholder.textContent = "this notebook front end cannot show the Explorer's views";
      return;
    }
    const cells = refs.map(() => element("div", { class: "explorer-view" }));
    views.replaceChildren(...cells);
    await Promise.all(
      refs.map(async (ref, i) => {
        const controller = new AbortController();
        children.push(controller);
        const widget = await host.getWidget(ref);
        await widget.render({ el: cells[i], signal: controller.signal });
      }),
    );
  };
  disposer.add(() => {
    for (const c of children) c.abort();
  });

  // -- view -> kernel ------------------------------------------------------------------------
  const commit = <K extends "source" | "search" | "checkpoint">(name: K, value: string) => {
    model.set(name, value);
    model.save_changes();
  };
  disposer.listen(source, "change", () => commit("source", source.value.trim()));
  disposer.listen(source, "keydown", (ev) => {
    if (ev.key === "Enter") commit("source", source.value.trim());
  });
  disposer.listen(menu, "change", () => commit("checkpoint", menu.value));
  let searchTimer = 0;
  disposer.listen(search, "input", () => {
    clearTimeout(searchTimer);
    searchTimer = window.setTimeout(() => commit("search", search.value), 120);
  });
  disposer.add(() => clearTimeout(searchTimer));
  disposer.listen(table, "change", () => {
    // Samples selected outside the current search stay selected: merge rather than replace.
    const shown = new Set([...table.options].map((o) => o.value));
    const hidden = (model.get("selected_samples") ?? []).filter((s) => !shown.has(s));
    const chosen = [...table.selectedOptions].map((o) => o.value);
    model.set("selected_samples", [...hidden, ...chosen]);
    model.save_changes();
  });
  disposer.listen(button, "click", () => {
    model.set("_clicks", (model.get("_clicks") ?? 0) + 1);
    model.save_changes();
  });

  disposer.on(model, ["source"], syncSource);
  disposer.on(model, ["checkpoints", "checkpoint"], syncMenu);
  disposer.on(model, ["search"], syncSearch);
  disposer.on(model, ["_options"], syncTable);
  disposer.on(model, ["selected_samples"], syncSelection);
  disposer.on(model, ["running", "progress", "progress_style", "status"], coalesce(syncRun));
  disposer.on(model, ["errors"], syncErrors);
  disposer.on(model, ["_views"], () => void syncViews());

  syncSource();
  syncMenu();
  syncSearch();
  syncTable();
  syncRun();
  syncErrors();
  void syncViews();
  return () => disposer.dispose();
}
