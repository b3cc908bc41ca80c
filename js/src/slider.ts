// The checkpoint slider: a track with one tick per checkpoint, a thumb, a play button and a label
// of fixed width. Dragging moves the thumb continuously (the views morph between checkpoints) and
// snaps to the nearest checkpoint on release; arrow keys step one checkpoint, Home/End go to the
// ends. The label's width is set from the longest checkpoint name, so nothing moves while dragging
// (a native range input with a growing label shrank its track as the label grew).
import { element, type Disposer } from "./view";
import { textWidth } from "./scene";

export interface SliderEvents {
  /** While dragging: the continuous position (0 .. n-1). */
  onInput(position: number): void;
  /** A checkpoint was chosen (release, key, tick click). */
  onChange(index: number): void;
  onPlay(): void;
}

export class CheckpointSlider {
  readonly el: HTMLDivElement;
  readonly track: HTMLDivElement;
  readonly thumb: HTMLDivElement;
  readonly label: HTMLSpanElement;
  readonly play: HTMLButtonElement;
  private ticks: HTMLDivElement;
  private names: string[] = [];
  private position = 0;
  /** The checkpoint the view is at or heading to; keys step from it, not from the thumb, which
   * may still be gliding towards it. */
  private anchor = 0;
  private dragging = false;

  constructor(disposer: Disposer, private events: SliderEvents, testid = "checkpoint-slider") {
    this.el = element("div", { class: "grokviz-slider" });
    this.play = element("button", { class: "grokviz-button", "data-testid": "play", title: "Play through the checkpoints" }, "▶");
    this.track = element("div", {
      class: "grokviz-track",
      "data-testid": testid,
      role: "slider",
      tabindex: "0",
      "aria-label": "checkpoint",
      "aria-valuemin": "0",
    });
    this.ticks = element("div", { class: "grokviz-ticks" });
    this.thumb = element("div", { class: "grokviz-thumb" });
    this.track.append(this.ticks, this.thumb);
    this.label = element("span", { class: "grokviz-label", "data-testid": "checkpoint-label" });
    this.el.append(this.play, this.track, this.label);
    disposer.listen(this.play, "click", () => events.onPlay());
    disposer.listen(this.track, "pointerdown", (ev) => this.down(ev));
    disposer.listen(this.track, "pointermove", (ev) => this.move(ev));
    disposer.listen(this.track, "pointerup", (ev) => this.up(ev));
    disposer.listen(this.track, "pointercancel", (ev) => this.up(ev));
    disposer.listen(this.track, "keydown", (ev) => this.key(ev));
  }

  get count(): number {
    return this.names.length;
  }

  setNames(names: string[]): void {
    this.names = names;
    const n = names.length;
    this.track.setAttribute("aria-valuemax", String(Math.max(0, n - 1)));
    this.track.classList.toggle("grokviz-disabled", n < 2);
    this.play.disabled = n < 2;
    this.ticks.replaceChildren(
      ...names.map((_, i) => {
        const tick = element("div", { class: "grokviz-tick" });
        tick.style.left = `${n > 1 ? (100 * i) / (n - 1) : 0}%`;
        return tick;
      }),
    );
    // Room for the longest text the label shows ("a → b"), so its width never changes.
    const font = "12px system-ui, -apple-system, 'Segoe UI', sans-serif";
    const longest = names.reduce((m, s) => Math.max(m, textWidth(s, font)), 0);
    this.label.style.width = `${Math.ceil(longest + 8)}px`;
    this.setPosition(this.position, this.anchor);
  }

  /**
   * Move the thumb to `position` (does not notify). `anchor` is the checkpoint the view is heading
   * to while it animates there (default: where the thumb is); the label and the keys go by it.
   */
  setPosition(position: number, anchor = position): void {
    const n = this.names.length;
    const clamp = (v: number) => Math.max(0, Math.min(Math.max(0, n - 1), v));
    this.position = clamp(position);
    this.anchor = clamp(anchor);
    const f = n > 1 ? this.position / (n - 1) : 0;
    this.thumb.style.left = `${100 * f}%`;
    const nearest = Math.round(this.anchor);
    this.track.setAttribute("aria-valuenow", String(nearest));
    this.track.setAttribute("aria-valuetext", this.names[nearest] ?? "");
    this.label.textContent = this.names[nearest] ?? "no data";
    this.label.title = this.names[nearest] ?? "";
  }

  private at(ev: PointerEvent): number {
    const rect = this.track.getBoundingClientRect();
    const n = this.names.length;
    if (rect.width <= 0 || n < 2) return 0;
    const f = Math.max(0, Math.min(1, (ev.clientX - rect.left) / rect.width));
    return f * (n - 1);
  }

  private down(ev: PointerEvent): void {
    if (this.names.length < 2) return;
    this.dragging = true;
    this.track.setPointerCapture?.(ev.pointerId);
    this.track.focus();
    this.setPosition(this.at(ev));
    this.events.onInput(this.position);
  }

  private move(ev: PointerEvent): void {
    if (!this.dragging) return;
    this.setPosition(this.at(ev));
    this.events.onInput(this.position);
  }

  private up(ev: PointerEvent): void {
    if (!this.dragging) return;
    this.dragging = false;
    this.track.releasePointerCapture?.(ev.pointerId);
    const index = Math.round(this.at(ev));
    this.setPosition(index);
    this.events.onChange(index);
  }

  private key(ev: KeyboardEvent): void {
    const n = this.names.length;
    if (n < 2) return;
    const current = Math.round(this.anchor);
    const big = Math.max(1, Math.round(n / 10));
    const moves: Record<string, number> = {
      ArrowRight: current + 1,
      ArrowUp: current + 1,
      ArrowLeft: current - 1,
      ArrowDown: current - 1,
      PageUp: current + big,
      PageDown: current - big,
      Home: 0,
      End: n - 1,
    };
    if (!(ev.key in moves)) return;
    ev.preventDefault();
    const index = Math.max(0, Math.min(n - 1, moves[ev.key]));
    this.setPosition(index);
    if (index !== current) this.events.onChange(index);
  }
}
