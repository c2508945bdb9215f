/**
 * The import graph of src/ has no cycles: between files, nor between the
 * folders that are Petrel's boxes (docs/architecture.md). Data flows one
 * way — listener → session → policy → intake → spool → queue → agents — and
 * a cycle is the first sign that a box reaches back against it.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const src = join(root, "src");

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sourceFiles(p));
    else if (name.endsWith(".ts") && !name.endsWith(".d.ts")) out.push(p);
  }
  return out;
}

/** Relative imports of a file, type-only ones included: a type import is a dependency too. */
const IMPORT = /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+["'](\.{1,2}\/[^"']+)["']/g;
const DYNAMIC = /import\(\s*["'](\.{1,2}\/[^"']+)["']\s*\)/g;

function importsOf(file: string): string[] {
  const text = readFileSync(file, "utf8");
  const out: string[] = [];
  for (const re of [IMPORT, DYNAMIC]) {
    for (const m of text.matchAll(re)) out.push(resolve(dirname(file), m[1]));
  }
  return out;
}

/** The box a file belongs to: its first folder under src/ (src/mta.ts is the composition root). */
function boxOf(file: string): string {
  const rel = relative(src, file);
  const slash = rel.indexOf("/");
  return slash === -1 ? rel : rel.slice(0, slash);
}

/** Every cycle found by depth-first search, each as a path that returns to its start. */
function cycles(graph: Map<string, Set<string>>): string[][] {
  const found: string[][] = [];
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const visit = (n: string): void => {
    state.set(n, "open");
    stack.push(n);
    for (const m of graph.get(n) ?? []) {
      const s = state.get(m);
      if (s === "open") found.push([...stack.slice(stack.indexOf(m)), m]);
      else if (s === undefined) visit(m);
    }
    stack.pop();
    state.set(n, "done");
  };
  for (const n of [...graph.keys()].sort()) if (!state.has(n)) visit(n);
  return found;
}

const files = sourceFiles(src);
const fileGraph = new Map<string, Set<string>>();
const boxGraph = new Map<string, Set<string>>();
const why = new Map<string, string>();
for (const f of files) {
  const deps = new Set(importsOf(f).filter((d) => d.startsWith(src)));
  fileGraph.set(f, deps);
  for (const d of deps) {
    const a = boxOf(f);
    const b = boxOf(d);
    if (a === b) continue;
    if (!boxGraph.has(a)) boxGraph.set(a, new Set());
    boxGraph.get(a)!.add(b);
    why.set(`${a} -> ${b}`, `${relative(root, f)} imports ${relative(root, d)}`);
  }
}

test("no import cycle between files of src/", () => {
  const found = cycles(fileGraph).map((c) => c.map((f) => relative(root, f)).join(" -> "));
  assert.deepEqual(found, [], `file cycles:\n${found.join("\n")}`);
});

test("no import cycle between the boxes (folders) of src/", () => {
  const found = cycles(boxGraph).map((c) => {
    const steps = c.slice(1).map((b, i) => `  ${c[i]} -> ${b}: ${why.get(`${c[i]} -> ${b}`)}`);
    return `${c.join(" -> ")}\n${steps.join("\n")}`;
  });
  assert.deepEqual(found, [], `box cycles:\n${found.join("\n")}`);
});

test("the checker sees imports (a graph that cannot fail proves nothing)", () => {
  assert.ok(files.length > 50, `only ${files.length} files found under src/`);
  assert.ok([...fileGraph.values()].some((d) => d.size > 0), "no relative import found");
  assert.deepEqual(cycles(new Map([["a", new Set(["b"])], ["b", new Set(["a"])]])), [["a", "b", "a"]]);
});
