// The group colours Python assigned (grokviz/widgets/palette.py): the front end only looks them up,
// so every view of a notebook draws a group in the same colour. A group Python did not colour
// (which the widgets never send) is drawn in the theme's muted ink rather than a made-up hue.
import type { Theme } from "./color";
import type { PaletteJson } from "./models";

export interface Palette {
  color(group: string): string;
  label(group: string): string;
  isControl(group: string): boolean;
  /** Groups in legend order: those given, sorted as the palette orders them. */
  order(groups: Iterable<string>): string[];
}

export function palette(json: PaletteJson | null | undefined, theme: Theme): Palette {
  const table = (theme.dark ? json?.dark : json?.light) ?? {};
  const labels = json?.labels ?? {};
  const controls = new Set(json?.controls ?? []);
  const rank = new Map((json?.groups ?? []).map((g, i) => [g, i]));
  return {
    color: (group) => table[group] ?? theme.muted,
    label: (group) => labels[group] ?? (group || "(none)"),
    isControl: (group) => controls.has(group),
    order: (groups) =>
      [...new Set(groups)].sort((a, b) => {
        const ra = rank.get(a) ?? Number.MAX_SAFE_INTEGER;
        const rb = rank.get(b) ?? Number.MAX_SAFE_INTEGER;
        return ra !== rb ? ra - rb : a < b ? -1 : a > b ? 1 : 0;
      }),
  };
}
