/**
 * `npm run bench:backlog [-- --messages N] [--drain-seconds S] [--source] [--keep] [--out NAME] [--node-flags "FLAGS"]`: a
 * destination down for a day. N small messages (default 1,000,000) wait in
 * the queue for a destination that does not answer, made by
 * bench/backlog-generate.ts with Petrel's own spool and queue store. Then the
 * real `petrel serve` (default queue.activeLimit) is started on that data
 * directory, twice — the second time after a SIGKILL — and measured. It is
 * run as installed: compiled (`npm run build`, dist/cli/main.js) with the
 * V8 flags of its launchers (src/system/node-flags.ts); `--source` runs the
 * TypeScript sources instead (Node strips the types: ~30 MiB more RSS and a
 * slower start).
 * - time from start to the first 220 greeting on its SMTP listener (target ≤ 2 s);
 * - its RSS once the queue is recovered, and its peak (VmHWM) over the whole run (target ≤ 256 MiB);
 * - `petrel queue summary` end to end (a CLI process through the control socket; target ≤ 10 s);
 * - once the destination returns (Postfix's smtp-sink) and `petrel queue retry --all` ran, the
 *   drain rate over a bounded window (messages leaving the queue per second).
 * Bounded in time: every wait has a limit; the machine's load average is recorded with the figures.
 * Not a test: nothing fails on a slow figure. Results: bench/results/backlog.json and .md
 * (`--out NAME`: NAME.json and NAME.md, so that a trial run keeps the reference figures).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { request } from "../src/admin/control-socket.ts";
import type { ServerStatus } from "../src/admin/server-status.ts";
import { NODE, peakRssOf, resetPeak, rssOf, stopChild, which } from "./lib/proc.ts";
import { NODE_FLAGS } from "../src/system/node-flags.ts";
import { waitForGreeting } from "./lib/servers.ts";

const ROOT = join(import.meta.dirname, "..");
const SERVER = { host: "127.0.0.41", port: 10025 };
/** The destination: nothing listens here until smtp-sink starts. */
const DESTINATION = { host: "127.0.0.42", port: 10025 };
const DOMAIN = "dead.bench.test";
const MiB = 1024 * 1024;

