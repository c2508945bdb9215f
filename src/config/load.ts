/**
 * Reading petrel.yaml: YAML → schema → checks across keys → paths resolved
 * against the file's directory → certificate files checked. Any problem stops
 * here with one ConfigError listing every issue, each naming the key, the
 * value and what is allowed (and the line in the file when there is one).
 */
import { accessSync, constants, statSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { isMap, isScalar, isSeq, LineCounter, parseDocument } from "yaml";
import type { Node as YamlNode } from "yaml";
import type * as z from "zod";
import { ConfigError, makeIssue } from "./config-error.ts";
import type { ConfigIssue } from "./config-error.ts";
import { EMBEDDED_DEFAULT_YAML, EMBEDDED_SOURCE } from "./defaults.ts";
import { configSchema, crossCheck } from "./schema.ts";
import type { Config } from "./schema.ts";

export type KeyPath = readonly (string | number)[];

export interface ParseOptions {
  /** Directory that relative paths are resolved against. Default: the directory of `source`
   * (a file path), or the current directory for the embedded default. */
  baseDir?: string;
  /** Check that certificate and key files exist and are readable. Default true. */
  checkFiles?: boolean;
  /** Where a key path sits in the source text (1-based), for messages. */
  locate?: (path: KeyPath) => { line: number; column: number } | undefined;
}

/**
 * Load the configuration file at `path`, or the embedded default when no path
 * is given. Throws ConfigError naming every problem.
 */
export async function loadConfig(path?: string, options: Omit<ParseOptions, "locate"> = {}): Promise<Config> {
  if (path === undefined) return parseConfigText(EMBEDDED_DEFAULT_YAML, EMBEDDED_SOURCE, options);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === "ENOENT" ? "no such file" : e.code === "EACCES" ? "permission denied" : e.message;
    throw new ConfigError(path, [
      makeIssue(path, "", path, "expected a readable configuration file", undefined, `cannot read the configuration file (${why})`),
    ]);
  }
  return parseConfigText(text, path, { baseDir: dirname(resolve(path)), ...options });
}

/** Parse YAML text (the contents of `source`) and validate it. */
export function parseConfigText(text: string, source: string, options: Omit<ParseOptions, "locate"> = {}): Config {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      source,
      doc.errors.map((e) => {
        const where = e.linePos ? { line: e.linePos[0].line, column: e.linePos[0].col } : undefined;
        const what = e.message.split("\n")[0].replace(/ at line \d+, column \d+:?$/, "");
        return makeIssue(source, "", undefined, "", where, `YAML syntax error: ${what}`);
      }),
    );
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    throw new ConfigError(source, [makeIssue(source, "", undefined, "", undefined, `YAML error: ${(err as Error).message}`)]);
  }
  const locate = (path: KeyPath) => {
    const offset = locateInDocument(doc.contents, path);
    if (offset === undefined) return undefined;
    const { line, col } = lineCounter.linePos(offset);
    return { line, column: col };
  };
  return parseConfig(raw, source, { ...options, locate });
}

/**
 * Validate an already-parsed value (the YAML document as plain data; null or
 * undefined mean an empty file). `source` names it in messages.
 */
