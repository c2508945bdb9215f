/**
 * A tiny scriptable SMTP server for the client's failure cases: it records
 * every packet and every command line, and answers with `respond(line)`.
 * DATA content (after a 354) is collected until <CRLF>.<CRLF>.
 */
import * as net from "node:net";

export interface FakeSmtp {
  readonly port: number;
  /** Every 'data' chunk as received (to observe pipelining). */
  readonly packets: string[];
  /** Command lines, in order (without CRLF). */
  readonly lines: string[];
  /** DATA contents received (wire form, terminator excluded). */
  readonly data: Buffer[];
  close(): Promise<void>;
}

export interface FakeOptions {
  /** Sent on connect; null sends nothing (a server that never answers). */
  greeting?: string | null;
  /** The reply (with CRLF) for a command line; null: say nothing; undefined: default behaviour. */
  respond?: (line: string, socket: net.Socket) => string | null | undefined;
  ehlo?: string;
  /** The reply after the data's terminator; null: silence. */
  dataReply?: string | null;
}

const DEFAULT_EHLO = "250-fake.test\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n";

export function startFake(options: FakeOptions = {}): Promise<FakeSmtp> {
  const packets: string[] = [];
  const lines: string[] = [];
  const data: Buffer[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("error", () => {});
    const greeting = options.greeting === undefined ? "220 fake.test ESMTP\r\n" : options.greeting;
    if (greeting !== null) s.write(greeting);
    let buf = Buffer.alloc(0);
    let inData = false;
    s.on("data", (chunk: Buffer) => {
      packets.push(chunk.toString("latin1"));
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        if (inData) {
          const end = buf.indexOf("\r\n.\r\n");
          const atStart = buf.subarray(0, 3).toString() === ".\r\n";
          if (end === -1 && !atStart) return;
          data.push(atStart ? Buffer.alloc(0) : buf.subarray(0, end + 2));
          buf = atStart ? buf.subarray(3) : buf.subarray(end + 5);
          inData = false;
          const dr = options.dataReply === undefined ? "250 2.0.0 Ok: queued as FAKE1\r\n" : options.dataReply;
          if (dr !== null) s.write(dr);
          continue;
        }
        const nl = buf.indexOf("\r\n");
        if (nl === -1) return;
        const line = buf.subarray(0, nl).toString("utf8");
        buf = buf.subarray(nl + 2);
        lines.push(line);
        const custom = options.respond?.(line, s);
        if (custom === null) continue;
        if (custom !== undefined) {
          s.write(custom);
          if (custom.startsWith("354")) inData = true;
          if (custom.startsWith("421") || custom.startsWith("221")) s.end();
          continue;
        }
        const verb = line.split(" ")[0].toUpperCase();
        if (verb === "EHLO") s.write(options.ehlo ?? DEFAULT_EHLO);
        else if (verb === "HELO") s.write("250 fake.test\r\n");
        else if (verb === "DATA") {
          s.write("354 go ahead\r\n");
          inData = true;
        } else if (verb === "QUIT") {
          s.write("221 2.0.0 bye\r\n");
          s.end();
        } else s.write("250 2.0.0 Ok\r\n");
      }
    });
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as net.AddressInfo).port;
      resolve({
        port, packets, lines, data,
        close: () => new Promise<void>((r) => {
          for (const s of sockets) s.destroy();
          server.close(() => r());
        }),
      });
    });
  });
}

/** A port nothing listens on (bound, then closed). */
export async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}
