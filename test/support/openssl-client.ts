/**
 * `openssl s_client` (Debian package openssl) driven from a test: a handshake
 * with chosen suites, and a client-initiated renegotiation ("R" on stdin).
 * Every wait is for text s_client prints, bounded by a timeout; the process
 * is killed if it outlives it.
 */
import { spawn } from "node:child_process";
import { requirePeer } from "./peers.ts";

/** The openssl program; fails the test with the package name when it is missing. */
export function requireOpenssl(): string {
  return requirePeer("openssl", "openssl");
}

export interface SClientOptions {
  readonly port: number;
  readonly host?: string;
  /** "smtp": STARTTLS first (ports 25/587); absent: implicit TLS. */
  readonly starttls?: "smtp";
  /** -cipher (TLS 1.2 suites). */
  readonly cipher?: string;
  /** -tls1_2, -tls1_3 … */
  readonly version?: "-tls1_2" | "-tls1_3";
  readonly servername?: string;
  readonly extra?: readonly string[];
  readonly timeoutMs?: number;
}

export interface SClient {
  /** Everything printed so far (stdout and stderr). */
  output(): string;
  /** Resolves when `pattern` has appeared in the output; rejects on timeout or exit without it. */
  waitFor(pattern: RegExp): Promise<string>;
  write(text: string): void;
  end(): void;
  /** Resolves with the exit code once the process has ended. */
  readonly exited: Promise<number | null>;
  kill(): void;
}

export function sClient(o: SClientOptions): SClient {
  const args = ["s_client", "-connect", `${o.host ?? "127.0.0.1"}:${o.port}`, "-crlf"];
  if (o.starttls) args.push("-starttls", o.starttls);
  if (o.version) args.push(o.version);
  if (o.cipher) args.push("-cipher", o.cipher);
  if (o.servername) args.push("-servername", o.servername);
  args.push(...(o.extra ?? []));
  const child = spawn(requireOpenssl(), args, { stdio: ["pipe", "pipe", "pipe"] });
  let out = "";
  const waiters: Array<{ pattern: RegExp; resolve: (s: string) => void; reject: (e: Error) => void }> = [];
  const check = () => {
    for (const w of [...waiters]) {
      const m = w.pattern.exec(out);
      if (m) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m[0]);
      }
    }
  };
  child.stdout.on("data", (d: Buffer) => ((out += d.toString("latin1")), check()));
  child.stderr.on("data", (d: Buffer) => ((out += d.toString("latin1")), check()));
  child.stdin.on("error", () => {});
  const timeout = o.timeoutMs ?? 15_000;
  const timer = setTimeout(() => child.kill("SIGKILL"), timeout);
  const exited = new Promise<number | null>((resolve) => {
    child.on("close", (code) => {
      clearTimeout(timer);
      for (const w of waiters.splice(0)) w.reject(new Error(`s_client ended without printing ${w.pattern}:\n${out}`));
      resolve(code);
    });
  });
  return {
    output: () => out,
    waitFor(pattern) {
      return new Promise((resolve, reject) => {
        waiters.push({ pattern, resolve, reject });
        check();
      });
    },
    write: (text) => void child.stdin.write(text),
    end: () => child.stdin.end(),
    exited,
    kill: () => child.kill("SIGKILL"),
  };
}

/**
 * One handshake and nothing else; the negotiated cipher, or null when the
 * handshake failed (with s_client's output, to show why).
 */
export async function handshakeCipher(o: SClientOptions): Promise<{ cipher: string | null; output: string }> {
  const c = sClient(o);
  c.end();
  await c.exited;
  const out = c.output();
  const m = /Cipher is (\S+)/.exec(out);
  const cipher = m && m[1] !== "(NONE)" ? m[1] : null;
  return { cipher, output: out };
}
