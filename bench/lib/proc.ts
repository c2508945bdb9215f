/**
 * Child processes for the benchmark: spawn (optionally pinned to a CPU with
 * taskset), wait for a "ready" line, read memory from /proc, stop by pid.
 * Every wait is bounded in time.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";

export const NODE = process.execPath;

let tasksetChecked: boolean | null = null;
/** taskset is in util-linux; without it nothing is pinned. */
export function hasTaskset(): boolean {
  tasksetChecked ??= spawnSync("taskset", ["-c", "0", "true"]).status === 0;
  return tasksetChecked;
}

/** `cmd args` as argv, prefixed with `taskset -c CPU` when pinning. */
export function pinned(cpu: string | null, cmd: string, args: readonly string[]): [string, string[]] {
  if (cpu === null || !hasTaskset()) return [cmd, [...args]];
  return ["taskset", ["-c", cpu, cmd, ...args]];
}

export function which(cmd: string): string | null {
  const r = spawnSync("sh", ["-c", `command -v ${cmd}`], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : null;
}

export interface Started {
  readonly child: ChildProcess;
  /** The first stdout line that parsed as JSON with `ready: true`. */
  readonly ready: Record<string, unknown>;
  readonly stderr: () => string;
}

/** Spawn a child that prints a JSON line with `"ready": true` once it listens. */
export async function spawnReady(cmd: string, args: readonly string[], timeoutMs: number, env?: NodeJS.ProcessEnv): Promise<Started> {
  const child = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"], env: env ?? process.env });
  let err = "";
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (d: string) => {
    err = (err + d).slice(-8000);
  });
  let out = "";
  child.stdout!.setEncoding("utf8");
  const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${cmd} ${args.join(" ")}: not ready after ${timeoutMs} ms\n${err}`));
    }, timeoutMs);
    child.stdout!.on("data", (d: string) => {
      out += d;
      let nl: number;
      while ((nl = out.indexOf("\n")) >= 0) {
        const line = out.slice(0, nl);
        out = out.slice(nl + 1);
        try {
          const msg = JSON.parse(line) as Record<string, unknown>;
          if (msg.ready === true) {
            clearTimeout(timer);
            resolve(msg);
          }
        } catch {
          // not a JSON line
        }
      }
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${cmd} ${args.join(" ")} exited (${code ?? signal}) before it was ready\n${err}`));
    });
  });
  return { child, ready, stderr: () => err };
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the process has exited. */
export async function stopChild(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const t = await Promise.race([exited.then(() => "ok" as const), sleep(graceMs, "timeout" as const)]);
  if (t === "timeout") {
    child.kill("SIGKILL");
    await Promise.race([exited, sleep(2000)]);
  }
}

function statusField(pid: number, field: string): number {
  const text = readFileSync(`/proc/${pid}/status`, "utf8");
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text);
  if (!m) throw new Error(`no ${field} for pid ${pid}`);
  return Number(m[1]) * 1024;
}

/** Resident set size in bytes. */
export function rssOf(pid: number): number {
  return statusField(pid, "VmRSS");
}

/** Peak resident set size in bytes since start or the last resetPeak(). */
export function peakRssOf(pid: number): number {
  return statusField(pid, "VmHWM");
}

/** Reset VmHWM to the current RSS (Linux ≥ 4.0: write 5 to clear_refs). */
export function resetPeak(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, "5");
    return true;
  } catch {
    return false;
  }
}

/** The pid of the real server when `child` is `taskset … cmd` (taskset execs, so it is the same pid). */
export function pidOf(child: ChildProcess): number {
  if (child.pid === undefined) throw new Error("child has no pid");
  return child.pid;
}

/** CPU seconds (user, system) used so far by each thread of `pid`, summed by thread name. */
export function threadCpu(pid: number): Map<string, { user: number; system: number }> {
  const hz = 100; // USER_HZ: clock ticks per second on Linux
  const out = new Map<string, { user: number; system: number }>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
    } catch {
      continue; // the thread ended
    }
    // "tid (comm) state ..." — comm may hold spaces, so split after the last ")"
    const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const user = Number(fields[11]) / hz;
    const system = Number(fields[12]) / hz;
    const key = tid === String(pid) ? `${name} (main thread)` : name;
    const e = out.get(key) ?? { user: 0, system: 0 };
    out.set(key, { user: e.user + user, system: e.system + system });
  }
  return out;
}