export function parseConfig(raw: unknown, source: string, options: ParseOptions = {}): Config {
  const input = raw === null || raw === undefined ? {} : raw;
  const baseDir =
    options.baseDir ?? (source === EMBEDDED_SOURCE ? process.cwd() : dirname(resolve(source)));
  const issues: ConfigIssue[] = [];
  const add = (path: KeyPath, value: unknown, allowed: string, got?: string) =>
    issues.push(makeIssue(source, formatPath(path), value, allowed, options.locate?.(path), got));

  const result = configSchema.safeParse(input);
  if (!result.success) {
    for (const issue of result.error.issues) {
      const path = issue.path.filter((p): p is string | number => typeof p !== "symbol");
      if (issue.code === "unrecognized_keys") {
        const known = knownKeysAt(path);
        for (const key of issue.keys) {
          const hint = suggest(key, known);
          add(
            [...path, key],
            valueAt(input, [...path, key]),
            known.length > 0 ? `expected one of: ${known.join(", ")}` : "",
            `unknown key '${key}'${hint ? ` (did you mean '${hint}'?)` : ""}`,
          );
        }
        continue;
      }
      const value = valueAt(input, path);
      if (path[path.length - 1] === "password") {
        add(path, "[redacted]", issue.message, typeof value === "string" ? "got a value that is not a password hash" : undefined);
        continue;
      }
      const missing = value === undefined && !hasPath(input, path) ? "missing" : undefined;
      add(path, value, allowedFor(issue), missing);
    }
    throw sorted(source, issues);
  }

  const config = result.data;
  for (const i of crossCheck(config)) add(i.path, i.value, i.allowed);

  // Resolve relative paths against the config file's directory.
  config.dataDir = resolve(baseDir, config.dataDir);
  // Made at start when missing, so only resolved here, not checked.
  if (config.admin.tokenFile !== undefined) config.admin.tokenFile = resolve(baseDir, config.admin.tokenFile);
  // `what` names the file in the error: certificates and keys are PEM files, a relay password is not.
  const files: Array<{ path: KeyPath; value: string; set: (abs: string) => void; what?: string }> = [];
  const tls = config.tls;
  if (tls.cert !== undefined) files.push({ path: ["tls", "cert"], value: tls.cert, set: (a) => (tls.cert = a) });
  if (tls.key !== undefined) files.push({ path: ["tls", "key"], value: tls.key, set: (a) => (tls.key = a) });
  tls.sni.forEach((entry, i) => {
    files.push({ path: ["tls", "sni", i, "cert"], value: entry.cert, set: (a) => (entry.cert = a) });
    files.push({ path: ["tls", "sni", i, "key"], value: entry.key, set: (a) => (entry.key = a) });
  });
  const acme = tls.acme;
  if (acme?.ca !== undefined) files.push({ path: ["tls", "acme", "ca"], value: acme.ca, set: (a) => (acme.ca = a) });
  config.listeners.forEach((l, i) => {
    const lt = l.tls;
    if (lt === undefined) return;
    files.push({ path: ["listeners", i, "tls", "cert"], value: lt.cert, set: (a) => (lt.cert = a) });
    files.push({ path: ["listeners", i, "tls", "key"], value: lt.key, set: (a) => (lt.key = a) });
  });
  config.transport.forEach((t, i) => {
    const auth = t.auth;
    if (auth === undefined) return;
    files.push({ path: ["transport", i, "auth", "passwordFile"], value: auth.passwordFile, set: (a) => (auth.passwordFile = a), what: "password file" });
  });
  config.plugins.forEach((plugin, i) => {
    files.push({ path: ["plugins", i, "path"], value: plugin.path, set: (a) => (plugin.path = a), what: "plugin module" });
  });
  for (const f of files) {
    const abs = resolve(baseDir, f.value);
    f.set(abs);
    if (options.checkFiles === false) continue;
    const problem = fileProblem(abs);
    if (problem) add(f.path, f.value, `expected a readable ${f.what ?? "PEM file"}: ${abs} ${problem}`);
  }

  if (issues.length > 0) throw sorted(source, issues);
  origins.set(config, { source, locate: options.locate });
  return config;
}

/** Where a parsed configuration came from, for problems found after parsing (at start-up). */
interface ConfigOrigin {
  readonly source: string;
  readonly locate?: ParseOptions["locate"];
}
const origins = new WeakMap<Config, ConfigOrigin>();

/**
 * A problem with a value of an already-parsed configuration, found later
 * (a certificate whose key does not match, a data directory that cannot be
 * created, an unknown user): the same message as a parse error, with the
 * file, line and key.
 */
export function configIssue(config: Config, path: KeyPath, value: unknown, allowed: string, got?: string): ConfigIssue {
  const origin = origins.get(config) ?? { source: "configuration" };
  return makeIssue(origin.source, formatPath(path), value, allowed, origin.locate?.(path), got);
}

/** A ConfigError for problems found at start-up (see configIssue). */
export function startupConfigError(config: Config, issues: readonly ConfigIssue[]): ConfigError {
  return sorted(origins.get(config)?.source ?? "configuration", [...issues]);
}

/** The embedded default configuration, parsed. */
export function defaultConfig(): Config {
  return parseConfigText(EMBEDDED_DEFAULT_YAML, EMBEDDED_SOURCE);
}

// ---------------------------------------------------------------------------

function sorted(source: string, issues: ConfigIssue[]): ConfigError {
  const order = issues.map((issue, i) => ({ issue, i }));
  order.sort((a, b) => (a.issue.line ?? Infinity) - (b.issue.line ?? Infinity) || a.i - b.i);
  return new ConfigError(source, order.map((o) => o.issue));
}

function fileProblem(abs: string): string | undefined {
  try {
    if (!statSync(abs).isFile()) return "is not a file";
    accessSync(abs, constants.R_OK);
    return undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return "does not exist";
    if (code === "EACCES") return "is not readable (permission denied)";
    return `cannot be read (${code ?? (err as Error).message})`;
  }
}

