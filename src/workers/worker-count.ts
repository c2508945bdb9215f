import { availableParallelism } from "node:os";
import type { Config } from "../config/schema.ts";
import { MAX_AUTO_WORKERS } from "../config/defaults.ts";

/** How many SMTP workers `workers:` asks for: "auto" is one per CPU the process may use, at most MAX_AUTO_WORKERS. */
export function workerCount(workers: Config["workers"], cpus: number = availableParallelism()): number {
  return workers === "auto" ? Math.max(1, Math.min(cpus, MAX_AUTO_WORKERS)) : workers;
}
