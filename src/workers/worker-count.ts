import { availableParallelism } from "node:os";
import type { Config } from "../config/schema.ts";
import { MAX_AUTO_WORKERS } from "../config/defaults.ts";

/**
 * How many SMTP workers `workers:` asks for. "auto" leaves one CPU to the main process — it
 * stores every worker's messages, runs the queue and the deliveries — and gives the others to
 * workers, at most MAX_AUTO_WORKERS; with two CPUs or fewer that leaves none, and one process
 * serves everything: measured on two cores, a second worker gained nothing and almost doubled the
 * CPU a message costs (each message crosses to the main process), README "Every core".
 */
export function workerCount(workers: Config["workers"], cpus: number = availableParallelism()): number {
  if (workers !== "auto") return workers;
  return cpus <= 2 ? 1 : Math.min(cpus - 1, MAX_AUTO_WORKERS);
}
