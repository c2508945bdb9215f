/**
 * `petrel reload [--config FILE]`: ask the running server (through
 * <dataDir>/control.sock) to read its configuration file again — as SIGHUP
 * does — and print what it applied and what waits for a restart, or the
 * errors that made it keep the configuration it had.
 *
 * Exit statuses: 0 reloaded; 1 the server refused or did not answer; 3 not
 * running; 64 usage error; 78 the configuration has errors (as the server
 * found them: nothing changed).
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { request } from "../admin/control-socket.ts";
import type { ReloadReport } from "../config/reload-plan.ts";
import { ConfigError } from "../config/config-error.ts";
import { loadConfig } from "../config/load.ts";
import type { Io } from "./queue-commands.ts";

export const RELOAD_EXIT = { reloaded: 0, failed: 1, notRunning: 3, usage: 64, config: 78 } as const;

const USAGE = "Usage: petrel reload [--config FILE]\n";

export async function reloadCommand(argv: readonly string[], io: Io): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args: [...argv], options: { config: { type: "string", short: "c" }, help: { type: "boolean", short: "h" } }, strict: true }));
  } catch (err) {
    io.stderr.write(`petrel reload: ${(err as Error).message}\n\n${USAGE}`);
    return RELOAD_EXIT.usage;
  }
  if (values.help) {
    io.stdout.write(USAGE);
    return RELOAD_EXIT.reloaded;
  }
  let dataDir: string;
  try {
    // Only to find the running server: it reads (and judges) the file itself.
    dataDir = (await loadConfig(values.config, { checkFiles: false })).dataDir;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.stderr.write(`petrel reload: the configuration has errors; the server keeps running with the one it had.\n${err.message}\n`);
    return RELOAD_EXIT.config;
  }
  const socket = join(dataDir, "control.sock");
  let answer;
  try {
    answer = await request(socket, { op: "reload" }, 60_000);
  } catch (err) {
    io.stderr.write(`petrel reload: ${(err as Error).message}\n`);
    return RELOAD_EXIT.failed;
  }
  if (answer === null) {
    io.stderr.write(`petrel reload: Petrel is not running (nothing answers on ${socket})\n`);
    return RELOAD_EXIT.notRunning;
  }
  if (!answer.ok) {
    io.stderr.write(`petrel reload: ${answer.error}\n`);
    return answer.error.startsWith("the configuration has errors") ? RELOAD_EXIT.config : RELOAD_EXIT.failed;
  }
  const report = answer.result as ReloadReport;
  io.stdout.write(`reloaded; applied: ${report.applied.join(", ")}\n`);
  if (report.needsRestart.length > 0) io.stdout.write(`changed, but kept until a restart: ${report.needsRestart.join(", ")}\n`);
  return RELOAD_EXIT.reloaded;
}
