// Builds the static site into dist/: the app bundled and minified by esbuild, plus public/.
import { cpSync, mkdirSync, rmSync, statSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { readFileSync } from "node:fs";

import { build } from "esbuild";

rmSync("dist", { recursive: true, force: true });
mkdirSync("dist/assets", { recursive: true });
await build({
    entryPoints: ["src/app.ts"],
    bundle: true,
    minify: true,
    format: "esm",
    target: ["es2022", "chrome111", "safari16.4"],
    sourcemap: "linked",
    outfile: "dist/assets/app.js",
    logLevel: "warning",
});
cpSync("public/index.html", "dist/index.html");
cpSync("public/config.js", "dist/config.js");
cpSync("public/favicon.ico", "dist/favicon.ico");
cpSync("public/app.css", "dist/assets/app.css");
const bytes = statSync("dist/assets/app.js").size;
const gzipped = gzipSync(readFileSync("dist/assets/app.js")).length;
console.log(`web/dist/assets/app.js: ${bytes} bytes, ${gzipped} gzipped`);
