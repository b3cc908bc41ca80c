// Bundle js/src into ../grokviz/static/ and record a hash of everything the bundle is built from.
//
// tests/test_bundle.py recomputes SOURCE_HASH in Python (no Node needed) and fails with
// "run `make bundle`" when the shipped bundle is older than js/. Keep the hashing rule here and
// there identical: sha256 over (relative path, NUL, file bytes, NUL) of the sorted inputs.
import { createHash } from "node:crypto";
import { readFileSync, readdirSync, statSync, writeFileSync, mkdirSync } from "node:fs";
import { dirname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "grokviz", "static");
mkdirSync(out, { recursive: true });

await esbuild.build({
  entryPoints: { widgets: join(here, "src", "index.ts") },
  bundle: true,
  format: "esm",
  minify: true,
  target: ["es2020"],
  outdir: out,
  loader: { ".css": "css" },
  legalComments: "none",
  logLevel: "warning",
});

// The offline HTML export (grokviz/widgets/_base.py) inlines the Jupyter widgets HTML manager and
// RequireJS instead of loading them from a CDN; ship gzipped copies of both.
const vendor = [
  ["@jupyter-widgets/html-manager/dist/embed-amd.js", "html-manager-embed-amd.js.gz"],
  ["requirejs/require.js", "require.js.gz"],
];
for (const [src, dst] of vendor) {
  const bytes = readFileSync(join(here, "node_modules", src));
  writeFileSync(join(out, dst), gzipSync(bytes, { level: 9, mtime: 0 }));
}

function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? walk(path) : [path];
  });
}

const inputs = [
  ...walk(join(here, "src")),
  join(here, "package-lock.json"),
  join(here, "build.mjs"),
]
  .map((p) => relative(here, p).split(sep).join("/"))
  .sort();
const hash = createHash("sha256");
for (const rel of inputs) {
  hash.update(rel);
  hash.update("\0");
  hash.update(readFileSync(join(here, rel)));
  hash.update("\0");
}
writeFileSync(join(out, "SOURCE_HASH"), hash.digest("hex") + "\n");
