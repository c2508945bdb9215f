/**
 * A peer daemon a test starts in the foreground (Dovecot, rspamd, OpenDKIM,
 * a libmilter filter): its output kept for error messages, whether it has
 * exited, and a stop that signals only the pid started here.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { connect } from "node:net";

export interface Daemon {
  readonly child: ChildProcess;
  /** stdout and stderr so far. */
  output(): string;
  readonly exited: Promise<void>;
  /** It exited (by itself or stopped). */
  readonly dead: boolean;
  /** `signal` (SIGTERM by default), then SIGKILL after 10 s; resolves once it has exited. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export function spawnDaemon(command: string, args: readonly string[], env?: NodeJS.ProcessEnv): Daemon {
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], env: env ? { ...process.env, ...env } : process.env });
  let output = "";
  child.stdout!.on("data", (d) => (output += d));
  child.stderr!.on("data", (d) => (output += d));
  let dead = false;
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once("exit", () => resolve());
  }).then(() => {
    dead = true;
  });
  return {
    child,
    output: () => output,
    exited,
    get dead() {
      return dead;
    },
    async stop(signal: NodeJS.Signals = "SIGTERM") {
      if (dead) return;
      child.kill(signal);
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Something accepts TCP connections on 127.0.0.1:`port`. */
export function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: "127.0.0.1", port });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}