const { values } = parseArgs({
  options: {
    messages: { type: "string", default: "1000000" },
    "drain-seconds": { type: "string", default: "60" },
    keep: { type: "boolean", default: false },
    source: { type: "boolean", default: false },
    out: { type: "string", default: "backlog" },
    /** V8 flags to try beside the launchers' own (e.g. "--trace-gc"), recorded with the results. */
    "node-flags": { type: "string", default: "" },
  },
});
const PETREL = values.source ? join(ROOT, "src", "cli", "main.ts") : join(ROOT, "dist", "cli", "main.js");
const N = Number(values.messages);
const EXTRA_FLAGS = values["node-flags"].split(/\s+/).filter((f) => f !== "");
const DRAIN_SECONDS = Number(values["drain-seconds"]);
if (!Number.isInteger(N) || N < 1 || !(DRAIN_SECONDS > 0) || !/^[\w.-]+$/.test(values.out)) {
  process.stderr.write("usage: npm run bench:backlog -- [--messages N] [--drain-seconds S] [--source] [--keep] [--out NAME] [--node-flags \"FLAGS\"]\n");
  process.exit(64);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (s: string) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${s}\n`);
const load = () => loadavg().map((x) => x.toFixed(2)).join(" ");

const work = join(ROOT, "bench", "results", "tmp", `backlog-${process.pid}`);
const dataDir = join(work, "data");
const configPath = join(work, "petrel.yaml");

function run(args: string[], options: { timeoutMs: number }): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const started = performance.now();
  const child = spawn(NODE, [...NODE_FLAGS, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs);
  return new Promise((resolve) => child.once("close", (code) => {
    clearTimeout(timer);
    resolve({ code, stdout, stderr, ms: performance.now() - started });
  }));
}

/** ms from `since` until host:port sends a 220 greeting, polling every 10 ms; throws after `limitMs`. */
async function greeted(host: string, port: number, limitMs: number, since: number): Promise<number> {
  await waitForGreeting(host, port, limitMs, 10);
  return performance.now() - since;
}

async function status(): Promise<ServerStatus> {
  const res = await request(join(dataDir, "control.sock"), { op: "status" }, 120_000);
  if (!res?.ok) throw new Error(`status: ${res ? res.error : "no server"}`);
  return res.result as ServerStatus;
}

interface Serving {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly listenMs: number;
}

async function serve(logName: string): Promise<Serving> {
  const out = openSync(join(work, logName), "w");
  const since = performance.now();
  const child = spawn(NODE, [...NODE_FLAGS, ...EXTRA_FLAGS, PETREL, "serve", "--config", configPath], { stdio: ["ignore", out, out] });
  closeSync(out);
  const listenMs = await greeted(SERVER.host, SERVER.port, 120_000, since);
  return { child, pid: child.pid!, listenMs };
}

/** Wait (bounded) for the queue to finish reconciling the spool with the store: the log says "queue recovered". */
async function recovered(logName: string, limitMs: number): Promise<number> {
  const { readFile } = await import("node:fs/promises");
  const since = performance.now();
  for (;;) {
    const text = await readFile(join(work, logName), "utf8").catch(() => "");
    if (text.includes('"msg":"queue recovered"')) return performance.now() - since;
    if (performance.now() - since > limitMs) throw new Error(`queue not recovered within ${limitMs} ms`);
    await sleep(200);
  }
}

const results: Record<string, unknown> = {
  messages: N, cpus: cpus().length, loadBefore: load(), startedAt: new Date().toISOString(),
  petrel: values.source ? "TypeScript sources (src/cli/main.ts)" : "compiled (dist/cli/main.js)", nodeFlags: [...NODE_FLAGS, ...EXTRA_FLAGS].join(" "),
};
let server: Serving | null = null;
let sink: ChildProcess | null = null;
try {
  if (!which("smtp-sink")) throw new Error("smtp-sink is not installed (apt-get install postfix): it is the destination that comes back");
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  if (!values.source) {
    const build = await run([join(ROOT, "scripts", "build.ts")], { timeoutMs: 300_000 });
    if (build.code !== 0) throw new Error(`npm run build failed: ${build.stderr}`);
  }
  await writeFile(configPath, JSON.stringify({
    hostname: "petrel.bench.test",
    dataDir,
    domains: ["bench.test"],
    listeners: [{ address: SERVER.host, port: SERVER.port, role: "mx" }],
    transport: [{ domains: [DOMAIN], type: "smtp", host: DESTINATION.host, port: DESTINATION.port, tls: "none" }],
    log: { level: "info", format: "json" },
  }, null, 2));

  // The same server with an empty queue: what starting and idling cost without a backlog.
  server = await serve("serve-0.log");
  results.emptyStartListenMs = Math.round(server.listenMs);
  await recovered("serve-0.log", 60_000);
  await sleep(1000);
  results.rssEmptyMiB = +(rssOf(server.pid) / MiB).toFixed(1);
  await stopChild(server.child, 30_000);
  server = null;
  log(`empty queue: listening after ${results.emptyStartListenMs} ms, RSS ${results.rssEmptyMiB} MiB`);

  log(`generating ${N} messages queued to ${DOMAIN} (load ${load()})`);
  const gen = await run([join(ROOT, "bench", "backlog-generate.ts"), dataDir, String(N), DOMAIN], { timeoutMs: 30 * 60_000 });
  if (gen.code !== 0) throw new Error(`backlog-generate failed: ${gen.stderr}`);
  results.generateSeconds = +(gen.ms / 1000).toFixed(1);
  log(`generated in ${results.generateSeconds} s`);

  // First start on the generated backlog: listening, then recovery in the background.
  server = await serve("serve-1.log");
  results.firstStartListenMs = Math.round(server.listenMs);
  results.firstRecoveryMs = Math.round(await recovered("serve-1.log", 10 * 60_000));
  log(`first start: listening after ${results.firstStartListenMs} ms, recovered after ${results.firstRecoveryMs} ms more`);
  // A crash, then the start that is measured.
  server.child.kill("SIGKILL");
  await new Promise((r) => server!.child.once("exit", r));
  results.loadBeforeRestart = load();
  server = await serve("serve-2.log");
  results.restartListenMs = Math.round(server.listenMs);
  const rssAtListen = rssOf(server.pid);
  results.restartRecoveryMs = Math.round(await recovered("serve-2.log", 10 * 60_000));
  log(`restart after SIGKILL: listening after ${results.restartListenMs} ms (RSS ${(rssAtListen / MiB).toFixed(0)} MiB), recovered after ${results.restartRecoveryMs} ms more`);
  const st = await status();
  results.queueMessages = st.queue.messages;
  results.rssRecoveredMiB = +(rssOf(server.pid) / MiB).toFixed(1);
  log(`queue: ${st.queue.messages} messages, ${st.queue.active} in memory; RSS ${results.rssRecoveredMiB} MiB`);

  // Peaks per phase (VmHWM reset between them): which part of the work the memory belongs to.
  const phasePeaks: Record<string, number> = {};
  const phaseEnds = (name: string): void => {
    phasePeaks[name] = +(peakRssOf(server!.pid) / MiB).toFixed(1);
    resetPeak(server!.pid);
  };
  phaseEnds("restart and recovery");
  results.phasePeaksMiB = phasePeaks;
  results.loadBeforeSummary = load();
  const summary = await run([PETREL, "queue", "summary", "--config", configPath], { timeoutMs: 120_000 });
  if (summary.code !== 0) throw new Error(`petrel queue summary failed: ${summary.stderr}`);
  results.summarySeconds = +(summary.ms / 1000).toFixed(2);
  results.summaryFirstLines = summary.stdout.split("\n").slice(0, 3);
  log(`petrel queue summary: ${results.summarySeconds} s`);

  // The destination returns; a person asks for the backlog now (postqueue -f).
  const runAs = process.getuid?.() === 0 ? ["-u", "nobody"] : [];
  sink = spawn("smtp-sink", [...runAs, "-m", "1000", `${DESTINATION.host}:${DESTINATION.port}`, "4096"], { stdio: "ignore" });
  await greeted(DESTINATION.host, DESTINATION.port, 10_000, performance.now());
  results.loadBeforeDrain = load();
  const retry = await run([PETREL, "queue", "retry", "--all", "--config", configPath], { timeoutMs: 300_000 });
  if (retry.code !== 0) throw new Error(`petrel queue retry --all failed: ${retry.stderr}`);
  results.retryAllSeconds = +(retry.ms / 1000).toFixed(2);
  phaseEnds("summary and retry --all");
  log(`petrel queue retry --all: ${results.retryAllSeconds} s; draining for up to ${DRAIN_SECONDS} s`);
  const first = (await status()).queue.messages;
  const t0 = performance.now();
  let left = first;
  let maxActive = 0;
  while (performance.now() - t0 < DRAIN_SECONDS * 1000 && left > 0) {
    await sleep(2000);
    const q = (await status()).queue;
    left = q.messages;
    maxActive = Math.max(maxActive, q.active, q.activePeak);
  }
  const seconds = (performance.now() - t0) / 1000;
  results.drain = { seconds: +seconds.toFixed(1), delivered: first - left, perSecond: Math.round((first - left) / seconds), left, maxActive };
  results.loadAfterDrain = load();
  phaseEnds("drain");
  results.rssPeakMiB = Math.max(...Object.values(phasePeaks));
  results.rssEndMiB = +(rssOf(server.pid) / MiB).toFixed(1);
  log(`drain: ${JSON.stringify(results.drain)}; RSS peak ${results.rssPeakMiB} MiB (VmHWM since the restart); per phase ${JSON.stringify(phasePeaks)}`);
} catch (err) {
  results.error = (err as Error).message;
  log(`failed: ${(err as Error).message}`);
  process.exitCode = 1;
} finally {
  if (server) await stopChild(server.child, 30_000);
  if (sink) await stopChild(sink, 3000);
  if (!values.keep) await rm(work, { recursive: true, force: true });
}

const json = JSON.stringify(results, null, 2);
await mkdir(join(ROOT, "bench", "results"), { recursive: true });
await writeFile(join(ROOT, "bench", "results", `${values.out}.json`), json + "\n");
const d = results.drain as { perSecond: number; seconds: number; delivered: number } | undefined;
const md = [
  `| backlog of ${N.toLocaleString("en")} messages (queue.activeLimit 20,000); Petrel ${results.petrel}, node ${results.nodeFlags} | measured | target |`,
  "| --- | --- | --- |",
  `| start → first 220, after a SIGKILL (with an empty queue) | ${results.restartListenMs ?? "–"} ms (${results.emptyStartListenMs ?? "–"} ms) | ≤ 2,000 ms |`,
  `| recovery in the background after that | ${results.restartRecoveryMs ?? "–"} ms | (not blocking) |`,
  `| server RSS once recovered / peak over the run (idle with an empty queue) | ${results.rssRecoveredMiB ?? "–"} / ${results.rssPeakMiB ?? "–"} MiB (${results.rssEmptyMiB ?? "–"} MiB) | ≤ 256 MiB |`,
  `| peak RSS per phase | ${Object.entries((results.phasePeaksMiB ?? {}) as Record<string, number>).map(([k, v]) => `${k} ${v} MiB`).join("; ") || "–"} | |`,
  `| \`petrel queue summary\` | ${results.summarySeconds ?? "–"} s | ≤ 10 s |`,
  `| \`petrel queue retry --all\` | ${results.retryAllSeconds ?? "–"} s | |`,
  `| drain to smtp-sink | ${d ? `${d.perSecond} msg/s (${d.delivered} in ${d.seconds} s)` : "–"} | |`,
  `| load average before / after the drain | ${results.loadBefore} / ${results.loadAfterDrain ?? "–"} (${results.cpus} CPUs) | |`,
].join("\n");
await writeFile(join(ROOT, "bench", "results", `${values.out}.md`), md + "\n");
process.stdout.write(md + "\n");
