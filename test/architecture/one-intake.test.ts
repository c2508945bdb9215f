/**
 * One intake into the spool (docs/architecture.md): outside the spools
 * themselves (src/spool/, and the one in the cluster's database,
 * src/storage/postgres/spool*.ts), only src/intake/ opens spool writers — so only the intake builds
 * an envelope, adds trace fields and commits a message, for received mail
 * and bounces alike.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const src = join(resolve(dirname(fileURLToPath(import.meta.url)), "../.."), "src");

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? sourceFiles(p) : name.endsWith(".ts") ? [p] : [];
  });
}

test("only src/intake/ (and the spools themselves) writes the spool", () => {
  const writers = sourceFiles(src)
    .map((f) => relative(src, f))
    .filter((f) => !f.startsWith("spool/") && !f.startsWith("intake/") && !/^storage\/postgres\/spool(-[a-z]+)?\.ts$/.test(f))
    .filter((f) => /\bSpoolWriter\b|\.create\(\)/.test(readFileSync(join(src, f), "utf8")));
  assert.deepEqual(writers, []);
  assert.ok(/spool\.create\(\)/.test(readFileSync(join(src, "intake/intake.ts"), "utf8")), "the intake is where messages are created");
});
