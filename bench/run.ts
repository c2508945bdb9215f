/**
 * `npm run bench`: Petrel against its peers, measured in the same invocation,
 * reported as ratios. See bench/README.md for what each scenario means.
 *
 *   node bench/run.ts [--quick] [--runs N] [--only id,id] [--phases throughput,idle,big] [--generator smtp-source|node]
 *                     [--no-pin] [--no-install] [--keep] [--petrel-rev REV] [--cpu-prof [SERVER]] [--out NAME] [--budget SECONDS]
 *
 * Writes bench/results/latest.json and bench/results/latest.md (also printed; --out NAME: NAME.json, NAME.md);
 * --cpu-prof instead profiles one server under the 1 KiB reuse load and
 * writes bench/results/profile-SERVER.md.
 */
import { spawnSync } from "node:child_process";
import { copyFile, mkdir, mkdtemp, readdir, rename, rm, symlink, writeFile } from "node:fs/promises";
import { cpus, release, tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { hasTaskset, NODE, peakRssOf, pinned, resetPeak, rssOf, spawnReady, stopChild, threadCpu } from "./lib/proc.ts";
import { countFiles } from "./lib/postfix-peer.ts";
import { BENCH_ROOT, nodemailerInstalled, peersDir, PORT, SERVERS, usePetrelSnapshot, type RunningServer, type ServerDef } from "./lib/servers.ts";
import { runLoad, runNodeClient, type Generator, type LoadResult, type LoadSpec } from "./lib/load.ts";
import { summarize } from "./lib/stats.ts";
import { QUIET_IDLE, treeCpuSeconds, waitQuiet, waitServerIdle, type Quiet } from "./lib/quiet.ts";
import { profileMarkdown, summarizeProfile } from "./lib/profile.ts";
import { renderMarkdown, type BenchResult, type QuietRecord, type ScenarioResult } from "./lib/report.ts";

// ---------------------------------------------------------------- arguments

const argv = process.argv.slice(2);
const flag = (name: string) => argv.includes(name);
const option = (name: string): string | undefined => {
  const i = argv.indexOf(name);
  return i >= 0 && i + 1 < argv.length && !argv[i + 1].startsWith("--") ? argv[i + 1] : undefined;
};
const quick = flag("--quick");
const pin = !flag("--no-pin") && hasTaskset();
const SERVER_CPU = pin ? "0" : null;
const LOAD_CPU = pin ? (cpus().length > 1 ? "1" : "0") : null;
const only = option("--only")?.split(",");
/** --phases throughput,idle,big: run only these (all by default). */
const phases = option("--phases")?.split(",") ?? ["throughput", "idle", "big"];
const keep = flag("--keep");
/** --out NAME: write bench/results/NAME.{json,md} instead of latest (a partial run keeps the full run's figures). */
const out = option("--out") ?? "latest";

const PLAN = quick
  ? {
      runs: 3, budgetMs: 150_000, loadTimeoutMs: 20_000, deliverTimeoutMs: 30_000, quietWaitMs: 5_000, settleMs: 15_000,
      messages: { "1k-reuse": 600, "1k-newconn": 300, "100k-reuse": 150 }, latencyMessages: 150,
      idleConnections: 500, bigSize: 20 * 1024 * 1024,
    }
  : {
      runs: 3, budgetMs: 9 * 60_000, loadTimeoutMs: 60_000, deliverTimeoutMs: 120_000, quietWaitMs: 15_000, settleMs: 60_000,
      messages: { "1k-reuse": 4000, "1k-newconn": 2000, "100k-reuse": 1000 }, latencyMessages: 1000,
      idleConnections: 2000, bigSize: 20 * 1024 * 1024,
    };
const runs = Number(option("--runs") ?? PLAN.runs);
const SESSIONS = 50;

// --------------------------------------------------------- file descriptors

/** The idle scenario needs N+ descriptors in the server and in the client: raise the soft limit by re-exec. */
function ensureNofile(needed: number): void {
  const r = spawnSync("sh", ["-c", "ulimit -Sn; ulimit -Hn"], { encoding: "utf8" });
  const [soft, hard] = r.stdout.trim().split("\n").map((v) => (v === "unlimited" ? Infinity : Number(v)));
  if (soft >= needed || process.env.PETREL_BENCH_REEXEC) return;
  const target = Math.min(hard, Math.max(needed, 4096));
  if (target <= soft) return;
  const q = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;
  const cmd = `ulimit -n ${target} && exec ${[NODE, ...process.execArgv, process.argv[1], ...argv].map(q).join(" ")}`;
  const child = spawnSync("sh", ["-c", cmd], { stdio: "inherit", env: { ...process.env, PETREL_BENCH_REEXEC: "1" } });
  process.exit(child.status ?? 1);
}

function nofileSoft(): number {
  const r = spawnSync("sh", ["-c", "ulimit -Sn"], { encoding: "utf8" });
  return r.stdout.trim() === "unlimited" ? Infinity : Number(r.stdout.trim());
}

// ------------------------------------------------------------------- helpers

const log = (msg: string) => process.stderr.write(`${msg}\n`);
const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(0)}s`;
/** --budget SECONDS: the invocation's time budget instead of the plan's. */
const budgetMs = option("--budget") ? Number(option("--budget")) * 1000 : PLAN.budgetMs;
const overBudget = () => Date.now() - started > budgetMs;
/** The tree whose src/ is measured (for file names in profiles). */
let petrelSourceRoot = join(BENCH_ROOT, "..");
let petrelRevisionLabel = "";

async function installPeers(): Promise<void> {
  if (nodemailerInstalled() || flag("--no-install")) return;
  log("installing nodemailer smtp-server into bench/.peers (not a Petrel dependency) ...");
  await mkdir(peersDir, { recursive: true });
  const r = spawnSync("npm", ["install", "--prefix", peersDir, "--no-audit", "--no-fund", "--no-save", "smtp-server@latest"], {
    stdio: ["ignore", "inherit", "inherit"], timeout: 180_000,
  });
  if (r.status !== 0) log("  could not install smtp-server; the nodemailer peers are skipped");
}

function toolVersion(cmd: string, args: string[]): string | null {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : null;
}

/**
 * --petrel-rev REV: measure Petrel as committed at REV (git archive, read-only)
 * instead of the working tree. The snapshot sits outside the repository (so
 * no type-check of the repository sees a second copy of src/), with a
 * node_modules symlink to the repository's.
 */
async function petrelSnapshot(rev: string, dir: string): Promise<string> {
  await mkdir(join(dir, "bench"), { recursive: true });
  await symlink(join(BENCH_ROOT, "..", "node_modules"), join(dir, "node_modules"));
  const r = spawnSync("sh", ["-c", `git -C "$1" archive "$2" src | tar -x -C "$3"`, "sh", join(BENCH_ROOT, ".."), rev, dir], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`git archive ${rev} failed: ${r.stderr}`);
  for (const f of ["petrel-entry.ts", "discard-spool.ts"]) await copyFile(join(BENCH_ROOT, f), join(dir, "bench", f));
  const sha = spawnSync("git", ["-C", join(BENCH_ROOT, ".."), "rev-parse", "--short", rev], { encoding: "utf8" }).stdout.trim();
  return sha;
}

function workingTreeRevision(): string {
  const cwd = join(BENCH_ROOT, "..");
  const sha = spawnSync("git", ["-C", cwd, "rev-parse", "--short", "HEAD"], { encoding: "utf8" }).stdout.trim();
  const dirty = spawnSync("git", ["-C", cwd, "status", "--porcelain", "--", "src"], { encoding: "utf8" }).stdout.trim() !== "";
  return `${sha || "?"}${dirty ? " + uncommitted changes in src/" : ""}`;
}

async function waitDelivered(dir: string, target: number, timeoutMs: number): Promise<number | null> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if ((await countFiles(dir)) >= target) return Date.now();
    await sleep(50);
  }
  return null;
}

interface Throughput {
  readonly id: string;
  readonly title: string;
  readonly messages: number;
  readonly spec: Omit<LoadSpec, "host" | "messages" | "timeoutMs">;
  readonly generator: Generator;
}

// ------------------------------------------------------------------ phases

async function throughputPhase(servers: ServerDef[], root: string, generator: Generator, result: BenchResult): Promise<void> {
  const scenarios: Throughput[] = [
    { id: "1k-reuse", title: `1 KiB × ${SESSIONS} sessions, connections reused`, messages: PLAN.messages["1k-reuse"], spec: { sessions: SESSIONS, size: 1024, reuse: true }, generator },
    { id: "1k-newconn", title: `1 KiB × ${SESSIONS} sessions, one message per connection`, messages: PLAN.messages["1k-newconn"], spec: { sessions: SESSIONS, size: 1024, reuse: false }, generator },
    { id: "100k-reuse", title: `100 KiB × ${SESSIONS} sessions, connections reused`, messages: PLAN.messages["100k-reuse"], spec: { sessions: SESSIONS, size: 100 * 1024, reuse: true }, generator },
    { id: "latency-1session", title: "1 KiB, 1 session, connection reused (latency MAIL → final 250)", messages: PLAN.latencyMessages, spec: { sessions: 1, size: 1024, reuse: true }, generator: "node" },
  ];
  const running = new Map<string, RunningServer>();
  try {
    for (const s of servers) {
      log(`[${elapsed()}] starting ${s.id} on ${s.address}:${PORT}`);
      try {
        running.set(s.id, await s.start(join(root, s.id), s.everyCpu ? null : SERVER_CPU));
      } catch (err) {
        log(`  ${s.id} did not start: ${(err as Error).message.split("\n")[0]}`);
        result.servers.find((x) => x.id === s.id)!.unavailable = `did not start: ${(err as Error).message.split("\n")[0]}`;
      }
    }
    const allPids = () => [...running.values()].map((r) => r.pid).filter((p) => p > 0);
    for (const sc of scenarios) {
      const res: ScenarioResult = {
        id: sc.id, title: sc.title, generator: sc.generator, messages: sc.messages, size: sc.spec.size,
        sessions: sc.spec.sessions, reuse: sc.spec.reuse, unit: sc.id.startsWith("latency") ? "ms" : "msg/s", servers: {},
      };
      result.scenarios.push(res);
      const raw: Record<string, { mps: number[]; delivered: number[]; backlog: number[]; p50: number[]; p99: number[]; cpu: number[]; quiet: Quiet[]; errors: string[] }> = {};
      for (const id of running.keys()) raw[id] = { mps: [], delivered: [], backlog: [], p50: [], p99: [], cpu: [], quiet: [], errors: [] };
      // warm-up (not recorded): JIT, page cache, process pools
      for (const [id, srv] of running) {
        if (overBudget()) break;
        const def = servers.find((s) => s.id === id)!;
        const n = Math.max(20, Math.floor(sc.messages / 10));
        const base = srv.maildirNew ? await countFiles(srv.maildirNew) : 0;
        const w = await runLoad(sc.generator, { ...sc.spec, host: def.address, messages: n, timeoutMs: PLAN.loadTimeoutMs }, LOAD_CPU);
        if (!w.ok) log(`  warm-up ${id}: ${w.error}`);
        if (srv.maildirNew && w.ok) await waitDelivered(srv.maildirNew, base + w.sent, PLAN.deliverTimeoutMs);
        await settle(id, srv);
      }
      for (let run = 0; run < runs; run++) {
        // rotate the order so no server always runs first or last
        const ids = [...running.keys()];
        const order = ids.map((_, i) => ids[(i + run) % ids.length]);
        for (const id of order) {
          if (overBudget()) {
            raw[id].errors.push("skipped: time budget used up");
            continue;
          }
          const srv = running.get(id)!;
          const def = servers.find((s) => s.id === id)!;
          const base = srv.maildirNew ? await countFiles(srv.maildirNew) : 0;
          // Every server idle (no backlog being delivered) and nothing else on the cores.
          const quiet = await waitQuiet(allPids(), PLAN.quietWaitMs);
          const cpu0 = treeCpuSeconds(srv.pid);
          const t0 = Date.now();
          const r: LoadResult = await runLoad(sc.generator, { ...sc.spec, host: def.address, messages: sc.messages, timeoutMs: PLAN.loadTimeoutMs }, LOAD_CPU);
          if (!r.ok) {
            raw[id].errors.push(r.error ?? "failed");
            log(`  ${sc.id} ${id} run ${run + 1}: FAILED ${r.error}`);
            await settle(id, srv);
            continue;
          }
          raw[id].mps.push(r.messagesPerSecond);
          raw[id].quiet.push(quiet);
          if (r.latencyMs?.p50 != null) raw[id].p50.push(r.latencyMs.p50);
          if (r.latencyMs?.p99 != null) raw[id].p99.push(r.latencyMs.p99);
          let note = "";
          if (srv.maildirNew) {
            // Accepted but not yet delivered when the load ended: what a server that keeps up does not leave.
            raw[id].backlog.push(base + r.sent - (await countFiles(srv.maildirNew)));
            const t1 = await waitDelivered(srv.maildirNew, base + r.sent, PLAN.deliverTimeoutMs);
            if (t1 === null) raw[id].errors.push(`not all delivered within ${PLAN.deliverTimeoutMs} ms`);
            else {
              const dps = r.sent / ((t1 - t0) / 1000);
              raw[id].delivered.push(dps);
              note = `, delivered ${dps.toFixed(0)}/s`;
            }
          }
          // The server's CPU for these messages: until it is idle again (a delivering server's backlog included).
          await settle(id, srv, raw[id].errors);
          raw[id].cpu.push(((treeCpuSeconds(srv.pid) - cpu0) * 1e6) / r.sent);
          const lat = r.latencyMs ? `, p50 ${r.latencyMs.p50?.toFixed(2)} ms p99 ${r.latencyMs.p99?.toFixed(2)} ms` : "";
          log(`[${elapsed()}] ${sc.id} ${id} run ${run + 1}: ${r.messagesPerSecond.toFixed(0)} msg/s${note}${lat}, ` +
            `${raw[id].cpu.at(-1)!.toFixed(0)} µs CPU/msg · ${quietText(quiet)}`);
        }
      }
      for (const [id, v] of Object.entries(raw)) {
        res.servers[id] = {
          throughput: summarize(v.mps),
          delivered: summarize(v.delivered),
          backlog: summarize(v.backlog),
          latencyP50: summarize(v.p50),
          latencyP99: summarize(v.p99),
          cpuPerMessage: summarize(v.cpu),
          quiet: quietRecord(v.quiet),
          errors: v.errors,
        };
      }
    }
  } finally {
    for (const [id, srv] of running) {
      await srv.stop().catch((err: unknown) => log(`  stopping ${id}: ${String(err)}`));
    }
  }
}

/** Wait (bounded) until a server has worked off what it was given: a delivering server's queue is drained. */
async function settle(id: string, srv: RunningServer, errors?: string[]): Promise<void> {
  const s = await waitServerIdle([srv.pid], PLAN.settleMs);
  if (!s.idle) {
    const msg = `still busy (${(s.serverCpu * 100).toFixed(0)}% CPU) ${PLAN.settleMs / 1000} s after the load`;
    log(`  ${id}: ${msg}`);
    errors?.push(msg);
  }
}

function quietText(q: Quiet): string {
  return `machine ${(q.idle * 100).toFixed(0)}% idle, load ${q.load1.toFixed(2)}${q.waitedMs > 1500 ? `, waited ${(q.waitedMs / 1000).toFixed(0)} s` : ""}${q.quiet ? "" : " ⚠ BUSY"}`;
}

function quietRecord(qs: readonly Quiet[]): QuietRecord {
  return { idle: qs.map((q) => q.idle), load1: qs.map((q) => q.load1), busy: qs.filter((q) => !q.quiet).length };
}

/** Start a fresh server, measure something about one process, stop it. */
async function withFreshServer<T>(def: ServerDef, dataDir: string, fn: (srv: RunningServer) => Promise<T>): Promise<T> {
  const srv = await def.start(dataDir, SERVER_CPU);
  try {
    return await fn(srv);
  } finally {
    await srv.stop();
  }
}

async function idlePhase(servers: ServerDef[], root: string, result: BenchResult): Promise<void> {
  const want = ["petrel-durable", "nodemailer-fsync", "smtp-sink"];
  const limit = nofileSoft();
  const n = Math.min(PLAN.idleConnections, Number.isFinite(limit) ? limit - 200 : PLAN.idleConnections);
  const res: ScenarioResult = {
    id: "idle-connections", title: `memory per idle connection (${n} connections after EHLO)`, generator: "node",
    messages: n, size: 0, sessions: n, reuse: true, unit: "KiB/conn", servers: {},
  };
  result.scenarios.push(res);
  for (const def of servers.filter((s) => want.includes(s.id))) {
    const values: number[] = [];
    const errors: string[] = [];
    const quiet: Quiet[] = [];
    for (let run = 0; run < runs && !overBudget(); run++) {
      try {
        const v = await withFreshServer(def, join(root, `idle-${def.id}`), async (srv) => {
          // warm-up: a few connections through the whole greeting/EHLO path
          await holdIdle(def.address, 20, async () => {});
          quiet.push(await waitQuiet([srv.pid], PLAN.quietWaitMs, 500));
          const before = rssOf(srv.pid);
          let after = 0;
          const opened = await holdIdle(def.address, n, async () => {
            await sleep(1000);
            after = rssOf(srv.pid);
          });
          if (opened < n) throw new Error(`only ${opened}/${n} connections opened`);
          return (after - before) / opened / 1024;
        });
        values.push(v);
        log(`[${elapsed()}] idle ${def.id} run ${run + 1}: ${v.toFixed(1)} KiB per connection · ${quietText(quiet.at(-1)!)}`);
      } catch (err) {
        errors.push((err as Error).message);
        log(`  idle ${def.id} run ${run + 1}: FAILED ${(err as Error).message}`);
      }
    }
    res.servers[def.id] = { value: summarize(values), quiet: quietRecord(quiet), errors };
  }
}

/** Open `count` connections to host (greeting + EHLO), call `whileOpen`, close them. Returns how many opened. */
async function holdIdle(host: string, count: number, whileOpen: () => Promise<void>): Promise<number> {
  const opts = { host, port: PORT, connections: count, timeoutMs: 60_000, holdMs: 30_000 };
  const [cmd, args] = pinned(LOAD_CPU, NODE, [join(BENCH_ROOT, "idle-client.ts"), JSON.stringify(opts)]);
  const c = await spawnReady(cmd, args, 75_000);
  try {
    await whileOpen();
  } finally {
    c.child.stdin!.end("close\n");
    await stopChild(c.child, 5000);
  }
  return Number(c.ready.open);
}

async function bigMessagePhase(servers: ServerDef[], root: string, result: BenchResult): Promise<void> {
  const want = ["petrel-durable", "petrel-discard", "nodemailer-fsync", "nodemailer-discard", "smtp-sink"];
  const size = PLAN.bigSize;
  const res: ScenarioResult = {
    id: "big-message", title: `peak RSS growth receiving one ${size / 1024 / 1024} MiB message`, generator: "node",
    messages: 1, size, sessions: 1, reuse: false, unit: "MiB", servers: {},
  };
  result.scenarios.push(res);
  for (const def of servers.filter((s) => want.includes(s.id))) {
    const values: number[] = [];
    const times: number[] = [];
    const errors: string[] = [];
    const quiet: Quiet[] = [];
    for (let run = 0; run < runs && !overBudget(); run++) {
      try {
        const v = await withFreshServer(def, join(root, `big-${def.id}`), async (srv) => {
          const spec = { host: def.address, sessions: 1, reuse: false, timeoutMs: 60_000 };
          await runNodeClient({ ...spec, messages: 5, size: 1024 }, LOAD_CPU); // warm-up
          quiet.push(await waitQuiet([srv.pid], PLAN.quietWaitMs, 500));
          const before = rssOf(srv.pid);
          if (!resetPeak(srv.pid)) throw new Error("cannot reset the peak RSS (/proc/PID/clear_refs)");
          const r = await runNodeClient({ ...spec, messages: 1, size }, LOAD_CPU);
          if (!r.ok) throw new Error(r.error);
          times.push(r.wallMs);
          return (peakRssOf(srv.pid) - before) / 1024 / 1024;
        });
        values.push(v);
        log(`[${elapsed()}] big ${def.id} run ${run + 1}: peak RSS +${v.toFixed(1)} MiB · ${quietText(quiet.at(-1)!)}`);
      } catch (err) {
        errors.push((err as Error).message);
        log(`  big ${def.id} run ${run + 1}: FAILED ${(err as Error).message}`);
      }
    }
    res.servers[def.id] = { value: summarize(values), seconds: summarize(times.map((t) => t / 1000)), quiet: quietRecord(quiet), errors };
  }
}

/**
 * --cpu-prof [SERVER]: profile one Petrel server under the 1 KiB reuse load.
 * The profiler (node:inspector in petrel-entry.ts) runs only during the
 * measured load, after a warm-up, so start-up and module loading stay out.
 */
async function profileMode(servers: ServerDef[], root: string, generator: Generator): Promise<void> {
  const id = option("--cpu-prof") ?? "petrel-durable";
  const def = servers.find((s) => s.id === id && s.petrel);
  if (!def) throw new Error(`--cpu-prof needs a Petrel server: one of ${SERVERS.filter((s) => s.petrel).map((s) => s.id).join(", ")}`);
  const file = join(root, `${id}.cpuprofile`);
  const messages = quick ? 3000 : 10_000;
  log(`profiling ${id} under 1 KiB × ${SESSIONS} sessions reused, ${messages} messages (${generator})`);
  const srv = await def.start(join(root, id), SERVER_CPU, { env: { PETREL_BENCH_PROFILE: file } });
  const spec = { host: def.address, sessions: SESSIONS, size: 1024, reuse: true, timeoutMs: 120_000 };
  let r: LoadResult;
  let cpuBefore = new Map<string, { user: number; system: number }>();
  let cpuAfter = cpuBefore;
  try {
    await runLoad(generator, { ...spec, messages: Math.floor(messages / 5) }, LOAD_CPU); // warm-up
    process.kill(srv.pid, "SIGUSR2");
    await sleep(300);
    cpuBefore = threadCpu(srv.pid);
    r = await runLoad(generator, { ...spec, messages }, LOAD_CPU);
    cpuAfter = threadCpu(srv.pid);
    process.kill(srv.pid, "SIGUSR2");
    for (let i = 0; i < 100 && (await countFiles(root).then(() => readdir(root))).every((f) => !f.endsWith(".cpuprofile")); i++) await sleep(100);
    await sleep(300);
  } finally {
    await srv.stop();
  }
  log(`  ${r.ok ? `${r.messagesPerSecond.toFixed(0)} msg/s` : `FAILED ${r.error}`}`);
  const saved = join(BENCH_ROOT, "results", "tmp", `${id}-1k-reuse.cpuprofile`);
  await rename(file, saved);
  const md = [
    `# CPU profile: ${id} (Petrel ${petrelRevisionLabel}), 1 KiB × ${SESSIONS} sessions, connections reused`,
    "",
    `${new Date().toISOString()}; ${messages} messages by ${generator} after a warm-up; ${r.ok ? `${r.messagesPerSecond.toFixed(0)} msg/s under the profiler` : `load failed: ${r.error}`}; ` +
      `server pinned: ${pin}. Profile: bench/results/tmp/${id}-1k-reuse.cpuprofile (open in Chrome DevTools).`,
    "",
    "## CPU by thread during the load (from /proc/PID/task)",
    "",
    "The V8 profile samples only the main thread; file creation, fsync and rename run on libuv's",
    "worker threads (and in the kernel on their behalf).",
    "",
    "| thread | user s | system s |",
    "| --- | ---: | ---: |",
    ...[...cpuAfter].map(([name, a]) => {
      const b = cpuBefore.get(name) ?? { user: 0, system: 0 };
      return { name, user: a.user - b.user, system: a.system - b.system };
    }).filter((t) => t.user + t.system > 0).sort((x, y) => y.user + y.system - x.user - x.system)
      .map((t) => `| ${t.name} | ${t.user.toFixed(2)} | ${t.system.toFixed(2)} |`),
    "",
    profileMarkdown("Top self time (main thread)", summarizeProfile(saved, 30, petrelSourceRoot)),
  ].join("\n");
  await writeFile(join(BENCH_ROOT, "results", `profile-${id}.md`), md);
  process.stdout.write(md);
}

