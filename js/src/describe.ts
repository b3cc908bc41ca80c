// Words the views share: how pathways are defined, said the same way in every view's subtitle.

/** How pathways are defined (grokviz.pathways.select_experts), as the views say it. */
export function pathwayRule(tau: number | null | undefined, topK: number | null | undefined): string {
  if (topK != null) return `pathways: top-${topK} expert${topK === 1 ? "" : "s"} per layer`;
  if (tau != null) return `pathways: experts carrying ${Math.round(tau * 100)} % of the routing weight per layer (τ = ${tau})`;
  return "pathways as given";
}
