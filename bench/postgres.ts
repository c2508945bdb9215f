/**
 * `npm run bench:postgres [-- --messages N] [--runs R] [--quick] [--no-pin] [--keep]`: durable
 * acceptance with the spool in PostgreSQL (storage.kind postgres) against the local journal
 * spool, in the same invocation: 1 KiB messages over 50 sessions that reuse their connections.
 * Both promise the same thing with the 250 — the message is on stable storage — so the ratio is
 * the cost of keeping it in a database the nodes of a cluster share instead of a local disk.
 *
 * The PostgreSQL is a private one started here (initdb/pg_ctl as the user postgres, loopback,
 * the server's default durability: fsync on, synchronous_commit on, no commit_delay). Petrel runs
 * pinned to CPU 0 and the load generator to CPU 1 as in `npm run bench`; PostgreSQL's processes
 * are not pinned (on 2 cores they share both). Runs interleave, the order rotating. Per run for
 * PostgreSQL: the write transactions the database assigned (its transaction ids), so messages per
 * group commit. Results: bench/results/postgres.json and .md. Not a test: nothing fails on a
 * slow figure.
 */
import { mkdir, rm, writeFile } from "node:fs/promises";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import pg from "pg";
import { startPostgres } from "../test/support/postgres.ts";
import { runLoad, type Generator, type LoadResult } from "./lib/load.ts";
import { hasTaskset, which } from "./lib/proc.ts";
import { BENCH_ROOT, PORT, waitForGreeting } from "./lib/servers.ts";
import { NODE, pidOf, pinned, spawnReady, stopChild } from "./lib/proc.ts";
import { summarize, ratio } from "./lib/stats.ts";