// ---------------------------------------------------------------------- main

async function main(): Promise<void> {
  ensureNofile(PLAN.idleConnections + 500);
  await installPeers();
  const generator: Generator = (option("--generator") as Generator | undefined) ?? (toolVersion("sh", ["-c", "command -v smtp-source"]) ? "smtp-source" : "node");
  const servers = SERVERS.filter((s) => (only ? only.includes(s.id) : !s.optional));
  const root = join(BENCH_ROOT, "results", "tmp", `run-${Date.now()}`);
  await mkdir(root, { recursive: true });
  const rev = option("--petrel-rev");
  let petrelRevision = workingTreeRevision();
  petrelRevisionLabel = petrelRevision;
  const snapshot = rev ? await mkdtemp(join(tmpdir(), "petrel-bench-src-")) : null;
  if (rev && snapshot) {
    petrelRevision = await petrelSnapshot(rev, snapshot);
    petrelRevisionLabel = petrelRevision;
    usePetrelSnapshot(snapshot);
    petrelSourceRoot = snapshot;
    log(`Petrel from revision ${petrelRevision} (${rev})`);
  }
  try {
    if (argv.includes("--cpu-prof")) {
      await profileMode(servers, root, generator);
      return;
    }
    const available = servers.filter((s) => s.unavailable() === null);
    const result: BenchResult = {
      meta: {
        date: new Date().toISOString(),
        mode: quick ? "quick" : "full",
        petrel: petrelRevision,
        runs,
        generator,
        pinned: pin ? { server: SERVER_CPU, load: LOAD_CPU } : null,
        node: process.version,
        cpus: `${cpus().length} × ${cpus()[0]?.model ?? "?"}`,
        kernel: release(),
        postfix: toolVersion("postconf", ["-h", "mail_version"]),
        smtpServer: nodemailerInstalled()
          ? (JSON.parse(spawnSync(NODE, ["-p", "JSON.stringify(require('smtp-server/package.json').version)"], { cwd: peersDir, encoding: "utf8" }).stdout || "null") as string | null)
          : null,
        durationSeconds: 0,
      },
      servers: servers.map((s) => ({ id: s.id, label: s.label, kind: s.kind, petrel: s.petrel, address: `${s.address}:${PORT}`, unavailable: s.unavailable() })),
      scenarios: [],
    };
    for (const s of result.servers) if (s.unavailable) log(`skipping ${s.id}: ${s.unavailable}`);
    log(`bench (${result.meta.mode}): ${runs} runs, generator ${generator}, pinning ${pin ? `server CPU ${SERVER_CPU}, load CPU ${LOAD_CPU}` : "off"}`);
    if (phases.includes("throughput")) await throughputPhase(available.filter((s) => result.servers.find((x) => x.id === s.id)!.unavailable === null), root, generator, result);
    const alive = available.filter((s) => result.servers.find((x) => x.id === s.id)!.unavailable === null);
    if (phases.includes("idle")) await idlePhase(alive, root, result);
    if (phases.includes("big")) await bigMessagePhase(alive, root, result);
    result.meta.durationSeconds = Math.round((Date.now() - started) / 1000);
    const md = renderMarkdown(result);
    await mkdir(join(BENCH_ROOT, "results"), { recursive: true });
    await writeFile(join(BENCH_ROOT, "results", `${out}.json`), JSON.stringify(result, null, 2) + "\n");
    await writeFile(join(BENCH_ROOT, "results", `${out}.md`), md);
    process.stdout.write(md);
    log(`wrote bench/results/${out}.json and ${out}.md in ${elapsed()}`);
  } finally {
    if (!keep) await rm(root, { recursive: true, force: true }).catch(() => {});
    if (snapshot) await rm(snapshot, { recursive: true, force: true }).catch(() => {});
  }
}

await main();
