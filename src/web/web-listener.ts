/**
 * Petrel's own small HTTP and HTTPS listeners, for what the world fetches
 * from a mail server by URL: ACME HTTP-01 answers on port 80, and on port
 * 443 the MTA-STS policy and ACME TLS-ALPN-01 answers. Each serves only the
 * paths its handlers claim and answers 404 to everything else.
 *
 * The HTTPS listener reads each ClientHello first (client-hello.ts): a
 * client offering the ALPN responder's protocol ("acme-tls/1") gets the
 * TLS-ALPN-01 challenge certificate for its server name (RFC 8737 §3) and
 * nothing more; every other client
 * gets Petrel's certificates (SNI, hot reload, OCSP staples) with the strict
 * cipher policy, then HTTP/1.1.
 */
import * as http from "node:http";
import * as net from "node:net";
import * as tls from "node:tls";
import type { Logger } from "pino";
import type { TlsContextProvider } from "../server/tls-contexts.ts";
import type { OcspResponder } from "../server/ocsp.ts";
import { parseClientHello } from "./client-hello.ts";

/** Answers a request it claims (and returns true), or leaves it for the next handler. */
export type WebHandler = (req: http.IncomingMessage, res: http.ServerResponse) => boolean | Promise<boolean>;

export interface WebListener {
  readonly address: string;
  readonly port: number;
  close(): Promise<void>;
}

interface Common {
  readonly address: string;
  readonly port: number;
  readonly handlers: readonly WebHandler[];
  readonly log: Logger;
}

/**
 * A protocol whose handshakes get their own certificate, chosen by server name: ACME's
 * TLS-ALPN-01 ("acme-tls/1", RFC 8737). Undefined from `context`: no such handshake for that name.
 * `context` may have to ask elsewhere (another node's challenge, in the cluster's database); the
 * ClientHello waits, paused, for its answer.
 */
export interface AlpnResponder {
  readonly protocol: string;
  readonly context: (servername: string | undefined) => tls.SecureContext | undefined | Promise<tls.SecureContext | undefined>;
}

export interface HttpsListenerOptions extends Common {
  readonly tls: TlsContextProvider;
  readonly alpn?: AlpnResponder;
  readonly ocspResponse?: OcspResponder;
}

/** Time for a request's headers, for a whole request, and for a ClientHello. */
const TIMEOUT = 10_000;
const MAX_CONNECTIONS = 200;

export function startHttpListener(o: Common): Promise<WebListener> {
  const server = makeHttpServer(o.handlers);
  return listen(server, server, o, () => undefined);
}

export function startHttpsListener(o: HttpsListenerOptions): Promise<WebListener> {
  const web = makeHttpServer(o.handlers);
  const settings = o.tls.createServer(undefined, undefined, "submissions");
  const ocsp = o.ocspResponse;
  if (ocsp) settings.on("OCSPRequest", (cert: Buffer, issuer: Buffer | null, cb: (e: Error | null, r: Buffer | null) => void) => cb(null, ocsp(cert, issuer)));
  const log = o.log.child({ component: "https", port: o.port });
  const server = net.createServer((socket) => {
    socket.on("error", () => socket.destroy());
    socket.setTimeout(TIMEOUT, () => socket.destroy());
    let buf: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      const hello = parseClientHello(buf);
      if (hello.status === "incomplete") return;
      socket.removeListener("data", onData);
      socket.pause();
      if (hello.status === "invalid") {
        log.debug({ reason: hello.reason }, "not a TLS ClientHello");
        socket.destroy();
        return;
      }
      socket.unshift(buf); // the TLS socket reads the ClientHello again from here
      socket.setTimeout(0);
      if (o.alpn && hello.alpn.includes(o.alpn.protocol)) void answerAlpn(socket, hello.servername, o.alpn, log);
      else serveHttps(socket, o.tls, settings, web);
    };
    socket.on("data", onData);
  });
  server.maxConnections = MAX_CONNECTIONS;
  return listen(server, web, o, () => settings.close());
}

/** RFC 8737 §3: the challenge certificate, the protocol, then close; no application data. */
async function answerAlpn(socket: net.Socket, servername: string | undefined, alpn: AlpnResponder, log: Logger): Promise<void> {
  let context: tls.SecureContext | undefined;
  try {
    context = await alpn.context(servername);
  } catch {
    context = undefined;
  }
  if (socket.destroyed) return;
  if (!context) {
    log.info({ servername, protocol: alpn.protocol }, "ALPN handshake for a name with nothing to answer");
    socket.destroy();
    return;
  }
  const secure = new tls.TLSSocket(socket, { isServer: true, secureContext: context, ALPNProtocols: [alpn.protocol] });
  secure.on("error", () => secure.destroy());
  secure.once("secure", () => secure.end());
  log.info({ servername, protocol: alpn.protocol }, "TLS-ALPN-01 challenge answered");
}

function serveHttps(socket: net.Socket, provider: TlsContextProvider, settings: tls.Server, web: http.Server): void {
  const secure = new tls.TLSSocket(socket, {
    isServer: true,
    ...provider.serverOptions(undefined, "submissions"),
    ALPNProtocols: ["http/1.1"],
    server: settings,
  });
  secure.on("error", () => secure.destroy());
  secure.setTimeout(TIMEOUT, () => secure.destroy());
  secure.once("secure", () => web.emit("connection", secure));
}

function makeHttpServer(handlers: readonly WebHandler[]): http.Server {
  const server = http.createServer({ headersTimeout: TIMEOUT, requestTimeout: TIMEOUT, keepAliveTimeout: 5_000 }, (req, res) => {
    void (async () => {
      try {
        for (const h of handlers) if (await h(req, res)) return;
        respond(res, 404, "Not found\n");
      } catch {
        if (!res.headersSent) respond(res, 500, "Internal error\n");
        else res.destroy();
      }
    })();
  });
  server.maxConnections = MAX_CONNECTIONS;
  return server;
}

/** A text/plain answer; HEAD gets the headers only. */
export function respond(res: http.ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, {
    "content-type": "text/plain; charset=utf-8",
    "content-length": Buffer.byteLength(body),
    "cache-control": "no-store",
    ...headers,
  });
  res.end(res.req.method === "HEAD" ? undefined : body);
}

function listen(server: net.Server, web: http.Server, o: Common, onClose: () => void): Promise<WebListener> {
  const sockets = new Set<net.Socket>();
  server.on("connection", (s: net.Socket) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: o.address, port: o.port }, () => {
      server.off("error", reject);
      server.on("error", (err) => o.log.error({ err }, "web listener error"));
      const a = server.address() as net.AddressInfo;
      o.log.info({ address: a.address, port: a.port }, server === web ? "HTTP listening" : "HTTPS listening");
      resolve({
        address: a.address,
        port: a.port,
        close: () =>
          new Promise<void>((done) => {
            onClose();
            server.close(() => done());
            if (server !== web) web.close();
            for (const s of sockets) s.destroy();
          }),
      });
    });
  });
}
