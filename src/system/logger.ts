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
import { createRequire } from "node:module";
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

/**
 * Child loggers copy their level when they are made; a reload that changes
 * `log.level` reaches the long-lived ones (the queue's, each check's)
 * through this list (weak: a connection's child goes when it does).
 */
const children = new WeakMap<Logger, { refs: Set<WeakRef<Logger>>; pruneAt: number }>();

/** Change the level of a logger made by createLogger and of every child it has (a reload of `log.level`). */
export function setLogLevel(log: Logger, level: Config["log"]["level"]): void {
  log.level = level;
  const tracked = children.get(log);
  if (!tracked) return;
  for (const ref of tracked.refs) {
    const child = ref.deref();
    if (child) child.level = level;
    else tracked.refs.delete(ref);
  }
}

export function createLogger(settings: Config["log"], output: LoggerOutput = {}): Logger {
  const stream = output.stream ?? process.stdout;
  const tracked = { refs: new Set<WeakRef<Logger>>(), pruneAt: 1024 };
  const options = {
    level: settings.level,
    base: { pid: process.pid },
    redact: { paths: REDACTED_PATHS, censor: "[redacted]" },
    onChild: (child: Logger) => {
      tracked.refs.add(new WeakRef(child));
      if (tracked.refs.size < tracked.pruneAt) return;
      for (const ref of tracked.refs) if (!ref.deref()) tracked.refs.delete(ref);
      tracked.pruneAt = Math.max(1024, tracked.refs.size * 2);
    },
  };
  const made = (log: Logger) => {
    children.set(log, tracked);
    return log;
  };
  if (chooseLogFormat(settings.format, stream.isTTY) === "json") {
    return made(stream === process.stdout ? pino(options) : pino(options, stream as DestinationStream));
  }
  // One line per event, local time, the level in words; colour only on a terminal.
  // pino-pretty is loaded only here: a server logging JSON never pays for it.
  const pretty = createRequire(import.meta.url)("pino-pretty") as typeof import("pino-pretty").build;
  const readable = pretty({
    destination: stream,
    colorize: stream.isTTY === true,
    singleLine: true,
    translateTime: "SYS:yyyy-mm-dd HH:MM:ss.l",
    ignore: "pid,hostname",
    sync: true,
  });
  return made(pino(options, readable));
}
