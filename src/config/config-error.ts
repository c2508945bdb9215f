/**
 * The error a person sees when the configuration file is wrong. Every problem
 * names the key (as a dotted path such as `limits.messageSize` or
 * `listeners[1].role`), the value that was found and what is allowed instead.
 * One ConfigError carries every problem found in the file, one line each; the
 * `path`, `value` and `allowed` fields describe the first one.
 */

/** One problem in the configuration file. */
export interface ConfigIssue {
  /** Dotted key path, e.g. "limits.messageSize", "listeners[0].port"; "" for the whole file. */
  readonly path: string;
  /** The offending value as found in the file (secrets are redacted). */
  readonly value: unknown;
  /** What would have been accepted, e.g. `expected one of "mx", "submission", "submissions"`. */
  readonly allowed: string;
  /** Where the value sits in the file, when known (1-based). */
  readonly line?: number;
  readonly column?: number;
  /** The complete line as shown to a person. */
  readonly message: string;
}

export class ConfigError extends Error {
  override readonly name = "ConfigError";
  /** The config source: a file path, or "<embedded default>". */
  readonly source: string;
  /** Path of the first issue. */
  readonly path: string;
  /** Value of the first issue. */
  readonly value: unknown;
  /** What is allowed, for the first issue. */
  readonly allowed: string;
  /** Every issue found, in file order as far as known. */
  readonly issues: readonly ConfigIssue[];

  constructor(source: string, issues: readonly ConfigIssue[]) {
    if (issues.length === 0) throw new TypeError("ConfigError needs at least one issue");
    super(issues.map((i) => i.message).join("\n"));
    this.source = source;
    this.issues = issues;
    const first = issues[0];
    this.path = first.path;
    this.value = first.value;
    this.allowed = first.allowed;
  }
}

/** Show a value the way a person typed it: strings quoted, objects as JSON. */
export function showValue(value: unknown): string {
  if (value === undefined) return "nothing";
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number" || typeof value === "boolean" || value === null) return String(value);
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  return String(value);
}

/**
 * Build one issue and its message:
 *   `petrel.yaml:12:16: limits.messageSize: got "abc"; expected a size such as …`
 * `got` overrides the "got <value>" part (e.g. for unknown keys, or redacted secrets).
 */
export function makeIssue(
  source: string,
  path: string,
  value: unknown,
  allowed: string,
  where?: { line: number; column: number },
  got?: string,
): ConfigIssue {
  const loc = where ? `${source}:${where.line}:${where.column}` : source;
  const what = got ?? `got ${showValue(value)}`;
  const message = `${loc}: ${path === "" ? "" : `${path}: `}${what}${allowed ? `; ${allowed}` : ""}`;
  return { path, value, allowed, line: where?.line, column: where?.column, message };
}
