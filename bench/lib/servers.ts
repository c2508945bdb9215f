/**
 * The servers under test: Petrel in three modes and its peers, each on its
 * own loopback address, each started as its own process (pinned to the
 * server CPU when pinning is on) so its memory can be read from /proc and it
 * does not share an event loop or a core with the load generator.
 */
import { existsSync } from "node:fs";
import * as net from "node:net";
import { join } from "node:path";
import { spawn } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import { NODE, pidOf, pinned, spawnReady, stopChild, which } from "./proc.ts";
import { NODE_FLAGS } from "../../src/system/node-flags.ts";
import { postfixAvailable, startPostfix } from "./postfix-peer.ts";

export const BENCH_ROOT = join(import.meta.dirname, "..");

/**
 * Where Petrel's bench entry runs from: the working tree by default, or a
 * snapshot of a committed revision (run.ts --petrel-rev) that holds src/ and
 * a copy of bench/petrel-entry.ts and bench/discard-spool.ts.
 */
let petrelBench = BENCH_ROOT;
export function usePetrelSnapshot(root: string): void {
  petrelBench = join(root, "bench");
}
export const PORT = 10025;
export const RECIPIENT = "u@bench.test";
export const SENDER = "sender@source.bench.test";

/**
 * durable: "250" only once the message is on stable storage (fsync)
 * discard: the message is thrown away (the protocol path alone)
 * deliver: durable accept, then delivery into a Maildir in the background
 */
export type ServerKind = "durable" | "discard" | "deliver";

export interface RunningServer {
  /** The process whose memory is measured (for Postfix: the master, not meaningful). */
  readonly pid: number;
  /** Maildir new/ that delivered messages land in (deliver servers). */
  readonly maildirNew?: string;
  stop(): Promise<void>;
}

export interface ServerDef {
  readonly id: string;
  readonly label: string;
  readonly kind: ServerKind;
  readonly petrel: boolean;
  readonly address: string;
  /** Measurable in one process (memory scenarios). */
  readonly singleProcess: boolean;
  /** Only measured when named with --only. */
  readonly optional?: true;
  /** Never pinned to the server CPU: it may use every core (the SMTP workers comparison). */
  readonly everyCpu?: true;
  /** null when it can run here, else why not. */
  unavailable(): string | null;
  start(dataDir: string, cpu: string | null, extra?: NodeExtra): Promise<RunningServer>;
}

const START_TIMEOUT = 30_000;

/** For Node servers only: extra node flags and environment (profiling). */
export interface NodeExtra {
  readonly nodeFlags?: readonly string[];
  readonly env?: Record<string, string>;
}

function nodeServer(script: string, mode: string, address: string, more: readonly string[] = []) {
  return async (dataDir: string, cpu: string | null, extra: NodeExtra = {}): Promise<RunningServer> => {
    const petrel = script === "petrel-entry.ts";
    const dir = petrel ? petrelBench : BENCH_ROOT;
    // Petrel as its launchers start it (src/system/node-flags.ts); the peers as Node starts them.
    const flags = [...(petrel ? NODE_FLAGS : []), ...(extra.nodeFlags ?? [])];
    const [cmd, args] = pinned(cpu, NODE, [...flags, join(dir, script), mode, address, String(PORT), dataDir, ...more]);
    const s = await spawnReady(cmd, args, START_TIMEOUT, { ...process.env, ...extra.env });
    return { pid: pidOf(s.child), stop: () => stopChild(s.child, 10_000) };
  };
}

