/**
 * `petrel status [--config FILE] [--json]`: ask the running server (through
 * <dataDir>/control.sock) for its version, uptime, listeners, queue and
 * certificates.
 *
 * Exit statuses, as LSB init scripts' status: 0 running; 3 not running
 * (nothing answers on the control socket); 1 the server answered with an
 * error or not in time; 78 the configuration is wrong; 64 usage error.
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { request } from "../admin/control-socket.ts";
import { formatStatus, type ServerStatus } from "../admin/server-status.ts";
import { ConfigError } from "../config/config-error.ts";
import { loadConfig } from "../config/load.ts";
import type { Io } from "./queue-commands.ts";

export const STATUS_EXIT = { running: 0, failed: 1, notRunning: 3, usage: 64, config: 78 } as const;

const USAGE = "Usage: petrel status [--config FILE] [--json]\n";

export async function statusCommand(argv: readonly string[], io: Io): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args: [...argv], options: { config: { type: "string", short: "c" }, json: { type: "boolean" }, help: { type: "boolean", short: "h" } }, strict: true }));
  } catch (err) {
    io.stderr.write(`petrel status: ${(err as Error).message}\n\n${USAGE}`);
    return STATUS_EXIT.usage;
  }
  if (values.help) {
    io.stdout.write(USAGE);
    return STATUS_EXIT.running;
  }
  let dataDir: string;
  try {
    dataDir = (await loadConfig(values.config, { checkFiles: false })).dataDir;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.stderr.write(`petrel status: the configuration has errors.\n${err.message}\n`);
    return STATUS_EXIT.config;
  }
  const socket = join(dataDir, "control.sock");
  let answer;
  try {
    answer = await request(socket, { op: "status" }, 10_000);
  } catch (err) {
    io.stderr.write(`petrel status: ${(err as Error).message}\n`);
    return STATUS_EXIT.failed;
  }
  if (answer === null) {
    if (values.json) io.stdout.write(JSON.stringify({ running: false, dataDir }) + "\n");
    io.stderr.write(`Petrel is not running: nothing answers on ${socket}. Start it with: petrel serve${values.config ? ` --config ${values.config}` : ""}\n`);
    return STATUS_EXIT.notRunning;
  }
  if (!answer.ok) {
    io.stderr.write(`petrel status: the server answered: ${answer.error}\n`);
    return STATUS_EXIT.failed;
  }
  const status = answer.result as ServerStatus;
  io.stdout.write(values.json ? JSON.stringify({ running: true, ...status }, null, 2) + "\n" : formatStatus(status));
  return STATUS_EXIT.running;
}
