/**
 * `npm run build` (and `prepack`, so `npm pack` ships it): compile src/ to
 * JavaScript in dist/ with declarations, relative imports rewritten from
 * .ts to .js (Node does not strip types under node_modules, so an installed
 * Petrel must be JavaScript), and copy what src/ holds besides TypeScript
 * (the common-passwords list) beside it.
 */
import { spawnSync } from "node:child_process";
import { cpSync, readdirSync, rmSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const src = join(root, "src");
const dist = join(root, "dist");

rmSync(dist, { recursive: true, force: true });
const tsc = spawnSync(process.execPath, [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", join(root, "tsconfig.build.json")], { stdio: "inherit" });
if (tsc.status !== 0) {
  process.stderr.write(`build: tsc failed (${tsc.status ?? tsc.signal})\n`);
  process.exit(1);
}
let assets = 0;
for (const entry of readdirSync(src, { recursive: true, withFileTypes: true })) {
  if (!entry.isFile() || /\.[mc]?ts$/.test(entry.name)) continue;
  const from = join(entry.parentPath, entry.name);
  cpSync(from, join(dist, relative(src, from)));
  assets++;
}
process.stdout.write(`build: dist/ compiled, ${assets} asset file(s) copied\n`);