const { values } = parseArgs({
  options: {
    messages: { type: "string" },
    runs: { type: "string" },
    quick: { type: "boolean", default: false },
    "no-pin": { type: "boolean", default: false },
    keep: { type: "boolean", default: false },
  },
});
const MESSAGES = Number(values.messages ?? (values.quick ? 600 : 4000));
const RUNS = Number(values.runs ?? (values.quick ? 2 : 3));
const SESSIONS = 50;
if (!Number.isInteger(MESSAGES) || MESSAGES < 50 || !Number.isInteger(RUNS) || RUNS < 1) {
  process.stderr.write("usage: npm run bench:postgres -- [--messages N≥50] [--runs R] [--quick] [--no-pin] [--keep]\n");
  process.exit(64);
}
const pin = !values["no-pin"] && hasTaskset() && cpus().length >= 2;
const SERVER_CPU = pin ? "0" : null;
const LOAD_CPU = pin ? "1" : null;
const generator: Generator = which("smtp-source") ? "smtp-source" : "node";
const log = (s: string) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${s}\n`);

const work = join(BENCH_ROOT, "results", "tmp", `postgres-${process.pid}`);
const SERVERS = [
  { id: "journal", label: "Petrel, journal spool (local disk, fdatasync group commit)", mode: "durable", address: "127.0.61.21" },
  { id: "postgres", label: "Petrel, spool in PostgreSQL (group commit, synchronous_commit on)", mode: "postgres", address: "127.0.61.22" },
] as const;

interface Run {
  readonly server: string;
  readonly result: LoadResult;
  /** PostgreSQL only: write transactions the database assigned during the run. */
  readonly transactions?: number;
}

await mkdir(work, { recursive: true });
log(`starting a private PostgreSQL (default durability)`);
const database = await startPostgres({ host: "127.0.61.20" });
const observer = new pg.Pool({ connectionString: database.url, max: 1 });
const nextXid = async (): Promise<number> => Number((await observer.query<{ x: string }>("SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS x")).rows[0].x);
const running: Array<{ id: string; stop(): Promise<void>; pid: number }> = [];
const runs: Run[] = [];
let settings: Record<string, string> = {};
try {
  for (const s of SERVERS) {
    const [cmd, args] = pinned(SERVER_CPU, NODE, [join(BENCH_ROOT, "petrel-entry.ts"), s.mode, s.address, String(PORT), join(work, s.id)]);
    const started = await spawnReady(cmd, args, 30_000, { ...process.env, PETREL_BENCH_PG_URL: database.url });
    await waitForGreeting(s.address, PORT, 30_000);
    running.push({ id: s.id, pid: pidOf(started.child), stop: () => stopChild(started.child, 10_000) });
  }
  const shown = await observer.query<{ name: string; setting: string }>(
    "SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'commit_delay', 'wal_sync_method', 'server_version')",
  );
  settings = Object.fromEntries(shown.rows.map((r) => [r.name, r.setting]));
  log(`PostgreSQL ${settings.server_version}: fsync ${settings.fsync}, synchronous_commit ${settings.synchronous_commit}, wal_sync_method ${settings.wal_sync_method}`);
  const spec = { sessions: SESSIONS, size: 1024, reuse: true, timeoutMs: 180_000 };
  for (const s of SERVERS) {
    log(`warm-up ${s.id}`);
    await runLoad(generator, { ...spec, host: s.address, messages: Math.max(50, Math.floor(MESSAGES / 10)) }, LOAD_CPU);
  }
  for (let round = 0; round < RUNS; round++) {
    const order = round % 2 === 0 ? SERVERS : [...SERVERS].reverse();
    for (const s of order) {
      const before = s.id === "postgres" ? await nextXid() : 0;
      const result = await runLoad(generator, { ...spec, host: s.address, messages: MESSAGES }, LOAD_CPU);
      const transactions = s.id === "postgres" ? (await nextXid()) - before : undefined;
      runs.push({ server: s.id, result, ...(transactions !== undefined ? { transactions } : {}) });
      log(`${s.id} run ${round + 1}: ${result.ok ? `${result.messagesPerSecond.toFixed(0)} msg/s` : `failed: ${result.error}`}${transactions !== undefined ? `, ${transactions} transactions` : ""}`);
    }
  }
} finally {
  for (const r of running) await r.stop().catch(() => {});
  await observer.end().catch(() => {});
  await database.close();
  if (!values.keep) await rm(work, { recursive: true, force: true });
}

const rate = (id: string) => summarize(runs.filter((r) => r.server === id && r.result.ok).map((r) => r.result.messagesPerSecond));
const journal = rate("journal");
const postgres = rate("postgres");
const pgRuns = runs.filter((r) => r.server === "postgres" && r.result.ok && r.transactions !== undefined);
const perTransaction = pgRuns.length > 0 ? pgRuns.reduce((a, r) => a + r.result.sent, 0) / pgRuns.reduce((a, r) => a + r.transactions!, 0) : null;
const when = new Date().toISOString();
const machine = `${cpus().length} × ${cpus()[0]?.model ?? "CPU"}, load average ${loadavg().map((x) => x.toFixed(2)).join(" ")}`;
const fmt = (x: number | null | undefined, digits = 0) => (x == null || Number.isNaN(x) ? "—" : x.toFixed(digits));
const md = [
  `# Durable accept: spool in PostgreSQL vs the journal spool`,
  ``,
  `${when}; ${machine}; Petrel pinned to CPU ${SERVER_CPU ?? "—"} and the load (${generator}) to CPU ${LOAD_CPU ?? "—"}, PostgreSQL not pinned.`,
  `PostgreSQL ${settings.server_version ?? "?"}, private, default durability (fsync ${settings.fsync ?? "?"}, synchronous_commit ${settings.synchronous_commit ?? "?"}, commit_delay ${settings.commit_delay ?? "?"}).`,
  `1 KiB × ${SESSIONS} sessions, connections reused, ${MESSAGES} messages a run, ${RUNS} runs each (min / median / max).`,
  ``,
  `| spool | msg/s min | median | max |`,
  `| --- | ---: | ---: | ---: |`,
  `| journal (local disk) | ${fmt(journal?.min)} | ${fmt(journal?.median)} | ${fmt(journal?.max)} |`,
  `| PostgreSQL | ${fmt(postgres?.min)} | ${fmt(postgres?.median)} | ${fmt(postgres?.max)} |`,
  ``,
  `PostgreSQL / journal (medians): **${fmt(ratio(postgres?.median, journal?.median), 2)}**; messages per PostgreSQL write transaction (group commit): ${fmt(perTransaction, 1)}.`,
  ...runs.filter((r) => !r.result.ok).map((r) => `- ${r.server}: a run failed: ${r.result.error}`),
  ``,
].join("\n");
await mkdir(join(BENCH_ROOT, "results"), { recursive: true });
await writeFile(join(BENCH_ROOT, "results", "postgres.json"), JSON.stringify({ when, machine, generator, pinned: pin, settings, messages: MESSAGES, sessions: SESSIONS, runs, journal, postgres, ratio: ratio(postgres?.median, journal?.median), perTransaction }, null, 2) + "\n");
await writeFile(join(BENCH_ROOT, "results", "postgres.md"), md);
process.stdout.write(md);
