/**
 * An HTTPS server on loopback that serves MTA-STS policies (RFC 8461 §3.2) the way a domain's
 * policy host does, for tests of Petrel as a sender: node:https with the certificates the test
 * gives (from its test CA, expired, self-signed …), one answer per Host name, every request
 * logged. Its port goes to Petrel through the `mtaStsPort` option, its address through the
 * test DNS server (mta-sts.<domain> A 127.0.0.1).
 *
 *   const web = await startPolicyServer({ cert, key });
 *   web.serve("mta-sts.a.test", { body: "version: STSv1\r\nmode: enforce\r\nmx: mx.a.test\r\nmax_age: 86400\r\n" });
 */
import * as https from "node:https";
import type { AddressInfo } from "node:net";
import { formatPolicy, type MtaStsMode } from "../../src/mta-sts/policy.ts";

export interface PolicyAnswer {
  readonly status?: number;
  readonly contentType?: string;
  readonly body?: string | Buffer;
  readonly headers?: Readonly<Record<string, string>>;
}

export interface PolicyServer {
  readonly port: number;
  readonly address: string;
  /** Host names asked for, in order (one entry per request). */
  readonly requests: string[];
  serve(host: string, answer: PolicyAnswer): void;
  /** Serve with another certificate from now on (new connections). */
  setCertificate(pair: { cert: string; key: string }): void;
  close(): Promise<void>;
}

export async function startPolicyServer(pair: { cert: string; key: string }, address = "127.0.0.1"): Promise<PolicyServer> {
  const answers = new Map<string, PolicyAnswer>();
  const requests: string[] = [];
  const server = https.createServer({ cert: pair.cert, key: pair.key }, (req, res) => {
    const host = (req.headers.host ?? "").toLowerCase().replace(/:\d+$/, "");
    requests.push(host);
    const a = req.url === "/.well-known/mta-sts.txt" ? answers.get(host) : undefined;
    if (!a) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
      return;
    }
    res.writeHead(a.status ?? 200, { "content-type": a.contentType ?? "text/plain", ...a.headers });
    res.end(a.body ?? "");
  });
  await new Promise<void>((resolve) => server.listen(0, address, resolve));
  return {
    port: (server.address() as AddressInfo).port,
    address,
    requests,
    serve: (host, answer) => void answers.set(host.toLowerCase(), answer),
    setCertificate: (p) => server.setSecureContext({ cert: p.cert, key: p.key }),
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A policy body as a domain publishes it (CRLF line ends, RFC 8461 §3.2), as Petrel's own hosting writes it. */
export function policyText(mode: MtaStsMode, mx: readonly string[], maxAgeSeconds = 86400): string {
  return formatPolicy({ mode, mx, maxAgeSeconds });
}
