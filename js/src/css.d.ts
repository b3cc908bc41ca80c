// esbuild emits imported CSS as widgets.css next to the bundle; nothing is imported as a value.
declare module "*.css";
