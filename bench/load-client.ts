/**
 * Petrel's own SMTP load generator (bench-only), run as a child process:
 *
 *   node bench/load-client.ts '{"host":"127.0.0.11","port":10025,"sessions":50,
 *        "messages":1000,"size":1024,"reuse":true,"timeoutMs":60000}'
 *
 * `sessions` connections in parallel send `messages` messages in total of
 * `size` body bytes each (plus ~130 bytes of headers), one recipient each, without
 * pipelining (like smtp-source). With `reuse` a session sends message after
 * message on one connection (RSET-free: MAIL starts the next transaction);
 * without it every message has its own connection (greeting, EHLO, QUIT).
 * Bounded in count and in time: at `timeoutMs` every session stops.
 *
 * Latency is measured per transaction from writing MAIL FROM to reading the
 * final reply after the body (the "250 queued"). Prints one JSON line.
 */
import * as net from "node:net";

interface Options {
  host: string;
  port: number;
  sessions: number;
  messages: number;
  size: number;
  reuse: boolean;
  timeoutMs: number;
  from?: string;
  to?: string;
}

const opts = JSON.parse(process.argv[2] ?? "{}") as Options;
const from = opts.from ?? "sender@source.bench.test";
const to = opts.to ?? "u@bench.test";

/**
 * A message: a few header fields, a blank line, then `size` octets of body in
 * 78-character lines (like smtp-source -l, the size does not count headers).
 */
export function makeMessage(size: number): Buffer {
  const head = `From: <${from}>\r\nTo: <${to}>\r\nSubject: bench\r\nMessage-ID: <bench@source.bench.test>\r\n\r\n`;
  const parts: string[] = [head];
  let left = size;
  const line = "x".repeat(78) + "\r\n";
  while (left >= line.length) {
    parts.push(line);
    left -= line.length;
  }
  if (left >= 2) parts.push("x".repeat(left - 2) + "\r\n");
  return Buffer.from(parts.join("") + ".\r\n", "latin1");
}

/** Reads SMTP replies (possibly multi-line) from a socket, one promise per reply. */
class ReplyReader {
  private buf = "";
  private lines: string[] = [];
  private waiting: { resolve: (r: { code: number; text: string }) => void; reject: (e: Error) => void } | null = null;
  private ended: Error | null = null;
  private pending: { code: number; text: string }[] = [];
  constructor(socket: net.Socket) {
    socket.setEncoding("latin1");
    socket.on("data", (d: string) => {
      this.buf += d;
      let nl: number;
      while ((nl = this.buf.indexOf("\n")) >= 0) {
        const line = this.buf.slice(0, nl).replace(/\r$/, "");
        this.buf = this.buf.slice(nl + 1);
        this.lines.push(line);
        if (line.length < 4 || line[3] !== "-") this.deliver();
      }
    });
    const fail = (e: Error) => {
      this.ended = e;
      if (this.waiting) {
        const w = this.waiting;
        this.waiting = null;
        w.reject(e);
      }
    };
    socket.on("error", (e) => fail(e));
    socket.on("close", () => fail(new Error("connection closed")));
  }
  private deliver(): void {
    const text = this.lines.join("\n");
    this.lines = [];
    const r = { code: Number(text.slice(0, 3)), text };
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = null;
      w.resolve(r);
    } else this.pending.push(r);
  }
  next(): Promise<{ code: number; text: string }> {
    const r = this.pending.shift();
    if (r) return Promise.resolve(r);
    if (this.ended) return Promise.reject(this.ended);
    return new Promise((resolve, reject) => (this.waiting = { resolve, reject }));
  }
}

class ReplyError extends Error {}

async function expect(reader: ReplyReader, code: number, what: string): Promise<void> {
  const r = await reader.next();
  if (r.code !== code) throw new ReplyError(`${what}: expected ${code}, got ${r.text.slice(0, 200)}`);
}

function connect(): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: opts.host, port: opts.port, noDelay: true });
    s.once("connect", () => {
      s.off("error", reject);
      resolve(s);
    });
    s.once("error", reject);
  });
}

const message = makeMessage(opts.size);
const latencies: number[] = [];
let claimed = 0;
let sent = 0;
let errors = 0;
let connections = 0;
const errorSamples: string[] = [];
const start = performance.now();
const deadline = start + opts.timeoutMs;
let timedOut = false;

async function openSession(): Promise<{ socket: net.Socket; reader: ReplyReader }> {
  const socket = await connect();
  connections++;
  const reader = new ReplyReader(socket);
  await expect(reader, 220, "greeting");
  socket.write("EHLO source.bench.test\r\n");
  await expect(reader, 250, "EHLO");
  return { socket, reader };
}

async function session(): Promise<void> {
  let conn: { socket: net.Socket; reader: ReplyReader } | null = null;
  while (claimed < opts.messages) {
    if (performance.now() > deadline) {
      timedOut = true;
      break;
    }
    claimed++;
    try {
      conn ??= await openSession();
      const { socket, reader } = conn;
      const t0 = performance.now();
      socket.write(`MAIL FROM:<${from}>\r\n`);
      await expect(reader, 250, "MAIL");
      socket.write(`RCPT TO:<${to}>\r\n`);
      await expect(reader, 250, "RCPT");
      socket.write("DATA\r\n");
      await expect(reader, 354, "DATA");
      socket.write(message);
      await expect(reader, 250, "end of data");
      latencies.push(performance.now() - t0);
      sent++;
      if (!opts.reuse) {
        socket.write("QUIT\r\n");
        await expect(reader, 221, "QUIT").catch(() => {});
        socket.destroy();
        conn = null;
      }
    } catch (err) {
      errors++;
      if (errorSamples.length < 5) errorSamples.push((err as Error).message);
      conn?.socket.destroy();
      conn = null;
    }
  }
  if (conn) {
    conn.socket.write("QUIT\r\n");
    await Promise.race([conn.reader.next().catch(() => {}), new Promise((r) => setTimeout(r, 1000))]);
    conn.socket.destroy();
  }
}

await Promise.all(Array.from({ length: Math.min(opts.sessions, opts.messages) }, () => session()));
const wallMs = performance.now() - start;
latencies.sort((a, b) => a - b);
const pct = (p: number) => (latencies.length === 0 ? null : latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))]);
process.stdout.write(JSON.stringify({
  sent, errors, connections, wallMs, timedOut, errorSamples,
  messagesPerSecond: sent / (wallMs / 1000),
  latencyMs: { p50: pct(50), p90: pct(90), p99: pct(99), max: latencies.at(-1) ?? null },
}) + "\n");
