/** A scriptable in-test LMTP server on 127.0.0.1:0 (or a UNIX socket). */
import { createServer, type Server, type Socket } from "node:net";
import { DataDecoder } from "../../src/smtp/data-decoder.ts";

export interface FakeLmtpScript {
  greeting?: string;
  /** LHLO extension lines (after the first line). */
  extensions?: string[];
  mail?: (arg: string) => string;
  rset?: () => string;
  rcpt?: (address: string) => string;
  /** The replies after the final dot, one per accepted recipient, in order. */
  afterData?: (accepted: string[], body: Buffer) => string[];
  /** Close the connection instead of answering this command verb ("RCPT", "DATA", "LHLO", ...), or after N post-data replies ("DOT:1"). */
  dropAt?: string;
  /** Never answer anything (no greeting). */
  silent?: boolean;
}

export interface FakeLmtp {
  readonly port: number;
  readonly commands: string[];
  readonly bodies: Buffer[];
  /** Connections accepted so far. */
  readonly connections: () => number;
  /** Connections open now. */
  readonly open: () => number;
  /** Write `text` on every open connection, unasked (e.g. a 421 before closing an idle one). */
  say(text: string, close?: boolean): void;
  close(): Promise<void>;
}

export async function startFakeLmtp(script: FakeLmtpScript, listenPath?: string): Promise<FakeLmtp> {
  const commands: string[] = [];
  const bodies: Buffer[] = [];
  const sockets = new Set<Socket>();
  let connections = 0;
  const server: Server = createServer((sock) => {
    connections++;
    sockets.add(sock);
    sock.on("close", () => sockets.delete(sock));
    sock.on("error", () => {});
    if (script.silent) return;
    sock.write((script.greeting ?? "220 fake LMTP ready") + "\r\n");
    let buf: Buffer = Buffer.alloc(0);
    let accepted: string[] = [];
    let decoder: DataDecoder | null = null;
    let body: Buffer[] = [];
    sock.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        if (decoder) {
          const r = decoder.feed(buf);
          body.push(...r.content);
          if (!r.done) {
            buf = Buffer.alloc(0);
            return;
          }
          buf = r.rest;
          decoder = null;
          const whole = Buffer.concat(body);
          bodies.push(whole);
          const replies = script.afterData?.(accepted, whole) ?? accepted.map((a) => `250 2.0.0 <${a}> Saved`);
          const limit = script.dropAt?.startsWith("DOT:") ? Number(script.dropAt.slice(4)) : Infinity;
          for (let i = 0; i < replies.length; i++) {
            if (i >= limit) {
              sock.destroy();
              return;
            }
            sock.write(replies[i] + "\r\n");
          }
          continue;
        }
        const lf = buf.indexOf("\r\n");
        if (lf === -1) return;
        const line = buf.subarray(0, lf).toString("utf8");
        buf = buf.subarray(lf + 2);
        commands.push(line);
        const verb = line.split(/[ :]/)[0].toUpperCase();
        if (script.dropAt === verb) {
          sock.destroy();
          return;
        }
        if (verb === "LHLO") {
          const ext = script.extensions ?? ["8BITMIME", "ENHANCEDSTATUSCODES", "PIPELINING"];
          sock.write(["fake", ...ext].map((e, i, all) => `250${i === all.length - 1 ? " " : "-"}${e}\r\n`).join(""));
        } else if (verb === "MAIL") {
          accepted = [];
          sock.write((script.mail?.(line) ?? "250 2.1.0 OK") + "\r\n");
        } else if (verb === "RCPT") {
          const addr = /<(.*)>/.exec(line)![1];
          const reply = script.rcpt?.(addr) ?? "250 2.1.5 OK";
          if (reply.startsWith("2")) accepted.push(addr);
          sock.write(reply + "\r\n");
        } else if (verb === "DATA") {
          if (accepted.length === 0) sock.write("503 5.5.1 No valid recipients\r\n");
          else {
            sock.write("354 OK\r\n");
            decoder = new DataDecoder("reject");
            body = [];
          }
        } else if (verb === "RSET") {
          accepted = [];
          const reply = script.rset?.() ?? "250 2.0.0 OK";
          sock.write(reply + "\r\n");
          if (reply.startsWith("421")) sock.end();
        } else if (verb === "QUIT") {
          sock.end("221 2.0.0 Bye\r\n");
        } else {
          sock.write("500 5.5.1 Unknown command\r\n");
        }
      }
    });
  });
  await new Promise<void>((resolve) => (listenPath ? server.listen(listenPath, resolve) : server.listen(0, "127.0.0.1", resolve)));
  const addr = server.address();
  return {
    port: typeof addr === "object" && addr ? addr.port : 0,
    commands,
    bodies,
    connections: () => connections,
    open: () => sockets.size,
    say(text, close = false) {
      for (const s of sockets) {
        s.write(text);
        if (close) s.end();
      }
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
