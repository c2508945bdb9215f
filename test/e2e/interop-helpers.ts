/**
 * Shared helpers for the interop-*.test.ts files: run the Python smtplib
 * driver, read the spool, split off Petrel's Received field, and a tiny SMTP
 * line client over real TCP / TLS sockets.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import * as net from "node:net";
import * as tls from "node:tls";
import { fileURLToPath } from "node:url";
import type { Envelope } from "../../src/mail/envelope.ts";
import type { TestPetrel } from "./petrel.ts";
import { requirePeer } from "../support/peers.ts";

export const PY_DRIVER = fileURLToPath(new URL("./py/smtp_steps.py", import.meta.url));

export type PyStep = Record<string, unknown> & { op: string };
export type PyResult =
  | { ok: true; value: any }
  | { ok: false; error: string; code?: number; message: string; recipients?: Record<string, [number, string]> };

/** Run the smtplib driver with `steps`; one result per step. */
export function runPy(steps: PyStep[], timeoutMs = 15_000): Promise<PyResult[]> {
  requirePeer("python3", "python3");
  return new Promise((resolve, reject) => {
    const child = spawn("python3", [PY_DRIVER], { stdio: ["pipe", "pipe", "pipe"], timeout: timeoutMs });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    child.on("error", reject);
    child.on("close", (code, signal) => {
      const stdout = Buffer.concat(out).toString("utf8");
      if (code !== 0) {
        reject(new Error(`python driver exited ${code ?? signal}: ${Buffer.concat(err).toString("utf8")}`));
        return;
      }
      try {
        resolve(JSON.parse(stdout) as PyResult[]);
      } catch (e) {
        reject(new Error(`bad driver output: ${stdout} ${Buffer.concat(err).toString("utf8")}`));
      }
    });
    child.stdin.end(JSON.stringify({ steps, timeout: timeoutMs / 1000 - 1 }));
  });
}

export function b64(s: string | Buffer): string {
  return Buffer.from(s).toString("base64");
}

/** Run a program; never rejects on exit status (the test asserts on it). */
export function run(cmd: string, args: string[], timeoutMs = 15_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], timeout: timeoutMs });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    child.on("error", reject);
    child.on("close", (code) => resolve({
      code, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8"),
    }));
  });
}

export async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(Buffer.isBuffer(c) ? c : Buffer.from(c as string));
  return Buffer.concat(parts);
}

export interface StoredMessage {
  id: string;
  envelope: Envelope;
  body: Buffer;
}

/** Every committed message, oldest first. */
export async function spoolMessages(p: TestPetrel): Promise<StoredMessage[]> {
  const spool = p.server.spool;
  const out: StoredMessage[] = [];
  for (const id of await spool.list()) {
    out.push({ id, envelope: await spool.readEnvelope(id), body: await readAll(spool.readBody(id)) });
  }
  return out;
}

export async function onlyMessage(p: TestPetrel): Promise<StoredMessage> {
  const all = await spoolMessages(p);
  if (all.length !== 1) throw new Error(`expected exactly one message in the spool, found ${all.length}`);
  return all[0];
}

/** The stored message whose 250 reply named `id`. */
export async function messageById(p: TestPetrel, id: string): Promise<StoredMessage> {
  const spool = p.server.spool;
  return { id, envelope: await spool.readEnvelope(id), body: await readAll(spool.readBody(id)) };
}

/**
 * Split the body into the Received field Petrel prepended (the first line
 * and its folded continuation lines, CRLFs included) and everything after it.
 */
export function splitReceived(body: Buffer): { received: string; rest: Buffer } {
  if (!body.subarray(0, 10).equals(Buffer.from("Received: "))) throw new Error("body does not start with Received:");
  let i = 0;
  for (;;) {
    const lf = body.indexOf(0x0a, i);
    if (lf === -1) throw new Error("unterminated Received field");
    i = lf + 1;
    if (body[i] !== 0x20 && body[i] !== 0x09) break;
  }
  return { received: body.subarray(0, i).toString("utf8"), rest: body.subarray(i) };
}

/** The queue id from "250 2.0.0 Ok: queued as <id>". */
export function queuedId(text: string): string {
  const m = /Ok: queued as (\S+)/.exec(text);
  if (!m) throw new Error(`no queue id in ${JSON.stringify(text)}`);
  return m[1];
}

export function sha256(b: Buffer): string {
  return createHash("sha256").update(b).digest("hex");
}

/** A header field's value (unfolded) from a header section, or undefined. */
export function headerValue(message: Buffer, name: string): string | undefined {
  const text = message.toString("utf8");
  const end = text.indexOf("\r\n\r\n");
  const head = (end === -1 ? text : text.slice(0, end + 2)).replace(/\r\n[ \t]/g, " ");
  const re = new RegExp(`^${name}:[ \\t]*(.*)$`, "im");
  return re.exec(head)?.[1];
}

