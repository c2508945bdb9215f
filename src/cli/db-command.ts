/**
 * `petrel db migrate|status [--config FILE]`: the PostgreSQL schema of a cluster
 * (`storage.kind: postgres`). `migrate` applies what this Petrel's schema adds — what every node
 * does at start unless `storage.migrate` is false; `status` says where the database is.
 *
 * Exit statuses: 0 done (status: the schema is current); 1 the database failed or is not current;
 * 64 usage error; 78 the configuration has errors or does not use PostgreSQL.
 */
import { parseArgs } from "node:util";
import { ConfigError } from "../config/config-error.ts";
import { loadConfig } from "../config/load.ts";
import { SchemaTooNew, migrate, schemaState } from "../storage/postgres/migrations.ts";
import { postgresSettings } from "../storage/postgres/node-name.ts";
import { describePostgres, openPostgresPool } from "../storage/postgres/postgres-pool.ts";
import type { Io } from "./queue-commands.ts";

export const DB_EXIT = { ok: 0, failed: 1, usage: 64, config: 78 } as const;

const USAGE = "Usage: petrel db migrate|status [--config FILE]\n";

export async function dbCommand(argv: readonly string[], io: Io): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], allowPositionals: true, options: { config: { type: "string", short: "c" }, help: { type: "boolean", short: "h" } }, strict: true });
  } catch (err) {
    io.stderr.write(`petrel db: ${(err as Error).message}\n\n${USAGE}`);
    return DB_EXIT.usage;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    io.stdout.write(USAGE);
    return DB_EXIT.ok;
  }
  const action = positionals[0];
  if ((action !== "migrate" && action !== "status") || positionals.length > 1) {
    io.stderr.write(`petrel db: expected migrate or status\n\n${USAGE}`);
    return DB_EXIT.usage;
  }
  let storage;
  try {
    storage = (await loadConfig(values.config, { checkFiles: false })).storage;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.stderr.write(`petrel db: the configuration has errors.\n${err.message}\n`);
    return DB_EXIT.config;
  }
  if (storage.kind !== "postgres") {
    io.stderr.write("petrel db: this configuration keeps its data on the filesystem (storage.kind is not postgres): there is no database to migrate\n");
    return DB_EXIT.config;
  }
  const where = describePostgres(storage.url);
  const pool = openPostgresPool(postgresSettings(storage), (message) => io.stderr.write(`petrel db: ${message}\n`));
  try {
    if (action === "migrate") {
      const applied = await migrate(pool);
      io.stdout.write(applied.length === 0 ? `${where}: the schema is current\n` : `${where}: applied schema version(s) ${applied.join(", ")}\n`);
      return DB_EXIT.ok;
    }
    const state = await schemaState(pool);
    const verdict = state.current === state.latest ? "current" : state.current > state.latest ? "newer than this Petrel: upgrade it" : "behind: run petrel db migrate";
    io.stdout.write(`${where}: schema version ${state.current} (this Petrel: ${state.latest}) — ${verdict}\n`);
    return state.current === state.latest ? DB_EXIT.ok : DB_EXIT.failed;
  } catch (err) {
    io.stderr.write(err instanceof SchemaTooNew ? `petrel db: ${err.message}\n` : `petrel db: ${where}: ${(err as Error).message}\n`);
    return DB_EXIT.failed;
  } finally {
    await pool.end();
  }
}
