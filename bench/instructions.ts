/**
 * Instructions per message: a repeatable figure where timings are noisy
 * (other programs on the machine). Runs one Petrel variant under Valgrind's
 * callgrind (V8 single-threaded, so the JIT and GC do the same work each
 * time), warms it up, zeroes the counters, sends the load, and reads the
 * user-space instructions executed (all threads: libuv's file-system workers
 * included; the kernel's share of a syscall is not counted).
 *
 *   node bench/instructions.ts [--server petrel-discard|petrel-durable|petrel-mta] [--messages N]
 *                              [--size OCTETS] [--sessions N] [--newconn] [--smtp-source]
 *
 * Needs valgrind (Debian package valgrind) and callgrind_control. Not part
 * of `npm run bench`: a run takes a minute or two.
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { NODE, which } from "./lib/proc.ts";
import { countFiles } from "./lib/postfix-peer.ts";
import { BENCH_ROOT, PORT, waitForGreeting } from "./lib/servers.ts";
import { runLoad, type Generator } from "./lib/load.ts";
import { treeCpuSeconds, waitServerIdle } from "./lib/quiet.ts";

const argv = process.argv.slice(2);
const option = (name: string, fallback: string): string => {
  const i = argv.indexOf(name);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : fallback;
};
const server = option("--server", "petrel-discard");
const messages = Number(option("--messages", "2000"));
const size = Number(option("--size", "1024"));
const sessions = Number(option("--sessions", "10"));
const reuse = !argv.includes("--newconn");
const MODES: Record<string, { mode: string; address: string }> = {
  "petrel-discard": { mode: "discard", address: "127.0.0.42" },
  "petrel-durable": { mode: "durable", address: "127.0.0.43" },
  "petrel-files": { mode: "files", address: "127.0.0.44" },
  "petrel-mta": { mode: "mta", address: "127.0.0.45" },
};
const target = MODES[server];
if (!target) throw new Error(`--server: one of ${Object.keys(MODES).join(", ")}`);
for (const tool of ["valgrind", "callgrind_control"]) {
  if (!which(tool)) throw new Error(`${tool} is not installed (Debian package valgrind)`);
}

const dir = await mkdtemp(join(tmpdir(), "petrel-instructions-"));
const out = join(dir, "callgrind.out");
const child = spawn("valgrind", [
  "--tool=callgrind", `--callgrind-out-file=${out}`, "--dump-line=no", "--compress-strings=no",
  NODE, "--single-threaded", join(BENCH_ROOT, "petrel-entry.ts"), target.mode, target.address, String(PORT), join(dir, "data"),
], { stdio: ["ignore", "ignore", "pipe"] });
let stderr = "";
child.stderr!.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
// The Node client writes each command and each message in one write and waits for every reply,
// so the server reads the same chunks every run (smtp-source's writes coalesce differently with timing).
const generator: Generator = argv.includes("--smtp-source") ? "smtp-source" : "node";
const maildir = join(dir, "data", "mail", "bench.test", "u", "new");

async function load(n: number): Promise<void> {
  const base = await countFiles(maildir);
  const r = await runLoad(generator, { host: target.address, sessions, size, reuse, messages: n, timeoutMs: 600_000 }, null);
  if (!r.ok) throw new Error(`load failed: ${r.error}`);
  if (target.mode === "mta") {
    for (let i = 0; i < 6000 && (await countFiles(maildir)) < base + n; i++) await sleep(100);
  }
  // Whatever the server still does for these messages (a delivery backlog) belongs to them.
  await waitServerIdle([child.pid!], 120_000, 1000);
}

function control(flag: string): void {
  const r = spawnSync("callgrind_control", [flag, String(child.pid)], { encoding: "utf8", timeout: 60_000 });
  if (r.status !== 0) throw new Error(`callgrind_control ${flag} failed: ${r.stderr}${r.stdout}`);
}

async function totals(): Promise<number> {
  const files = (await readdir(dir)).filter((f) => f.startsWith("callgrind.out"));
  let sum = 0;
  for (const f of files) {
    const text = await readFile(join(dir, f), "utf8");
    const m = /^(?:totals|summary): (\d+)/m.exec(text);
    if (m) sum += Number(m[1]);
  }
  return sum;
}

try {
  await waitForGreeting(target.address, PORT, 180_000);
  await load(Math.max(200, Math.floor(messages / 2))); // warm-up: JIT tiers, page cache
  control("--zero");
  const cpu0 = treeCpuSeconds(child.pid!);
  await load(messages);
  const cpu = treeCpuSeconds(child.pid!) - cpu0;
  // Earlier dumps (none unless asked) are removed so only this one is summed.
  for (const f of (await readdir(dir)).filter((f) => f.startsWith("callgrind.out"))) await rm(join(dir, f));
  control("--dump");
  for (let i = 0; i < 100 && (await totals()) === 0; i++) await sleep(200);
  const ir = await totals();
  const line = {
    server, messages, size, sessions, reuse, generator,
    instructionsPerMessage: Math.round(ir / messages),
    valgrindCpuMsPerMessage: Number(((cpu * 1000) / messages).toFixed(2)),
  };
  process.stdout.write(JSON.stringify(line) + "\n");
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n${stderr}\n`);
  process.exitCode = 1;
} finally {
  child.kill("SIGTERM");
  await Promise.race([new Promise((r) => child.once("exit", r)), sleep(30_000)]);
  if (child.exitCode === null) child.kill("SIGKILL");
  await rm(dir, { recursive: true, force: true });
}