export function headerCount(message: Buffer, name: string): number {
  const text = message.toString("utf8");
  const end = text.indexOf("\r\n\r\n");
  const head = end === -1 ? text : text.slice(0, end + 2);
  return head.split("\r\n").filter((l) => l.toLowerCase().startsWith(name.toLowerCase() + ":")).length;
}

// ------------------------------------------------------------ line client

export interface SmtpReply {
  code: number;
  lines: string[];
  /** Every line joined with "\n", without the codes. */
  text: string;
}

/**
 * A minimal SMTP client over a real socket: write raw bytes, read whole
 * (multi-line) replies in order, upgrade to TLS, notice the close.
 */
export class LineClient {
  private socket: net.Socket | tls.TLSSocket;
  private buffer = Buffer.alloc(0);
  private replies: SmtpReply[] = [];
  private waiters: { resolve: (r: SmtpReply) => void; reject: (e: Error) => void }[] = [];
  private closedFlag = false;
  private closeWaiters: (() => void)[] = [];
  readonly closed: Promise<void>;

  private constructor(socket: net.Socket | tls.TLSSocket) {
    this.socket = socket;
    this.closed = new Promise((resolve) => this.closeWaiters.push(resolve));
    this.attach(socket);
  }

  static connect(port: number, options: { tls?: boolean } = {}): Promise<LineClient> {
    return new Promise((resolve, reject) => {
      const s: net.Socket = options.tls
        ? tls.connect({ host: "127.0.0.1", port, rejectUnauthorized: false }, () => resolve(client))
        : net.connect({ host: "127.0.0.1", port }, () => resolve(client));
      const client = new LineClient(s);
      s.once("error", reject);
    });
  }

  private attach(s: net.Socket): void {
    s.on("data", (b: Buffer) => this.onData(b));
    s.on("error", () => {});
    s.on("close", () => this.onClose());
  }

  private onData(b: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, b]);
    for (;;) {
      const r = this.parseOne();
      if (!r) break;
      const w = this.waiters.shift();
      if (w) w.resolve(r);
      else this.replies.push(r);
    }
  }

  private parseOne(): SmtpReply | null {
    const lines: string[] = [];
    let pos = 0;
    for (;;) {
      const lf = this.buffer.indexOf(0x0a, pos);
      if (lf === -1) return null;
      const line = this.buffer.subarray(pos, lf).toString("utf8").replace(/\r$/, "");
      pos = lf + 1;
      lines.push(line);
      if (!/^\d{3}-/.test(line)) {
        this.buffer = this.buffer.subarray(pos);
        return {
          code: Number(line.slice(0, 3)),
          lines,
          text: lines.map((l) => l.slice(4)).join("\n"),
        };
      }
    }
  }

  private onClose(): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    for (const w of this.waiters.splice(0)) w.reject(new Error("connection closed while waiting for a reply"));
    for (const c of this.closeWaiters) c();
  }

  get isClosed(): boolean {
    return this.closedFlag;
  }

  /** The next reply (buffered ones first). */
  read(): Promise<SmtpReply> {
    const r = this.replies.shift();
    if (r) return Promise.resolve(r);
    if (this.closedFlag) return Promise.reject(new Error("connection closed while waiting for a reply"));
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  async readN(n: number): Promise<SmtpReply[]> {
    const out: SmtpReply[] = [];
    for (let i = 0; i < n; i++) out.push(await this.read());
    return out;
  }

  /** Every reply until the server closes the connection. */
  async readUntilClosed(): Promise<SmtpReply[]> {
    const out: SmtpReply[] = [];
    for (;;) {
      try {
        out.push(await this.read());
      } catch {
        return out;
      }
    }
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** write + read one reply. */
  async cmd(line: string): Promise<SmtpReply> {
    this.write(line + "\r\n");
    return this.read();
  }

  /** Upgrade the plain socket to TLS (after "220 Ready to start TLS"). */
  startTls(): Promise<void> {
    if (this.buffer.length > 0 || this.replies.length > 0) throw new Error("unread plaintext before TLS");
    const plain = this.socket;
    plain.removeAllListeners("data");
    plain.removeAllListeners("close");
    return new Promise((resolve, reject) => {
      const secure = tls.connect({ socket: plain, rejectUnauthorized: false }, () => resolve());
      secure.once("error", reject);
      this.socket = secure;
      this.attach(secure);
    });
  }

  end(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** Connect, read the greeting and EHLO; returns the client and the EHLO reply. */
export async function greet(port: number, options: { tls?: boolean; helo?: string } = {}): Promise<{ c: LineClient; ehlo: SmtpReply }> {
  const c = await LineClient.connect(port, options);
  const greeting = await c.read();
  if (greeting.code !== 220) throw new Error(`greeting ${greeting.lines.join("|")}`);
  const ehlo = await c.cmd(`EHLO ${options.helo ?? "raw.test"}`);
  return { c, ehlo };
}
