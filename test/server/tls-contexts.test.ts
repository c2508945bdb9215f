import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdir, mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import * as tls from "node:tls";
import { ConfigError } from "../../src/config/config-error.ts";
import { parseConfig } from "../../src/config/load.ts";
import { generateSelfSigned } from "../../src/server/tls-certificates.ts";
import { TlsContextProvider } from "../../src/server/tls-contexts.ts";
import { TlsCertificateError } from "../../src/server/tls-certificate-pair.ts";
import type { CertKeyPaths, CertificateInfo } from "../../src/server/tls-certificate-pair.ts";

let root = "";
let n = 0;

/** A fresh directory with a certificate for `cn` (+ names) as cert.pem / key.pem. */
async function makePair(cn: string, names: string[] = []): Promise<CertKeyPaths> {
  const dir = join(root, `pair-${n++}`);
  await mkdir(dir);
  const pems = await generateSelfSigned(cn, { extraNames: names });
  await writeFile(join(dir, "cert.pem"), pems.cert);
  await writeFile(join(dir, "key.pem"), pems.key, { mode: 0o600 });
  return { cert: join(dir, "cert.pem"), key: join(dir, "key.pem") };
}

/** Replace a file the way ACME clients do: write a new file, rename it over the old. */
async function replaceFile(path: string, content: string): Promise<void> {
  await writeFile(`${path}.new`, content);
  await rename(`${path}.new`, path);
}

/** The subject CN of the certificate a TLS client gets. */
function peerCN(port: number, servername?: string, options: tls.ConnectionOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port, servername, rejectUnauthorized: false, ...options }, () => {
      const cert = socket.getPeerCertificate();
      socket.end();
      resolve(String(cert.subject.CN));
    });
    socket.on("error", reject);
  });
}

async function listen(server: net.Server): Promise<number> {
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return (server.address() as net.AddressInfo).port;
}

async function closeServer(server: net.Server): Promise<void> {
  server.close();
  await once(server, "close");
}

function tlsServer(provider: TlsContextProvider, listenerTls?: CertKeyPaths): tls.Server {
  const server = provider.createServer(listenerTls, (socket) => {
    socket.on("error", () => {});
    socket.end();
  });
  server.on("tlsClientError", () => {});
  return server;
}

const waitFor = <K extends "reload" | "reloadError">(provider: TlsContextProvider, event: K) =>
  once(provider, event, { signal: AbortSignal.timeout(5000) }) as Promise<
    K extends "reload" ? [CertificateInfo] : [TlsCertificateError]
  >;

