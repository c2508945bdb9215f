/**
 * Soak test: a real Petrel (`bin/petrel serve`, a child process) under many
 * idle connections, slowloris clients and a steady trickle of real mail.
 *
 *   npm run soak -- [--duration 180] [--connections 10000] [--slowloris 200]
 *                   [--interval 200] [--sources 49]
 *
 * - opens up to --connections connections (EHLO, then idle) spread over the
 *   loopback source addresses 127.0.0.2 … (--sources of them);
 * - --slowloris clients drip one byte every 2–5 s;
 * - a normal client (from 127.0.0.1) sends one message every --interval ms,
 *   each on a fresh connection, and must get its 250 within 30 s;
 * - samples the server's RSS (/proc/<pid>/status) every second.
 * At the end it prints the connections held, RSS per idle connection, the
 * normal client's latency p50/p99/max and failures, and RSS over the first
 * vs the last minute. Everything is bounded in count and in time. Exit code 1
 * if the normal client failed or fewer connections were held than asked.
 *
 * The script raises its own file-descriptor limit (re-exec through
 * `sh -c 'ulimit -n …'`); Petrel inherits it.
 */
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile, readFile } from "node:fs/promises";
import { createInterface } from "node:readline";
import net from "node:net";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { hashPassword } from "../src/accounts/password.ts";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..");

const { values } = parseArgs({
  options: {
    duration: { type: "string", default: "180" },
    connections: { type: "string", default: "10000" },
    slowloris: { type: "string", default: "200" },
    interval: { type: "string", default: "200" },
    sources: { type: "string", default: "49" },
    "fd-raised": { type: "boolean", default: false },
  },
  strict: true,
});
const DURATION = Number(values.duration) * 1000;
const CONNECTIONS = Number(values.connections);
const SLOWLORIS = Number(values.slowloris);
const INTERVAL = Number(values.interval);
const SOURCES = Math.min(Math.max(1, Number(values.sources)), 253);
const MESSAGE_TIMEOUT = 30_000;
/** Connections being opened at once while ramping up. */
const OPEN_CONCURRENCY = 256;
/** Ramp-up may take at most this share of the run. */
const RAMP_SHARE = 0.5;

// ------------------------------------------------------------ fd limit

function fdLimits(): { soft: number; hard: number } {
  const out = execFileSync("sh", ["-c", "ulimit -Sn; ulimit -Hn"], { encoding: "utf8" }).trim().split("\n");
  const num = (s: string): number => (s === "unlimited" ? Infinity : Number(s));
  return { soft: num(out[0]), hard: num(out[1]) };
}

const needed = CONNECTIONS + SLOWLORIS + 1000;
if (!values["fd-raised"]) {
  const { soft, hard } = fdLimits();
  if (soft < needed) {
    const target = Math.min(hard, 65536);
    if (target < needed) console.log(`warning: the hard fd limit is ${hard}; ${needed} would be needed`);
    const args = process.argv.slice(2).map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(" ");
    const cmd = `ulimit -n ${target} && exec '${process.execPath}' '${fileURLToPath(import.meta.url)}' --fd-raised ${args}`;
    const child = spawn("sh", ["-c", cmd], { stdio: "inherit" });
    child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
    await new Promise(() => {}); // the re-executed copy does the work
  }
}