/** Resolves once host:port answers with a 220 greeting (bounded), trying every `everyMs`. */
export async function waitForGreeting(host: string, port: number, timeoutMs: number, everyMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host, port });
      const done = (v: boolean) => {
        s.destroy();
        resolve(v);
      };
      s.setTimeout(2000, () => done(false));
      s.once("error", () => done(false));
      s.once("data", (d) => done(d.toString("latin1").startsWith("220")));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${host}:${port} does not answer`);
    await sleep(everyMs);
  }
}

export const peersDir = join(BENCH_ROOT, ".peers");
export const nodemailerInstalled = () => existsSync(join(peersDir, "node_modules", "smtp-server", "package.json"));

/** startMta with `workers: n`, on every CPU (the workers comparison). */
function workersMta(n: number, address: string): ServerDef {
  return {
    id: `workers-mta-${n}`, label: `Petrel startMta, workers: ${n} (${n === 1 ? "one process" : `primary + ${n} workers`}; both CPUs allowed)`,
    kind: "deliver", petrel: true, address, singleProcess: n === 1, optional: true, everyCpu: true,
    unavailable: () => null,
    async start(dataDir, cpu, extra) {
      const s = await nodeServer("petrel-entry.ts", "mta", address, [String(n)])(dataDir, cpu, extra);
      return { ...s, maildirNew: join(dataDir, "mail", "bench.test", "u", "new") };
    },
  };
}

export const SERVERS: readonly ServerDef[] = [
  {
    id: "petrel-durable", label: "Petrel, default spool: journal (accept only)", kind: "durable", petrel: true,
    address: "127.0.0.11", singleProcess: true,
    unavailable: () => null,
    start: nodeServer("petrel-entry.ts", "durable", "127.0.0.11"),
  },
  {
    id: "petrel-files", label: "Petrel, spool.format: files (accept only)", kind: "durable", petrel: true,
    address: "127.0.0.14", singleProcess: true, optional: true,
    unavailable: () => null,
    start: nodeServer("petrel-entry.ts", "files", "127.0.0.14"),
  },
  {
    id: "petrel-discard", label: "Petrel, discard spool", kind: "discard", petrel: true,
    address: "127.0.0.12", singleProcess: true,
    unavailable: () => null,
    start: nodeServer("petrel-entry.ts", "discard", "127.0.0.12"),
  },
  {
    id: "petrel-mta", label: "Petrel, startMta (accept + Maildir delivery)", kind: "deliver", petrel: true,
    address: "127.0.0.13", singleProcess: true,
    unavailable: () => null,
    async start(dataDir, cpu, extra) {
      const s = await nodeServer("petrel-entry.ts", "mta", "127.0.0.13")(dataDir, cpu, extra);
      return { ...s, maildirNew: join(dataDir, "mail", "bench.test", "u", "new") };
    },
  },
  // 1 vs 2 SMTP workers (--only workers-…): every server may use both CPUs, the load generator
  // stays on CPU 1 — it shares a core with the server, as it would on no real machine.
  {
    id: "workers-durable-1", label: "Petrel journal, accept only, workers: 1 (one process; both CPUs allowed)", kind: "durable", petrel: true,
    address: "127.0.0.41", singleProcess: true, optional: true, everyCpu: true,
    unavailable: () => null,
    start: nodeServer("petrel-entry.ts", "durable", "127.0.0.41"),
  },
  {
    id: "workers-durable-2", label: "Petrel journal, accept only, workers: 2 (primary + 2 workers; both CPUs allowed)", kind: "durable", petrel: true,
    address: "127.0.0.42", singleProcess: false, optional: true, everyCpu: true,
    unavailable: () => null,
    start: nodeServer("petrel-entry.ts", "pool", "127.0.0.42", ["2"]),
  },
  workersMta(1, "127.0.0.43"),
  workersMta(2, "127.0.0.44"),
  {
    id: "nodemailer-fsync", label: "nodemailer smtp-server, fsync per message", kind: "durable", petrel: false,
    address: "127.0.0.21", singleProcess: true,
    unavailable: () => (nodemailerInstalled() ? null : "smtp-server not installed in bench/.peers"),
    start: nodeServer("nodemailer-entry.ts", "fsync", "127.0.0.21"),
  },
  {
    id: "nodemailer-discard", label: "nodemailer smtp-server, discard", kind: "discard", petrel: false,
    address: "127.0.0.22", singleProcess: true,
    unavailable: () => (nodemailerInstalled() ? null : "smtp-server not installed in bench/.peers"),
    start: nodeServer("nodemailer-entry.ts", "discard", "127.0.0.22"),
  },
  {
    id: "postfix", label: "Postfix (accept + Maildir delivery)", kind: "deliver", petrel: false,
    address: "127.0.0.31", singleProcess: false,
    unavailable: postfixAvailable,
    async start(dataDir, cpu) {
      const p = await startPostfix(dataDir, "127.0.0.31", PORT, cpu);
      await waitForGreeting("127.0.0.31", PORT, START_TIMEOUT);
      return { pid: p.masterPid ?? -1, maildirNew: p.maildirNew, stop: () => p.stop() };
    },
  },
  {
    id: "smtp-sink", label: "Postfix smtp-sink (protocol ceiling)", kind: "discard", petrel: false,
    address: "127.0.0.32", singleProcess: true,
    unavailable: () => (which("smtp-sink") ? null : "smtp-sink (postfix) is not installed"),
    async start(_dataDir, cpu) {
      const runAs = process.getuid?.() === 0 ? ["-u", "nobody"] : [];
      const [cmd, args] = pinned(cpu, "smtp-sink", [...runAs, "-m", "20000", `127.0.0.32:${PORT}`, "4096"]);
      const child = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
      let err = "";
      child.stderr!.on("data", (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
      try {
        await waitForGreeting("127.0.0.32", PORT, START_TIMEOUT);
      } catch (e) {
        child.kill("SIGKILL");
        throw new Error(`smtp-sink did not start: ${(e as Error).message}\n${err}`);
      }
      return { pid: pidOf(child), stop: () => stopChild(child, 3000) };
    },
  },
];
