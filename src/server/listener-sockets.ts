/**
 * The listening sockets, bound before anything else is ready: `petrel serve`
 * binds them while it is still root (port 25), then gives up root, opens the
 * spool and only then serves. A connection that arrives in between waits,
 * unread, until `serve()` hands it to the SMTP server — nothing is said to a
 * client before Petrel runs as its final user.
 */
import * as net from "node:net";
import type { ListenerConfig } from "../config/schema.ts";

export interface ListenerSocket {
  readonly listener: ListenerConfig;
  readonly server: net.Server;
  /** The bound address and port (port 0 in the config becomes the real port). */
  readonly address: string;
  readonly port: number;
  /** Start serving: `onConnection` gets every connection, those already waiting first. */
  serve(onConnection: (socket: net.Socket) => void): void;
}

const ignoreError = () => {};

/** "127.0.0.1:25", "[::1]:25": an IPv6 address in brackets, as swaks and URLs write it (RFC 3986 §3.2.2). */
export function hostPort(address: string, port: number): string {
  return net.isIP(address) === 6 ? `[${address}]:${port}` : `${address}:${port}`;
}

/**
 * Bind every listener; on failure the ones already bound are closed and the
 * error (with its `address` and `port`) is thrown. At most `maxWaiting`
 * connections wait before serving starts; more are closed. `pauseOnConnect`:
 * nothing is read from a connection here, so it can be handed, whole, to
 * another process (the SMTP workers).
 */
export async function bindListeners(
  listeners: readonly ListenerConfig[], maxWaiting: number, options: { readonly pauseOnConnect?: boolean } = {},
): Promise<ListenerSocket[]> {
  const bound: ListenerSocket[] = [];
  try {
    for (const l of listeners) bound.push(await bindOne(l, maxWaiting, options.pauseOnConnect === true));
  } catch (err) {
    await closeListeners(bound);
    throw err;
  }
  return bound;
}

export function closeListeners(sockets: readonly ListenerSocket[]): Promise<void> {
  return Promise.all(sockets.map((s) => new Promise<void>((resolve) => s.server.close(() => resolve())))).then(() => {});
}

async function bindOne(l: ListenerConfig, maxWaiting: number, pauseOnConnect: boolean): Promise<ListenerSocket> {
  let handler: ((socket: net.Socket) => void) | null = null;
  const waiting: net.Socket[] = [];
  const server = net.createServer({ noDelay: true, pauseOnConnect }, (socket) => {
    if (handler) return handler(socket);
    if (waiting.length >= maxWaiting) return void socket.destroy();
    socket.on("error", ignoreError);
    waiting.push(socket);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: l.address, port: l.port }, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const addr = server.address() as net.AddressInfo;
  return {
    listener: l,
    server,
    address: addr.address,
    port: addr.port,
    serve(onConnection) {
      handler = onConnection;
      for (const socket of waiting.splice(0)) {
        socket.off("error", ignoreError);
        if (socket.destroyed) continue;
        onConnection(socket);
      }
    },
  };
}
