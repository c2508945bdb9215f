/**
 * nodemailer's smtp-server as a peer, in its own process:
 *
 *   node bench/nodemailer-entry.ts fsync|discard ADDRESS PORT DIR
 *
 * smtp-server is not a dependency of Petrel; `npm run bench` installs it into
 * bench/.peers/ on demand. Plain SMTP (no STARTTLS, no AUTH), every sender
 * and recipient accepted, no logging, no reverse DNS lookup of the client
 * (Petrel does none; with it every connection waits for the resolver).
 *   fsync    each message is streamed into its own file in DIR, fsync'd and
 *            closed before "250" (no rename and no directory fsync: a little
 *            less work per message than Petrel's commit protocol)
 *   discard  the message stream is read and thrown away
 * Prints {"ready":true,...} when listening; stops on SIGTERM.
 */
import { createRequire } from "node:module";
import { mkdir, open } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";

const [mode, address, portText, dir] = process.argv.slice(2);
if (!["fsync", "discard"].includes(mode) || !address || !portText || !dir) {
  process.stderr.write("usage: nodemailer-entry.ts fsync|discard ADDRESS PORT DIR\n");
  process.exit(64);
}

const peers = join(import.meta.dirname, ".peers");
const require = createRequire(join(peers, "package.json"));
interface NmServer {
  listen(port: number, host: string, cb: () => void): void;
  close(cb: () => void): void;
  on(event: string, cb: (err: Error) => void): void;
}
type DataCallback = (err: Error | null, message?: string) => void;
const { SMTPServer } = require("smtp-server") as {
  SMTPServer: new (options: Record<string, unknown>) => NmServer;
};

await mkdir(dir, { recursive: true });
let seq = 0;

async function keep(stream: Readable): Promise<void> {
  const fh = await open(join(dir, `${process.pid}-${++seq}.eml`), "w", 0o600);
  try {
    for await (const chunk of stream) await fh.write(chunk as Buffer);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function discard(stream: Readable): Promise<void> {
  for await (const _chunk of stream) {
    // thrown away
  }
}

const server = new SMTPServer({
  name: "nodemailer.bench.test",
  secure: false,
  authOptional: true,
  disabledCommands: ["AUTH", "STARTTLS"],
  // Petrel does no reverse DNS lookup of clients; without this every connection waits for one
  disableReverseLookup: true,
  logger: false,
  size: 50 * 1024 * 1024,
  onData(stream: Readable, _session: unknown, callback: DataCallback) {
    (mode === "fsync" ? keep(stream) : discard(stream)).then(
      () => callback(null, "Message queued"),
      (err: unknown) => callback(err instanceof Error ? err : new Error(String(err))),
    );
  },
});
server.on("error", (err) => process.stderr.write(`smtp-server error: ${err.message}\n`));
await new Promise<void>((resolve) => server.listen(Number(portText), address, resolve));
process.stdout.write(JSON.stringify({ ready: true, pid: process.pid, port: Number(portText), mode }) + "\n");

const stop = () => server.close(() => process.exit(0));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