// ------------------------------------------------------------- helpers

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function rssKiB(pid: number): Promise<number | null> {
  try {
    const status = await readFile(`/proc/${pid}/status`, "utf8");
    const m = /^VmRSS:\s+(\d+) kB/m.exec(status);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** Read replies from a socket: resolves with the next complete reply's code. */
class ReplyReader {
  private buf = "";
  private waiters: { resolve: (code: number) => void; reject: (e: Error) => void }[] = [];
  private ready: number[] = [];
  private failure: Error | null = null;

  constructor(socket: net.Socket) {
    socket.setEncoding("latin1");
    socket.on("data", (d: string) => {
      this.buf += d;
      for (;;) {
        const i = this.buf.indexOf("\r\n");
        if (i === -1) break;
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 2);
        if (line[3] === "-") continue;
        const code = Number(line.slice(0, 3));
        const w = this.waiters.shift();
        if (w) w.resolve(code);
        else this.ready.push(code);
      }
      if (this.buf.length > 100_000) this.buf = "";
    });
    const fail = (e: Error): void => {
      this.failure ??= e;
      for (const w of this.waiters.splice(0)) w.reject(this.failure);
    };
    socket.on("error", (e) => fail(e));
    socket.on("close", () => fail(new Error("connection closed")));
  }

  next(): Promise<number> {
    const r = this.ready.shift();
    if (r !== undefined) return Promise.resolve(r);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }
}

function connect(port: number, localAddress: string, timeout: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: "127.0.0.1", port, localAddress });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error("connect timeout"));
    }, timeout);
    s.once("connect", () => {
      clearTimeout(timer);
      resolve(s);
    });
    s.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: timeout`)), ms);
    }),
  ]);
}

// ------------------------------------------------------------ the run

const dataDir = await mkdtemp(join(tmpdir(), "petrel-soak-"));
const configPath = join(dataDir, "petrel.yaml");
const config = {
  hostname: "mx.soak.test",
  dataDir: join(dataDir, "data"),
  domains: ["soak.test"],
  listeners: [{ address: "127.0.0.1", port: 0, role: "mx" }],
  users: [{ address: "alice@soak.test", password: await hashPassword("soak test password") }],
  limits: {
    connections: CONNECTIONS + SLOWLORIS + 500,
    connectionsPerClient: Math.ceil(CONNECTIONS / SOURCES) + SLOWLORIS + 100,
    // Idle connections must outlive the run (the default is 300 s).
    commandTimeout: Math.max(300, Math.ceil(DURATION / 1000) + 120),
  },
  log: { level: "info" },
  admin: { enabled: false },
};
await writeFile(configPath, JSON.stringify(config, null, 2)); // JSON is YAML

console.log(`soak: ${CONNECTIONS} idle connections from ${SOURCES} source addresses, ${SLOWLORIS} slowloris, a message every ${INTERVAL} ms, for ${DURATION / 1000} s`);

const petrel: ChildProcess = spawn(join(root, "bin/petrel"), ["serve", "--config", configPath], {
  stdio: ["ignore", "pipe", "pipe"],
  cwd: dataDir,
});
let serverExited = false;
petrel.on("exit", () => {
  serverExited = true;
});
let logLines = 0;
const serverErrors: string[] = [];
const port = await new Promise<number>((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error("Petrel did not start listening within 30 s")), 30_000);
  createInterface({ input: petrel.stdout! }).on("line", (line) => {
    logLines++;
    try {
      const j = JSON.parse(line) as { msg?: string; port?: number; level?: number };
      if (j.msg === "listening" && j.port) {
        clearTimeout(timer);
        resolve(j.port);
      }
      if ((j.level ?? 0) >= 50 && serverErrors.length < 20) serverErrors.push(line.slice(0, 300));
    } catch {
      // not JSON
    }
  });
  petrel.on("exit", (code) => reject(new Error(`Petrel exited (${code}) before listening`)));
});
petrel.stderr!.resume();
const pid = petrel.pid!;
console.log(`Petrel pid ${pid} listening on 127.0.0.1:${port}`);

const t0 = Date.now();
const deadline = t0 + DURATION;
const samples: { t: number; rss: number; held: number }[] = [];
let held = 0; // idle connections currently open after EHLO
let stopping = false;

// RSS sampler.
const sampler = setInterval(async () => {
  const rss = await rssKiB(pid);
  if (rss !== null) samples.push({ t: Date.now() - t0, rss, held });
}, 1000);

// Baseline before any load.
await sleep(2000);
const baseline = (await rssKiB(pid)) ?? 0;

// Normal client: one message every INTERVAL ms, each on a fresh connection.
const latencies: number[] = [];
const failures: string[] = [];
let sent = 0;
async function sendOne(): Promise<void> {
  const start = Date.now();
  let socket: net.Socket | null = null;
  try {
    await withTimeout((async () => {
      socket = await connect(port, "127.0.0.1", MESSAGE_TIMEOUT);
      const r = new ReplyReader(socket);
      const expect = async (code: number, what: string): Promise<void> => {
        const got = await r.next();
        if (got !== code) throw new Error(`${what}: ${got}`);
      };
      const s = socket;
      await expect(220, "greeting");
      s.write("EHLO normal.test\r\n");
      await expect(250, "EHLO");
      s.write("MAIL FROM:<normal@client.test>\r\n");
      await expect(250, "MAIL");
      s.write("RCPT TO:<alice@soak.test>\r\n");
      await expect(250, "RCPT");
      s.write("DATA\r\n");
      await expect(354, "DATA");
      s.write(`Subject: soak ${sent}\r\nFrom: normal@client.test\r\nTo: alice@soak.test\r\n\r\nmessage ${sent}\r\n.\r\n`);
      await expect(250, "end of data");
      latencies.push(Date.now() - start);
      s.write("QUIT\r\n");
    })(), MESSAGE_TIMEOUT, "message");
  } catch (e) {
    failures.push(`${((Date.now() - t0) / 1000).toFixed(1)} s: ${(e as Error).message}`);
  } finally {
    const s = socket as net.Socket | null;
    if (s) setTimeout(() => s.destroy(), 1000).unref();
  }
}
const normalRuns: Promise<void>[] = [];
const normal = (async () => {
  while (Date.now() < deadline && !serverExited) {
    sent++;
    normalRuns.push(sendOne());
    await sleep(INTERVAL);
  }
})();

// Slowloris clients: greeting, then one byte every 2–5 s, for ever.
const sources = Array.from({ length: SOURCES }, (_, i) => `127.0.0.${i + 2}`);
const slowSockets: net.Socket[] = [];
let slowClosedByServer = 0;
const DRIP = "EHLO slow.test\r\nNOOP\r\nNOOP\r\nNOOP\r\n";
async function slowloris(i: number): Promise<void> {
  let s: net.Socket;
  try {
    s = await connect(port, sources[i % sources.length], 10_000);
  } catch {
    return;
  }
  slowSockets.push(s);
  s.on("data", () => {});
  s.on("error", () => {});
  s.on("close", () => {
    if (!stopping) slowClosedByServer++;
  });
  let k = 0;
  while (!stopping && !s.destroyed && Date.now() < deadline) {
    await sleep(2000 + Math.random() * 3000);
    if (stopping || s.destroyed) break;
    s.write(DRIP[k++ % DRIP.length]);
  }
}
const slow = Array.from({ length: SLOWLORIS }, (_, i) => slowloris(i));

// Idle connections: greeting, EHLO, then nothing.
const idleSockets: net.Socket[] = [];
let openFailures = 0;
const openErrors = new Map<string, number>();
let idleClosedByServer = 0;
async function openIdle(i: number): Promise<void> {
  try {
    const s = await connect(port, sources[i % sources.length], 20_000);
    s.on("error", () => {});
    const r = new ReplyReader(s);
    if ((await withTimeout(r.next(), 30_000, "greeting")) !== 220) throw new Error("no 220");
    s.write("EHLO idle.test\r\n");
    if ((await withTimeout(r.next(), 30_000, "EHLO")) !== 250) throw new Error("EHLO refused");
    idleSockets.push(s);
    held++;
    s.on("close", () => {
      held--;
      if (!stopping) idleClosedByServer++;
    });
  } catch (e) {
    openFailures++;
    const k = (e as Error).message.slice(0, 60);
    openErrors.set(k, (openErrors.get(k) ?? 0) + 1);
  }
}
const rampDeadline = t0 + DURATION * RAMP_SHARE;
let next = 0;
const opener = Array.from({ length: OPEN_CONCURRENCY }, async () => {
  while (next < CONNECTIONS && Date.now() < rampDeadline && !serverExited) await openIdle(next++);
});
await Promise.all(opener);
const rampSeconds = (Date.now() - t0) / 1000;
const heldAfterRamp = held;
const rssAfterRamp = (await rssKiB(pid)) ?? 0;
console.log(`ramp-up: ${held} idle connections held after ${rampSeconds.toFixed(1)} s (${openFailures} failed to open), RSS ${(rssAfterRamp / 1024).toFixed(1)} MiB`);

// Hold until the end, printing a line every 15 s.
while (Date.now() < deadline && !serverExited) {
  await sleep(Math.min(15_000, deadline - Date.now()));
  const last = samples.at(-1);
  console.log(`  ${((Date.now() - t0) / 1000).toFixed(0)} s: ${held} idle held, ${latencies.length}/${sent} messages ok, ${failures.length} failed, RSS ${last ? (last.rss / 1024).toFixed(1) : "?"} MiB`);
}
await normal;
await Promise.all(normalRuns);
const heldAtEnd = held;
const slowHeld = slowSockets.filter((s) => !s.destroyed).length;
const rssAtEnd = (await rssKiB(pid)) ?? 0;

// Tear down: clients first, then Petrel (SIGTERM, then SIGKILL after 30 s).
stopping = true;
clearInterval(sampler);
for (const s of [...idleSockets, ...slowSockets]) s.destroy();
await Promise.all(slow);
const exited = new Promise<void>((resolve) => (serverExited ? resolve() : petrel.once("exit", () => resolve())));
if (!serverExited) petrel.kill("SIGTERM");
const killTimer = setTimeout(() => petrel.kill("SIGKILL"), 30_000);
await exited;
clearTimeout(killTimer);
await rm(dataDir, { recursive: true, force: true });

// ------------------------------------------------------------ summary

const sorted = [...latencies].sort((a, b) => a - b);
const minute = (from: number, to: number): number[] => samples.filter((x) => x.t >= from && x.t < to).map((x) => x.rss);
const avg = (a: number[]): number => a.reduce((s, x) => s + x, 0) / Math.max(1, a.length);
const mib = (kib: number): string => `${(kib / 1024).toFixed(1)} MiB`;
const end = samples.at(-1)?.t ?? 0;
// The first full minute after ramp-up vs the last minute (they overlap on short runs).
const rampEnd = rampSeconds * 1000;
const firstMinute = minute(rampEnd, rampEnd + 60_000);
const lastMinute = minute(Math.max(0, end - 60_000), end + 1);
const peak = Math.max(0, ...samples.map((x) => x.rss));
const perConn = heldAfterRamp > 0 ? ((rssAfterRamp - baseline) * 1024) / heldAfterRamp : NaN;

console.log("\n=== soak summary ===");
console.log(`duration                  ${(DURATION / 1000).toFixed(0)} s (ramp-up ${rampSeconds.toFixed(1)} s)`);
console.log(`idle connections held     ${heldAfterRamp} after ramp-up, ${heldAtEnd} at the end (asked ${CONNECTIONS}; ${openFailures} failed to open${openErrors.size ? `: ${[...openErrors].map(([k, v]) => `${v}× ${k}`).join(", ")}` : ""}; ${idleClosedByServer} closed by the server)`);
console.log(`slowloris held            ${slowHeld} of ${SLOWLORIS} at the end (${slowClosedByServer} closed by the server)`);
console.log(`RSS                       baseline ${mib(baseline)}, after ramp-up ${mib(rssAfterRamp)}, end ${mib(rssAtEnd)}, peak ${mib(peak)}`);
console.log(`RSS per idle connection   ${(perConn / 1024).toFixed(1)} KiB`);
console.log(`RSS 1st minute after ramp ${mib(avg(firstMinute))} (min ${mib(Math.min(...firstMinute))}, max ${mib(Math.max(...firstMinute))})`);
console.log(`RSS last minute          ${mib(avg(lastMinute))} (min ${mib(Math.min(...lastMinute))}, max ${mib(Math.max(...lastMinute))})`);
console.log(`normal client             ${latencies.length}/${sent} messages got 250; latency p50 ${percentile(sorted, 50)} ms, p99 ${percentile(sorted, 99)} ms, max ${sorted.at(-1) ?? NaN} ms; ${failures.length} failure(s)`);
for (const f of failures.slice(0, 10)) console.log(`  failure ${f}`);
console.log(`server                    ${logLines} log lines, ${serverErrors.length} error line(s), exited ${serverExited ? "cleanly on SIGTERM" : "?"}`);
for (const e of serverErrors.slice(0, 5)) console.log(`  ${e}`);
const ok = failures.length === 0 && heldAfterRamp >= CONNECTIONS && serverErrors.length === 0;
console.log(ok ? "soak: PASS" : "soak: FAIL");
process.exit(ok ? 0 : 1);
