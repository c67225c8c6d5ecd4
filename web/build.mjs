// Builds the desk and board pages into dist/ (served by the gateway at /desk/ and /board/). No network at run time:
// everything, uPlot included, is bundled from node_modules (package-lock.json pins it).
import { build } from "esbuild";
import { cpSync, mkdirSync, rmSync } from "node:fs";

rmSync("dist", { recursive: true, force: true });
for (const page of ["desk", "board"]) {
  mkdirSync(`dist/${page}`, { recursive: true });
  cpSync(`src/${page}.html`, `dist/${page}/index.html`);
  await build({
    entryPoints: [`src/${page}.tsx`],
    bundle: true,
    minify: true,
    sourcemap: true,
    target: "es2020",
    jsx: "automatic",
    jsxImportSource: "preact",
    outfile: `dist/${page}/${page}.js`,
    loader: { ".css": "css" },
  });
}
mkdirSync("dist/assets", { recursive: true });
cpSync("src/pages.css", "dist/assets/pages.css");
cpSync("node_modules/uplot/dist/uPlot.min.css", "dist/assets/uPlot.min.css");
console.log("pages built in web/dist");
