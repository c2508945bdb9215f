import * as net from "node:net";
import { PacketReader, type Packet } from "./protocol.ts";
import type { ServiceAddress } from "../../mail/service-address.ts";

/**
 * One socket to a filter: packets out, packets in, every wait bounded by a
 * timeout (Postfix's milter_connect_timeout, milter_command_timeout,
 * milter_content_timeout). Any failure — refused, reset, closed, late —
 * becomes a MilterUnavailable that the check turns into its default action.
 */

export class MilterUnavailable extends Error {
  override readonly name = "MilterUnavailable";
}

/** Replies larger than this are not from a sane filter (header values and reply texts are small). */
const MAX_PACKET = 1024 * 1024;

export class MilterConnection {
  private readonly socket: net.Socket;
  private readonly reader = new PacketReader(MAX_PACKET);
  private readonly packets: Packet[] = [];
  private waiter: ((p: Packet | Error) => void) | null = null;
  private failure: Error | null = null;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on("data", (chunk: Buffer) => {
      let got: Packet[];
      try {
        got = this.reader.feed(chunk);
      } catch (err) {
        this.fail(err as Error);
        return;
      }
      for (const p of got) this.deliver(p);
    });
    socket.on("error", (err) => this.fail(new MilterUnavailable(err.message)));
    socket.on("close", () => this.fail(new MilterUnavailable("the filter closed the connection")));
  }

  /** Connect within `timeoutMs`. */
  static open(address: ServiceAddress, timeoutMs: number): Promise<MilterConnection> {
    return new Promise((resolve, reject) => {
      const socket = address.kind === "unix" ? net.connect({ path: address.path }) : net.connect({ host: address.host, port: address.port });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new MilterUnavailable(`no connection within ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once("connect", () => {
        clearTimeout(timer);
        socket.removeAllListeners("error");
        socket.setNoDelay(true);
        resolve(new MilterConnection(socket));
      });
      socket.once("error", (err) => {
        clearTimeout(timer);
        socket.destroy();
        reject(new MilterUnavailable(`cannot connect: ${err.message}`));
      });
    });
  }

  /** Send packets; resolves once the socket took them (waits for drain: back-pressure toward the client). */
  async write(packets: readonly Buffer[], timeoutMs: number): Promise<void> {
    if (this.failure) throw this.failure;
    if (packets.length === 0) return;
    const flushed = this.socket.write(packets.length === 1 ? packets[0] : Buffer.concat(packets));
    if (flushed) return;
    await new Promise<void>((resolve, reject) => {
      const done = (err?: Error) => {
        clearTimeout(timer);
        this.socket.off("drain", onDrain);
        this.socket.off("close", onClose);
        if (err) reject(err);
        else resolve();
      };
      const onDrain = () => done();
      const onClose = () => done(this.failure ?? new MilterUnavailable("the filter closed the connection"));
      const timer = setTimeout(() => {
        const err = new MilterUnavailable(`the filter read nothing for ${timeoutMs} ms`);
        this.fail(err);
        done(err);
      }, timeoutMs);
      this.socket.on("drain", onDrain);
      this.socket.on("close", onClose);
    });
  }

  /** The next packet from the filter, within `timeoutMs`. */
  read(timeoutMs: number): Promise<Packet> {
    const queued = this.packets.shift();
    if (queued) return Promise.resolve(queued);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        const err = new MilterUnavailable(`no answer within ${timeoutMs} ms`);
        this.fail(err);
        reject(err);
      }, timeoutMs);
      this.waiter = (p) => {
        clearTimeout(timer);
        this.waiter = null;
        if (p instanceof Error) reject(p);
        else resolve(p);
      };
    });
  }

  /** Send what is given (QUIT), then close; never waits for the filter. */
  close(last?: Buffer): void {
    if (this.failure) return;
    this.failure = new MilterUnavailable("closed");
    if (last) this.socket.end(last);
    else this.socket.end();
    // A filter that never reads must not keep the socket open.
    this.socket.setTimeout(5000, () => this.socket.destroy());
    this.socket.unref();
  }

  get closed(): boolean {
    return this.failure !== null;
  }

  private deliver(p: Packet): void {
    if (this.waiter) this.waiter(p);
    else this.packets.push(p);
  }

  private fail(err: Error): void {
    if (this.failure === null) this.failure = err;
    this.socket.destroy();
    if (this.waiter) this.waiter(this.failure);
  }
}
