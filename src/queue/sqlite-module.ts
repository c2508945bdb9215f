import { createRequire } from "node:module";
import type * as Sqlite from "node:sqlite";

/**
 * `node:sqlite`, loaded without the one warning some Node 24 releases print
 * when it loads ("ExperimentalWarning: SQLite is an experimental feature"):
 * it would land on stderr of every `petrel queue …` and in a log a person
 * reads. Exactly that warning is dropped, and only while the module loads;
 * every other warning, then and later, is emitted as usual.
 */
export function withoutSqliteWarning<T>(load: () => T): T {
  const emit = process.emitWarning;
  process.emitWarning = function (this: unknown, warning: string | Error, ...rest: unknown[]): void {
    const first = rest[0];
    const type = typeof first === "string" ? first : (first as { type?: string } | undefined)?.type ?? (warning instanceof Error ? warning.name : undefined);
    const text = typeof warning === "string" ? warning : warning.message;
    if (type === "ExperimentalWarning" && /\bSQLite\b/.test(text)) return;
    return (emit as (...args: unknown[]) => void).call(process, warning, ...rest);
  } as typeof process.emitWarning;
  try {
    return load();
  } finally {
    process.emitWarning = emit;
  }
}

const sqlite = withoutSqliteWarning(() => createRequire(import.meta.url)("node:sqlite") as typeof Sqlite);
export const DatabaseSync = sqlite.DatabaseSync;
export type DatabaseSync = Sqlite.DatabaseSync;
export type StatementSync = Sqlite.StatementSync;