/** ["listeners", 0, "role"] → "listeners[0].role". */
export function formatPath(path: KeyPath): string {
  let out = "";
  for (const p of path) out += typeof p === "number" ? `[${p}]` : out === "" ? p : `.${p}`;
  return out;
}

function valueAt(root: unknown, path: KeyPath): unknown {
  let v = root;
  for (const p of path) {
    if (v === null || typeof v !== "object") return undefined;
    v = (v as Record<string | number, unknown>)[p];
  }
  return v;
}

function hasPath(root: unknown, path: KeyPath): boolean {
  let v = root;
  for (const p of path) {
    if (v === null || typeof v !== "object" || !Object.hasOwn(v, p)) return false;
    v = (v as Record<string | number, unknown>)[p];
  }
  return true;
}

const TYPE_WORDS: Record<string, string> = {
  number: "a number",
  int: "a whole number",
  string: "a string",
  boolean: "true or false",
  array: "a list",
  object: "a mapping (key: value)",
};

function allowedFor(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case "custom":
      return issue.message;
    case "invalid_type":
      return `expected ${TYPE_WORDS[issue.expected] ?? issue.expected}`;
    case "invalid_value":
      return `expected one of ${issue.values.map((v) => JSON.stringify(v)).join(", ")}`;
    case "too_small": {
      const op = issue.inclusive === false ? ">" : ">=";
      if (issue.origin === "array") return `expected at least ${issue.minimum} item${Number(issue.minimum) === 1 ? "" : "s"}`;
      if (issue.origin === "string") return "expected a non-empty string";
      return `expected a number ${op} ${issue.minimum}`;
    }
    case "too_big": {
      const op = issue.inclusive === false ? "<" : "<=";
      if (issue.origin === "array") return `expected at most ${issue.maximum} items`;
      if (issue.origin === "string") return `expected at most ${issue.maximum} characters`;
      return `expected a number ${op} ${issue.maximum}`;
    }
    default:
      return issue.message;
  }
}

// --- unknown keys: the known keys at a path, and the closest one -----------

interface SchemaDef {
  type: string;
  shape?: Record<string, { _zod: { def: SchemaDef } }>;
  element?: { _zod: { def: SchemaDef } };
  innerType?: { _zod: { def: SchemaDef } };
  in?: { _zod: { def: SchemaDef } };
}

function unwrap(def: SchemaDef): SchemaDef {
  let d = def;
  for (let i = 0; i < 20; i++) {
    if (d.innerType) d = d.innerType._zod.def;
    else if (d.type === "pipe" && d.in) d = d.in._zod.def;
    else break;
  }
  return d;
}

function knownKeysAt(path: KeyPath): string[] {
  let def = unwrap((configSchema as unknown as { _zod: { def: SchemaDef } })._zod.def);
  for (const p of path) {
    if (typeof p === "number" && def.element) def = unwrap(def.element._zod.def);
    else if (typeof p === "string" && def.shape?.[p]) def = unwrap(def.shape[p]._zod.def);
    else return [];
  }
  return def.shape ? Object.keys(def.shape) : [];
}

/** Levenshtein distance. */
export function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0];
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j];
      prev[j] = Math.min(prev[j] + 1, prev[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length];
}

/** The known key closest to `key` ("limts" → "limits", "message_size" → "messageSize"), if close enough. */
export function suggest(key: string, known: readonly string[]): string | undefined {
  const squash = (s: string) => s.toLowerCase().replace(/[-_]/g, "");
  const same = known.find((k) => squash(k) === squash(key));
  if (same) return same;
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const k of known) {
    const d = editDistance(key.toLowerCase(), k.toLowerCase());
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  return bestDistance <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined;
}

// --- positions in the YAML text ---------------------------------------------

/** Offset of the deepest node found along `path` (the key, for a mapping entry). */
function locateInDocument(root: unknown, path: KeyPath): number | undefined {
  let node = root as YamlNode | null | undefined;
  let offset = node?.range?.[0];
  for (const p of path) {
    if (isMap(node)) {
      const pair = node.items.find((it) => isScalar(it.key) && String(it.key.value) === String(p));
      if (!pair) break;
      const keyNode = pair.key as YamlNode;
      offset = keyNode.range?.[0] ?? offset;
      node = pair.value as YamlNode | null;
    } else if (isSeq(node) && typeof p === "number") {
      const item = node.items[p] as YamlNode | undefined;
      if (!item) break;
      offset = item.range?.[0] ?? offset;
      node = item;
    } else break;
  }
  return offset;
}

export type { Config } from "./schema.ts";
