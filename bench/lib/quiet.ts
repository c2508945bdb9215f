/**
 * A fair measurement needs a quiet machine: no other server still working
 * through a backlog, no other program on the cores. This reads the machine's
 * idle CPU (/proc/stat) and the CPU a server's processes use (/proc/PID/stat,
 * its children included: Postfix is a master and its daemons), and waits —
 * bounded in time — for both to drop before a measurement. What it saw is
 * recorded with the measurement, and a measurement taken on a busy machine
 * is flagged.
 */
import { readdirSync, readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";

const HZ = 100; // USER_HZ: clock ticks per second on Linux

/** Below this share of all CPUs idle, the machine is busy (2 cores: about one fifth of a core in use). */
export const QUIET_IDLE = 0.9;
/** A server using less than this share of one core is idle (timers, housekeeping). */
const SERVER_IDLE = 0.03;

interface CpuCounters {
  readonly idle: number;
  readonly total: number;
}

function machineCounters(): CpuCounters {
  const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0];
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest is inside user)
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return { idle: f[3] + f[4], total };
}

function statFields(pid: number): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // "pid (comm) state ppid ..." — comm may hold spaces
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return null;
  }
}

/** CPU seconds of `pid` and its live descendants, with what their exited children used (cutime, cstime). */
export function treeCpuSeconds(pid: number): number {
  const children = new Map<number, number[]>();
  for (const name of readdirSync("/proc")) {
    const p = Number(name);
    if (!Number.isInteger(p) || p === pid) continue;
    const f = statFields(p);
    if (f === null) continue;
    const ppid = Number(f[1]);
    const list = children.get(ppid);
    if (list) list.push(p);
    else children.set(ppid, [p]);
  }
  let ticks = 0;
  const stack = [pid];
  for (let guard = 0; stack.length > 0 && guard < 10_000; guard++) {
    const p = stack.pop()!;
    const f = statFields(p);
    if (f === null) continue;
    // fields after comm: state(0) ppid(1) … utime(11) stime(12) cutime(13) cstime(14)
    ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
    stack.push(...(children.get(p) ?? []));
  }
  return ticks / HZ;
}

/** What the machine looked like just before a measurement. */
export interface Quiet {
  /** Share of all CPUs idle over the last window (0–1). */
  readonly idle: number;
  /** 1-minute load average. */
  readonly load1: number;
  /** Share of one core the servers used in the last window. */
  readonly serverCpu: number;
  /** How long it was waited for. */
  readonly waitedMs: number;
  /** Idle enough: machine idle ≥ QUIET_IDLE and every server idle. */
  readonly quiet: boolean;
}

function load1(): number {
  return Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0]);
}

/**
 * Watch one window of `windowMs`: the machine's idle share and the share of
 * one core the `pids` (and their children) used.
 */
async function window(pids: readonly number[], windowMs: number): Promise<{ idle: number; serverCpu: number }> {
  const m0 = machineCounters();
  const s0 = pids.reduce((a, p) => a + treeCpuSeconds(p), 0);
  const t0 = performance.now();
  await sleep(windowMs);
  const m1 = machineCounters();
  const s1 = pids.reduce((a, p) => a + treeCpuSeconds(p), 0);
  const secs = (performance.now() - t0) / 1000;
  const total = m1.total - m0.total;
  return { idle: total > 0 ? (m1.idle - m0.idle) / total : 1, serverCpu: secs > 0 ? (s1 - s0) / secs : 0 };
}

/**
 * Wait until the `pids` are idle and the machine is quiet, for at most
 * `maxWaitMs`; one window of `windowMs` is always watched, and its figures
 * are what is reported.
 */
export async function waitQuiet(pids: readonly number[], maxWaitMs: number, windowMs = 1000): Promise<Quiet> {
  const t0 = Date.now();
  for (;;) {
    const w = await window(pids, windowMs);
    const quiet = w.idle >= QUIET_IDLE && w.serverCpu < SERVER_IDLE;
    const waitedMs = Date.now() - t0;
    if (quiet || waitedMs + windowMs > maxWaitMs) return { ...w, load1: load1(), waitedMs, quiet };
  }
}

/** Wait (bounded) until the server's own processes are idle: its backlog is worked off. */
export async function waitServerIdle(pids: readonly number[], maxWaitMs: number, windowMs = 500): Promise<{ serverCpu: number; waitedMs: number; idle: boolean }> {
  const t0 = Date.now();
  for (;;) {
    const w = await window(pids, windowMs);
    const waitedMs = Date.now() - t0;
    const idle = w.serverCpu < SERVER_IDLE;
    if (idle || waitedMs + windowMs > maxWaitMs) return { serverCpu: w.serverCpu, waitedMs, idle };
  }
}
