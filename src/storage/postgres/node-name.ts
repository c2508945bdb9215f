import { hostname } from "node:os";
import type { PostgresStorageConfig } from "../../config/schema.ts";
import type { PostgresSettings } from "./postgres-pool.ts";

/** This node's name in the cluster: `storage.node`, or the host's name (nodes sharing a host must be named). */
export function nodeName(storage: PostgresStorageConfig): string {
  return storage.node ?? hostname();
}

export function postgresSettings(storage: PostgresStorageConfig): PostgresSettings {
  return { url: storage.url, passwordFile: storage.passwordFile, poolSize: storage.poolSize, node: nodeName(storage) };
}