before(async () => {
  root = await mkdtemp(join(tmpdir(), "petrel-tls-ctx-"));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("choosing a certificate by server name", () => {
  let provider: TlsContextProvider;
  let server: tls.Server;
  let port = 0;

  before(async () => {
    const [def, a, b, wild] = await Promise.all([
      makePair("default.test"),
      makePair("a.test", ["exact.wild.test"]),
      makePair("b.test"),
      makePair("wild.test", ["*.wild.test"]),
    ]);
    provider = new TlsContextProvider({
      default: def,
      sni: [
        { names: ["a.test", "exact.wild.test"], ...a },
        { names: ["b.test"], ...b },
        { names: ["*.wild.test"], ...wild },
      ],
    });
    server = tlsServer(provider);
    port = await listen(server);
  });
  after(async () => {
    provider.close();
    await closeServer(server);
  });

  test("exact names", async () => {
    assert.equal(await peerCN(port, "a.test"), "a.test");
    assert.equal(await peerCN(port, "b.test"), "b.test");
    assert.equal(await peerCN(port, "B.TEST"), "b.test");
  });

  test("a wildcard matches exactly one label; an exact name wins over it", async () => {
    assert.equal(await peerCN(port, "x.wild.test"), "wild.test");
    assert.equal(await peerCN(port, "exact.wild.test"), "a.test");
    assert.equal(await peerCN(port, "y.x.wild.test"), "default.test");
    assert.equal(await peerCN(port, "wild.test"), "default.test");
  });

  test("unknown name or no name at all: the default", async () => {
    assert.equal(await peerCN(port, "unknown.test"), "default.test");
    assert.equal(await peerCN(port), "default.test");
  });

  test("certificateFor agrees", () => {
    assert.equal(provider.certificateFor("x.wild.test").subject, "CN=wild.test");
    assert.equal(provider.certificateFor(undefined).subject, "CN=default.test");
    assert.equal(provider.certificates().length, 4);
  });
});

describe("per-listener certificate and STARTTLS-style sockets", () => {
  test("a listener's own certificate replaces the default; SNI entries still apply", async () => {
    const [def, own, a] = await Promise.all([makePair("default.test"), makePair("own.test"), makePair("a.test")]);
    const provider = new TlsContextProvider({ default: def, sni: [{ names: ["a.test"], ...a }], watch: false });
    const server = tlsServer(provider, own);
    const port = await listen(server);
    try {
      assert.equal(await peerCN(port), "own.test");
      assert.equal(await peerCN(port, "other.test"), "own.test");
      assert.equal(await peerCN(port, "a.test"), "a.test");
    } finally {
      provider.close();
      await closeServer(server);
    }
  });

  test("new tls.TLSSocket(socket, { isServer: true, ...serverOptions() }) gets the current certificate", async () => {
    const def = await makePair("before.test");
    const provider = new TlsContextProvider({ default: def, debounceMs: 10 });
    const server = net.createServer((raw) => {
      const socket = new tls.TLSSocket(raw, { isServer: true, ...provider.serverOptions() });
      socket.on("error", () => {});
      socket.on("secure", () => socket.end());
    });
    const port = await listen(server);
    try {
      assert.equal(await peerCN(port), "before.test");
      const next = await generateSelfSigned("after.test");
      const reloaded = waitFor(provider, "reload");
      await replaceFile(def.key, next.key);
      await replaceFile(def.cert, next.cert);
      await reloadedWithRetry(reloaded, provider, "after.test");
      assert.equal(await peerCN(port), "after.test");
    } finally {
      provider.close();
      await closeServer(server);
    }
  });
});

/**
 * Wait for the reload that brings in `cn`. Cert and key are replaced one after the other,
 * so a watcher may first see a half-replaced pair (reported, ignored); a bounded number
 * of events is awaited, never a fixed sleep.
 */
async function reloadedWithRetry(first: Promise<[CertificateInfo]>, provider: TlsContextProvider, cn: string): Promise<void> {
  let [info] = await first;
  for (let i = 0; i < 5 && info.subject !== `CN=${cn}`; i++) [info] = await waitFor(provider, "reload");
  assert.equal(info.subject, `CN=${cn}`);
}

describe("reload without restart", () => {
  let provider: TlsContextProvider;
  let server: tls.Server;
  let port = 0;
  let def: CertKeyPaths;
  const errors: TlsCertificateError[] = [];

  before(async () => {
    def = await makePair("v1.test");
    const sniPair = await makePair("sni-v1.test");
    provider = new TlsContextProvider({ default: def, sni: [{ names: ["sni.test"], ...sniPair }], debounceMs: 10, onError: (e) => errors.push(e) });
    server = tlsServer(provider);
    port = await listen(server);
  });
  after(async () => {
    provider.close();
    await closeServer(server);
  });

  test("replaced files are picked up by new connections, with and without SNI", async () => {
    assert.equal(await peerCN(port), "v1.test");
    assert.equal(await peerCN(port, "whatever.test"), "v1.test");
    const v2 = await generateSelfSigned("v2.test");
    const reloaded = waitFor(provider, "reload");
    await replaceFile(def.key, v2.key);
    await replaceFile(def.cert, v2.cert);
    await reloadedWithRetry(reloaded, provider, "v2.test");
    assert.equal(await peerCN(port), "v2.test");
    assert.equal(await peerCN(port, "whatever.test"), "v2.test");
    assert.equal(await peerCN(port, "sni.test"), "sni-v1.test");
  });

  test("a broken replacement keeps the old certificate and is reported", async () => {
    const current = provider.certificateFor().subject;
    const failed = waitFor(provider, "reloadError");
    await replaceFile(def.cert, "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n");
    const [err] = await failed;
    assert.ok(err instanceof TlsCertificateError);
    assert.equal(err.certPath, def.cert);
    assert.match(err.message, /is not a PEM certificate/);
    assert.ok(errors.includes(err), "onError callback called");
    assert.equal(provider.certificateFor().subject, current);
    assert.equal(await peerCN(port), current.slice(3));
  });

  test("a certificate whose key does not match keeps the old one", async () => {
    const current = provider.certificateFor().subject;
    const other = await generateSelfSigned("mismatch.test");
    const failed = waitFor(provider, "reloadError");
    await replaceFile(def.cert, other.cert);
    const [err] = await failed;
    assert.match(err.message, /does not belong to the certificate/);
    assert.equal(await peerCN(port), current.slice(3));

    // Completing the pair (the key arrives) makes it valid: it is loaded.
    const reloaded = waitFor(provider, "reload");
    await replaceFile(def.key, other.key);
    await reloadedWithRetry(reloaded, provider, "mismatch.test");
    assert.equal(await peerCN(port), "mismatch.test");
  });

  test("reload() checks now, e.g. on SIGHUP", async () => {
    const v3 = await generateSelfSigned("v3.test");
    await writeFile(def.key, v3.key);
    await writeFile(def.cert, v3.cert);
    await provider.reload();
    assert.equal(provider.certificateFor().subject, "CN=v3.test");
    assert.equal(await peerCN(port), "v3.test");
  });
});

describe("protocol versions", () => {
  test("a client limited to TLSv1.1 cannot connect; TLSv1.2 and 1.3 can", async () => {
    const provider = new TlsContextProvider({ default: await makePair("v.test"), watch: false });
    const server = tlsServer(provider);
    const port = await listen(server);
    try {
      await assert.rejects(peerCN(port, undefined, { minVersion: "TLSv1", maxVersion: "TLSv1.1" }));
      assert.equal(await peerCN(port, undefined, { maxVersion: "TLSv1.2" }), "v.test");
      assert.equal(await peerCN(port, undefined, { minVersion: "TLSv1.3" }), "v.test");
    } finally {
      provider.close();
      await closeServer(server);
    }
  });

  test("minVersion TLSv1.3 refuses a TLSv1.2 client", async () => {
    const provider = new TlsContextProvider({ default: await makePair("v13.test"), minVersion: "TLSv1.3", watch: false });
    const server = tlsServer(provider);
    const port = await listen(server);
    try {
      assert.equal(provider.serverOptions().minVersion, "TLSv1.3");
      await assert.rejects(peerCN(port, undefined, { maxVersion: "TLSv1.2" }));
      assert.equal(await peerCN(port), "v13.test");
    } finally {
      provider.close();
      await closeServer(server);
    }
  });
});

describe("loading", () => {
  test("a pair that does not match is refused at start", async () => {
    const [a, b] = await Promise.all([makePair("a.test"), makePair("b.test")]);
    assert.throws(
      () => new TlsContextProvider({ default: { cert: a.cert, key: b.key }, watch: false }),
      (err: unknown) => err instanceof TlsCertificateError && /does not belong/.test(err.message),
    );
  });

  test("fromConfig generates a self-signed certificate when none is configured", async () => {
    const dataDir = join(root, "data-selfsigned");
    const config = parseConfig({ hostname: "mx.self.test", dataDir }, "/petrel.yaml");
    const provider = await TlsContextProvider.fromConfig(config, { watch: false });
    try {
      const info = provider.certificateFor();
      assert.equal(info.certPath, join(dataDir, "tls", "self-signed.crt"));
      assert.equal(info.subject, "CN=mx.self.test");
    } finally {
      provider.close();
    }
  });

  test("fromConfig uses the configured pairs and reports a bad one as a ConfigError", async () => {
    const [def, a] = await Promise.all([makePair("cfg.test"), makePair("a.test")]);
    const config = parseConfig({ tls: { cert: def.cert, key: def.key, sni: [{ names: ["a.test"], cert: a.cert, key: a.key }] } }, "/petrel.yaml");
    const provider = await TlsContextProvider.fromConfig(config, { watch: false });
    assert.equal(provider.certificateFor().subject, "CN=cfg.test");
    assert.equal(provider.certificateFor("a.test").subject, "CN=a.test");
    provider.close();

    const bad = parseConfig({ tls: { cert: def.cert, key: a.key } }, "/petrel.yaml");
    await assert.rejects(TlsContextProvider.fromConfig(bad, { watch: false, source: "petrel.yaml" }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.path, "tls.cert");
      assert.match(err.message, /^petrel\.yaml: tls\.cert: got ".*cert\.pem"; expected a usable certificate and key: the key in .* does not belong/);
      return true;
    });
  });
});
