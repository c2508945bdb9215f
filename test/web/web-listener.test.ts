/**
 * Petrel's HTTP and HTTPS listeners on their own: HTTP-01 answers only for
 * open challenge tokens (404 for everything else), the HTTPS listener reads
 * the ClientHello and answers "acme-tls/1" handshakes with the challenge
 * certificate (RFC 8737) and everything else with Petrel's certificate.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import * as http from "node:http";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tls from "node:tls";
import pino from "pino";
import acme from "acme-client";
import { acmeHttp01Handler, acmeTlsAlpnResponder, ChallengeResponses } from "../../src/acme/challenges.ts";
import { startHttpListener, startHttpsListener, type WebListener } from "../../src/web/web-listener.ts";
import { TlsContextProvider } from "../../src/server/tls-contexts.ts";
import { generateSelfSigned } from "../../src/server/tls-certificates.ts";
import { parseClientHello } from "../../src/web/client-hello.ts";

const log = pino({ level: "silent" });
const challenges = new ChallengeResponses();
let dir: string;
let httpListener: WebListener;
let httpsListener: WebListener;
let provider: TlsContextProvider;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "petrel-web-"));
  const pems = await generateSelfSigned("mail.example.test");
  await writeFile(join(dir, "c.pem"), pems.cert);
  await writeFile(join(dir, "k.pem"), pems.key);
  provider = new TlsContextProvider({ default: { cert: join(dir, "c.pem"), key: join(dir, "k.pem") }, watch: false });
  httpListener = await startHttpListener({ address: "127.0.0.1", port: 0, handlers: [acmeHttp01Handler(challenges)], log });
  httpsListener = await startHttpsListener({
    address: "127.0.0.1", port: 0, log, tls: provider, alpn: acmeTlsAlpnResponder(challenges),
    handlers: [(req, res) => (req.url === "/hello" ? (res.end("hello over TLS"), true) : false)],
  });
});

after(async () => {
  await httpListener.close();
  await httpsListener.close();
  provider.close();
  await rm(dir, { recursive: true, force: true });
});

function get(path: string, method = "GET"): Promise<{ status: number; body: string; type: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port: httpListener.port, path, method, agent: false }, (res) => {
      let body = "";
      res.on("data", (d: Buffer) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, type: res.headers["content-type"] }));
    });
    req.on("error", reject);
    req.end();
  });
}

test("HTTP-01: the key authorization for an open token, 404 for anything else", async () => {
  challenges.addHttp01("tok_EN-1", "tok_EN-1.thumbprint");
  try {
    const ok = await get("/.well-known/acme-challenge/tok_EN-1");
    assert.deepEqual([ok.status, ok.body], [200, "tok_EN-1.thumbprint"]);
    for (const path of ["/.well-known/acme-challenge/other", "/.well-known/acme-challenge/../../etc/passwd", "/", "/.well-known/mta-sts.txt", "/.well-known/acme-challenge/"]) {
      assert.equal((await get(path)).status, 404, path);
    }
    assert.equal((await get("/.well-known/acme-challenge/tok_EN-1", "POST")).status, 404);
  } finally {
    challenges.removeHttp01("tok_EN-1");
  }
  assert.equal((await get("/.well-known/acme-challenge/tok_EN-1")).status, 404);
});

function handshake(o: tls.ConnectionOptions): Promise<{ cert: tls.PeerCertificate; alpn: string | false }> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: "127.0.0.1", port: httpsListener.port, rejectUnauthorized: false, ...o }, () => {
      const r = { cert: s.getPeerCertificate(), alpn: s.alpnProtocol ?? false };
      s.destroy();
      resolve(r);
    });
    s.on("error", reject);
  });
}

test("TLS-ALPN-01: acme-tls/1 gets the challenge certificate for the name; others get Petrel's", async () => {
  // No open challenge for the name: the handshake is refused.
  await assert.rejects(handshake({ servername: "mail.example.test", ALPNProtocols: ["acme-tls/1"] }));

  const authz = { identifier: { type: "dns", value: "mail.example.test" } } as Parameters<typeof acme.crypto.createAlpnCertificate>[0];
  const [key, cert] = await acme.crypto.createAlpnCertificate(authz, "token.thumbprint");
  challenges.addTlsAlpn01("mail.example.test", cert, key);
  try {
    const r = await handshake({ servername: "mail.example.test", ALPNProtocols: ["acme-tls/1"] });
    assert.equal(r.alpn, "acme-tls/1");
    assert.ok(acme.crypto.isAlpnCertificateAuthorizationValid(`-----BEGIN CERTIFICATE-----\n${r.cert.raw.toString("base64")}\n-----END CERTIFICATE-----\n`, "token.thumbprint"));
    // An ordinary client at the same time gets the server's own certificate and HTTP.
    const normal = await handshake({ servername: "mail.example.test", ALPNProtocols: ["http/1.1"] });
    assert.equal(normal.cert.subject.CN, "mail.example.test");
    assert.equal(normal.alpn, "http/1.1");
    assert.notEqual(normal.cert.fingerprint256, r.cert.fingerprint256);
  } finally {
    challenges.removeTlsAlpn01("mail.example.test");
  }
});

test("the ClientHello parser reads SNI and ALPN from a real client's hello, and refuses non-TLS bytes", async () => {
  const hello = await new Promise<Buffer>((resolve) => {
    const server = http.createServer();
    const net = server.listen(0, "127.0.0.1", () => {
      const port = (net.address() as { port: number }).port;
      const s = tls.connect({ host: "127.0.0.1", port, servername: "Mail.Example.Test", ALPNProtocols: ["acme-tls/1"] });
      s.on("error", () => {});
    });
    server.on("connection", (socket) => socket.once("data", (d: Buffer) => {
      resolve(d);
      socket.destroy();
      server.close();
    }));
  });
  assert.deepEqual(parseClientHello(hello), { status: "ok", servername: "mail.example.test", alpn: ["acme-tls/1"] });
  assert.deepEqual(parseClientHello(hello.subarray(0, 20)), { status: "incomplete" });
  assert.equal(parseClientHello(Buffer.from("GET / HTTP/1.1\r\n\r\n")).status, "invalid");
  // Split across two records (RFC 8446 §5.1 allows it).
  const body = hello.subarray(5);
  const cut = 40;
  const rec = (b: Buffer) => Buffer.concat([Buffer.from([22, 3, 1, b.length >> 8, b.length & 0xff]), b]);
  assert.deepEqual(parseClientHello(Buffer.concat([rec(body.subarray(0, cut)), rec(body.subarray(cut))])), { status: "ok", servername: "mail.example.test", alpn: ["acme-tls/1"] });
  // Plain HTTPS still works through the same listener.
  const res = await new Promise<string>((resolve, reject) => {
    const s = tls.connect({ host: "127.0.0.1", port: httpsListener.port, rejectUnauthorized: false, servername: "mail.example.test" }, () => {
      s.write("GET /hello HTTP/1.1\r\nHost: mail.example.test\r\nConnection: close\r\n\r\n");
    });
    let out = "";
    s.on("data", (d: Buffer) => (out += d));
    s.on("end", () => resolve(out));
    s.on("error", reject);
  });
  assert.match(res, /^HTTP\/1\.1 200/);
  assert.match(res, /hello over TLS$/);
});
