/**
 * The database of `storage.kind: postgres`, ready for the stores: the pool opened, the schema
 * migrated (or, with `migrate: false`, checked to be exactly this Petrel's — an older schema is
 * the operator's to migrate, a newer one is refused either way).
 */
import { MIGRATIONS, SchemaTooNew, migrate, schemaState } from "./migrations.ts";
import { postgresSettings } from "./node-name.ts";
import { describePostgres, openPostgresPool, type PostgresPool } from "./postgres-pool.ts";
import type { PostgresStorageConfig } from "../../config/schema.ts";

export interface DatabaseLog {
  info(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export async function openDatabase(storage: PostgresStorageConfig, log: DatabaseLog): Promise<PostgresPool> {
  const pool = openPostgresPool(postgresSettings(storage), (message) => log.error({}, message));
  const where = describePostgres(storage.url);
  try {
    if (storage.migrate) {
      const applied = await migrate(pool);
      if (applied.length > 0) log.info({ database: where, applied }, "database schema migrated");
    } else {
      const state = await schemaState(pool);
      if (state.current > state.latest) throw new SchemaTooNew(`the database schema is version ${state.current}, newer than this Petrel knows (${state.latest}): upgrade this node`);
      if (state.current < state.latest) throw new Error(`the database schema is version ${state.current}, this Petrel needs ${MIGRATIONS.length}: run petrel db migrate (storage.migrate is false)`);
    }
    return pool;
  } catch (err) {
    await pool.end().catch(() => {});
    if (err instanceof SchemaTooNew) throw err;
    throw new Error(`PostgreSQL ${where}: ${(err as Error).message}`, { cause: err });
  }
}
