/**
 * Load generators, each run as a child process pinned to the load CPU:
 * Postfix's smtp-source (C, event-driven) when installed, else Petrel's
 * Node client (bench/load-client.ts), which also measures latency. Messages
 * per second are computed here from the generator's wall time.
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { NODE, pinned } from "./proc.ts";
import { BENCH_ROOT, PORT, RECIPIENT, SENDER } from "./servers.ts";

export type Generator = "smtp-source" | "node";

export interface LoadSpec {
  readonly host: string;
  readonly sessions: number;
  readonly messages: number;
  /** Body octets per message (headers not counted, as smtp-source -l). */
  readonly size: number;
  /** Several messages per connection (smtp-source -d). */
  readonly reuse: boolean;
  readonly timeoutMs: number;
}

export interface LoadResult {
  readonly generator: Generator;
  readonly sent: number;
  readonly wallMs: number;
  readonly messagesPerSecond: number;
  readonly ok: boolean;
  readonly timedOut: boolean;
  readonly error?: string;
  readonly latencyMs?: { p50: number | null; p90: number | null; p99: number | null; max: number | null };
}

function runChild(cmd: string, args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string; wallMs: number; timedOut: boolean }> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    let timedOut = false;
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, wallMs: performance.now() - t0, timedOut });
    });
  });
}

export async function runSmtpSource(spec: LoadSpec, cpu: string | null): Promise<LoadResult> {
  const args = [
    "-s", String(spec.sessions), "-m", String(spec.messages), "-l", String(spec.size),
    "-f", SENDER, "-t", RECIPIENT, "-M", "source.bench.test", "-C", "5",
    ...(spec.reuse ? ["-d"] : []),
    `${spec.host}:${PORT}`,
  ];
  const [cmd, argv] = pinned(cpu, "smtp-source", args);
  const r = await runChild(cmd, argv, spec.timeoutMs);
  const ok = r.code === 0 && !r.timedOut;
  // smtp-source stops at the first unexpected reply; when it fails nothing is counted.
  const sent = ok ? spec.messages : 0;
  return {
    generator: "smtp-source", sent, wallMs: r.wallMs, ok, timedOut: r.timedOut,
    messagesPerSecond: ok ? sent / (r.wallMs / 1000) : NaN,
    error: ok ? undefined : (r.timedOut ? `timed out after ${spec.timeoutMs} ms` : `exit ${r.code}: ${r.stderr.trim().slice(-500)}`),
  };
}

export async function runNodeClient(spec: LoadSpec, cpu: string | null): Promise<LoadResult> {
  const opts = { host: spec.host, port: PORT, sessions: spec.sessions, messages: spec.messages, size: spec.size, reuse: spec.reuse, timeoutMs: spec.timeoutMs, from: SENDER, to: RECIPIENT };
  const [cmd, argv] = pinned(cpu, NODE, [join(BENCH_ROOT, "load-client.ts"), JSON.stringify(opts)]);
  // The client stops itself at timeoutMs; the kill is the backstop.
  const r = await runChild(cmd, argv, spec.timeoutMs + 15_000);
  let out: { sent: number; errors: number; wallMs: number; timedOut: boolean; errorSamples: string[]; latencyMs: LoadResult["latencyMs"] } | null = null;
  try {
    out = JSON.parse(r.stdout.trim().split("\n").at(-1) ?? "");
  } catch {
    out = null;
  }
  if (!out) {
    return { generator: "node", sent: 0, wallMs: r.wallMs, messagesPerSecond: NaN, ok: false, timedOut: r.timedOut, error: `load client failed (${r.code}): ${r.stderr.slice(-500)}` };
  }
  const ok = out.errors === 0 && !out.timedOut && out.sent === spec.messages;
  return {
    generator: "node", sent: out.sent, wallMs: out.wallMs, ok, timedOut: out.timedOut,
    messagesPerSecond: ok ? out.sent / (out.wallMs / 1000) : NaN,
    latencyMs: out.latencyMs,
    error: ok ? undefined : `sent ${out.sent}/${spec.messages}, ${out.errors} errors${out.timedOut ? ", timed out" : ""}: ${out.errorSamples.join("; ")}`,
  };
}

export function runLoad(generator: Generator, spec: LoadSpec, cpu: string | null): Promise<LoadResult> {
  return generator === "smtp-source" ? runSmtpSource(spec, cpu) : runNodeClient(spec, cpu);
}
