/**
 * The process's logger: pino, one JSON object per line on stdout — what log
 * collectors (journald, Loki, jq) read — or, for a person at a terminal, one
 * readable line per event through pino-pretty. `auto` picks by whether
 * stdout is a terminal, as ls and git pick colour.
 *
 * Secrets have no business in a log line; as a second line of defence,
 * fields named like one are replaced by "[redacted]" wherever a caller puts
 * them (a whole `err` object with a request inside, say).
 */
import pino, { type DestinationStream, type Logger } from "pino";
import pretty from "pino-pretty";
import type { Config } from "../config/schema.ts";

export type LogFormat = Config["log"]["format"];

const SECRET_FIELDS = ["password", "pass", "token", "secret", "authorization", "cookie"];
/** pino's redact paths: the field at the top and one or two levels down (`{ auth: { password } }`, `{ err: { config: { auth: { pass } } } }`). */
export const REDACTED_PATHS = SECRET_FIELDS.flatMap((f) => [f, `*.${f}`, `*.*.${f}`]);

export interface LoggerOutput {
  /** Where lines go (default: stdout). */
  readonly stream?: NodeJS.WritableStream & { isTTY?: boolean; fd?: number };
}

/** json or pretty, for `auto` by whether the output is a terminal. */
export function chooseLogFormat(format: LogFormat, isTTY: boolean | undefined): "json" | "pretty" {
  return format === "auto" ? (isTTY ? "pretty" : "json") : format;
}

export function createLogger(settings: Config["log"], output: LoggerOutput = {}): Logger {
  const stream = output.stream ?? process.stdout;
  const options = {
    level: settings.level,
    base: { pid: process.pid },
    redact: { paths: REDACTED_PATHS, censor: "[redacted]" },
  };
  if (chooseLogFormat(settings.format, stream.isTTY) === "json") {
    return stream === process.stdout ? pino(options) : pino(options, stream as DestinationStream);
  }
  // One line per event, local time, the level in words; colour only on a terminal.
  const readable = pretty({
    destination: stream,
    colorize: stream.isTTY === true,
    singleLine: true,
    translateTime: "SYS:yyyy-mm-dd HH:MM:ss.l",
    ignore: "pid,hostname",
    sync: true,
  });
  return pino(options, readable);
}
