/**
 * A loopback SMTP server that accepts every message and records it: the next hop of a relay
 * under test, counting what it got by Message-ID (duplicates included). Speaks enough RFC 5321
 * for Petrel's SMTP client: EHLO (PIPELINING, 8BITMIME, SMTPUTF8), MAIL, RCPT, DATA, RSET,
 * NOOP, QUIT; no TLS (the transport route says tls: none).
 *
 *   const sink = await startSmtpSink("127.0.62.1");
 *   after(() => sink.close());
 */
import { createServer, type Socket } from "node:net";

export interface SmtpSink {
  readonly host: string;
  readonly port: number;
  /** Messages received, by Message-ID (the header's value), how many times each. */
  readonly received: Map<string, number>;
  /** Every message's data (dot-unstuffed), in arrival order. */
  readonly messages: Buffer[];
  /** How long the sink waits before its reply to the end of data (a slow next hop: deliveries stay in flight). */
  delayMs: number;
  close(): Promise<void>;
}

export async function startSmtpSink(host = "127.0.0.1"): Promise<SmtpSink> {
  const received = new Map<string, number>();
  const messages: Buffer[] = [];
  const sockets = new Set<Socket>();
  const sink = { delayMs: 0 } as SmtpSink;
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    let buffer = Buffer.alloc(0);
    let data: Buffer[] | null = null;
    const reply = (s: string): void => void socket.write(`${s}\r\n`);
    reply("220 sink.test ESMTP");
    socket.on("data", (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      for (;;) {
        const eol = buffer.indexOf("\r\n");
        if (eol === -1) return;
        const line = buffer.subarray(0, eol);
        buffer = buffer.subarray(eol + 2);
        if (data !== null) {
          if (line.length === 1 && line[0] === 0x2e) {
            const body = Buffer.concat(data);
            data = null;
            messages.push(body);
            const id = /^Message-ID:\s*(\S+)/im.exec(body.toString("latin1"))?.[1] ?? "(none)";
            setTimeout(() => {
              // Counted when the 250 goes: a sender killed before it did not deliver.
              if (socket.destroyed) return;
              received.set(id, (received.get(id) ?? 0) + 1);
              reply("250 2.0.0 Ok: queued");
            }, sink.delayMs);
          } else {
            // RFC 5321 §4.5.2: a leading dot was doubled by the sender.
            data.push(line[0] === 0x2e ? line.subarray(1) : line, Buffer.from("\r\n"));
          }
          continue;
        }
        const verb = line.toString("latin1").slice(0, 4).toUpperCase();
        if (verb === "EHLO") reply("250-sink.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8");
        else if (verb === "HELO") reply("250 sink.test");
        else if (verb === "MAIL" || verb === "RCPT" || verb === "RSET" || verb === "NOOP") reply("250 2.0.0 Ok");
        else if (verb === "DATA") {
          data = [];
          reply("354 End data with <CR><LF>.<CR><LF>");
        } else if (verb === "QUIT") {
          reply("221 2.0.0 Bye");
          socket.end();
        } else reply("502 5.5.2 Error: command not recognized");
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, host, () => resolve());
  });
  const address = server.address();
  if (typeof address !== "object" || address === null) throw new Error("sink not listening");
  Object.assign(sink, {
    host, port: address.port, received, messages,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  });
  return sink;
}
