/**
 * Where the admin API (and /metrics) listen: plain HTTP on a loopback
 * address, HTTPS with the server's certificates (SNI, reloads) anywhere
 * else — a token crossing a network is never sent in clear. The socket is
 * bound with the SMTP listeners, before privileges are dropped; the
 * application is attached once the queue and the accounts are open (until
 * then every request gets 503).
 */
import * as http from "node:http";
import * as https from "node:https";
import type { AddressInfo } from "node:net";
import { getRequestListener } from "@hono/node-server";
import type { Logger } from "pino";
import { isLoopback } from "../config/schema.ts";
import type { TlsContextProvider } from "../server/tls-contexts.ts";

export interface AdminListener {
  readonly address: string;
  readonly port: number;
  readonly tls: boolean;
  /** Serve requests with `fetch` (a hono app's) from now on. */
  serve(fetch: (request: Request) => Response | Promise<Response>): void;
  close(): Promise<void>;
}

const MAX_CONNECTIONS = 200;

export async function bindAdminListener(o: { address: string; port: number; tls: TlsContextProvider; log: Logger; name: string }): Promise<AdminListener> {
  const secure = !isLoopback(o.address);
  let handler: http.RequestListener = (_req, res) => {
    res.writeHead(503, { "Content-Type": "application/json", "Retry-After": "1" });
    res.end(JSON.stringify({ error: "starting" }) + "\n");
  };
  const listener: http.RequestListener = (req, res) => handler(req, res);
  const server = secure ? https.createServer({ ...o.tls.serverOptions(undefined, "submissions"), ALPNProtocols: ["http/1.1"] }, listener) : http.createServer(listener);
  if (secure) o.tls.attach(server as https.Server, undefined, "submissions");
  server.maxConnections = MAX_CONNECTIONS;
  server.headersTimeout = 10_000;
  server.requestTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: o.address, port: o.port }, () => {
      server.off("error", reject);
      resolve();
    });
  });
  server.on("error", (err) => o.log.error({ err }, `${o.name} listener error`));
  const bound = server.address() as AddressInfo;
  const host = bound.address.includes(":") ? `[${bound.address}]` : bound.address;
  o.log.info({ address: bound.address, port: bound.port, tls: secure, url: `${secure ? "https" : "http"}://${host}:${bound.port}/` }, `${o.name} listening`);
  return {
    address: bound.address,
    port: bound.port,
    tls: secure,
    serve(fetch) {
      handler = getRequestListener(fetch, { errorHandler: (err) => void o.log.error({ err }, `${o.name} request failed`) });
    },
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      // Live event streams never end by themselves.
      server.closeAllConnections();
    }),
  };
}
