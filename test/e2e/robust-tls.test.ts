/**
 * TLS against a running server: the certificate chosen by SNI (STARTTLS and
 * implicit TLS), a certificate replaced on disk taking effect for new
 * connections without a restart, and the protocol floor (TLS 1.2).
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type * as tls from "node:tls";
import { generateSelfSigned } from "../../src/server/tls-certificates.ts";
import { startPetrel, type TestPetrel } from "./petrel.ts";
import { SmtpClient, pollUntil, tempDir } from "./fixtures/robust-helpers.ts";

let dir: string;
let cleanup: () => Promise<void>;
const files = {
  defaultCert: "", defaultKey: "", aCert: "", aKey: "", bCert: "", bKey: "",
};

async function writePair(name: string, hostname: string, extraNames: string[] = []): Promise<{ cert: string; key: string }> {
  const pems = await generateSelfSigned(hostname, { extraNames });
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  await writeFile(key, pems.key, { mode: 0o600 });
  await writeFile(cert, pems.cert);
  return { cert, key };
}

before(async () => {
  ({ dir, cleanup } = await tempDir());
  const d = await writePair("default", "default.test");
  const a = await writePair("a", "a.test");
  const b = await writePair("b", "b.test", ["*.wild.test"]);
  Object.assign(files, { defaultCert: d.cert, defaultKey: d.key, aCert: a.cert, aKey: a.key, bCert: b.cert, bKey: b.key });
});

after(async () => {
  await cleanup();
});

function tlsConfig(): Record<string, unknown> {
  return {
    tls: {
      cert: files.defaultCert,
      key: files.defaultKey,
      sni: [
        { names: ["a.test"], cert: files.aCert, key: files.aKey },
        { names: ["b.test", "*.wild.test"], cert: files.bCert, key: files.bKey },
      ],
    },
  };
}

async function withTls(fn: (p: TestPetrel) => Promise<void>, overrides: Record<string, unknown> = {}): Promise<void> {
  const p = await startPetrel({ ...tlsConfig(), ...overrides });
  try {
    await fn(p);
  } finally {
    SmtpClient.closeAll();
    await p.stop();
  }
}

function subjectCN(socket: tls.TLSSocket): string {
  return String(socket.getPeerCertificate().subject?.CN ?? "");
}

async function startTlsCN(port: number, servername?: string): Promise<string> {
  const c = await SmtpClient.connect(port);
  await c.ehlo();
  const s = await c.startTls(servername ? { servername } : {});
  const cn = subjectCN(s);
  await c.ehlo();
  await c.quit();
  return cn;
}

async function implicitCN(port: number, servername?: string): Promise<string> {
  const c = await SmtpClient.connect(port, { tls: servername ? { servername } : true });
  const cn = subjectCN(c.socket as tls.TLSSocket);
  await c.quit();
  return cn;
}

test("SNI picks the certificate by server name, on STARTTLS and on implicit TLS", async () => {
  await withTls(async (p) => {
    assert.equal(await startTlsCN(p.mx, "a.test"), "a.test");
    assert.equal(await startTlsCN(p.submission, "b.test"), "b.test");
    assert.equal(await startTlsCN(p.mx, "x.wild.test"), "b.test", "one-label wildcard");
    assert.equal(await startTlsCN(p.mx, "y.x.wild.test"), "default.test", "wildcard covers exactly one label");
    assert.equal(await startTlsCN(p.mx, "unknown.test"), "default.test");
    assert.equal(await startTlsCN(p.mx), "default.test", "no SNI: the default certificate");
    assert.equal(await implicitCN(p.submissions, "a.test"), "a.test");
    assert.equal(await implicitCN(p.submissions, "B.TEST"), "b.test", "server names are case-insensitive");
    assert.equal(await implicitCN(p.submissions), "default.test");
  });
});

test("certificate reload: replacing tls.cert/tls.key on disk reaches new connections without a restart", async () => {
  const { dir: certDir, cleanup: rmCerts } = await tempDir("petrel-robust-reload-");
  try {
    const first = await generateSelfSigned("first.test");
    const cert = join(certDir, "server.crt");
    const key = join(certDir, "server.key");
    await writeFile(key, first.key, { mode: 0o600 });
    await writeFile(cert, first.cert);
    await withTls(async (p) => {
      assert.equal(await implicitCN(p.submissions), "first.test");
      // An open session keeps working across the swap.
      const open = await SmtpClient.connect(p.submissions, { tls: true });
      await open.ehlo();
      // Replace both files the way an ACME client does: write elsewhere, rename over.
      const second = await generateSelfSigned("second.test");
      await writeFile(`${key}.new`, second.key, { mode: 0o600 });
      await writeFile(`${cert}.new`, second.cert);
      await rename(`${key}.new`, key);
      await rename(`${cert}.new`, cert);
      const cn = await pollUntil(async () => {
        const seen = await implicitCN(p.submissions);
        return seen === "second.test" ? seen : undefined;
      }, 5000, 50);
      assert.equal(cn, "second.test");
      assert.equal(await startTlsCN(p.mx), "second.test", "STARTTLS sees it too");
      assert.equal(await implicitCN(p.submissions, "a.test"), "a.test", "SNI entries are untouched");
      assert.equal((await open.cmd("NOOP")).code, 250, "the session opened before the swap still works");
      await open.quit();
    }, { tls: { ...(tlsConfig().tls as object), cert, key } });
  } finally {
    await rmCerts();
  }
});

test("certificate reload: a broken replacement keeps the old certificate in service", async () => {
  const { dir: certDir, cleanup: rmCerts } = await tempDir("petrel-robust-reload-");
  try {
    const first = await generateSelfSigned("keep.test");
    const cert = join(certDir, "server.crt");
    const key = join(certDir, "server.key");
    await writeFile(key, first.key, { mode: 0o600 });
    await writeFile(cert, first.cert);
    await withTls(async (p) => {
      const other = await generateSelfSigned("mismatch.test");
      await writeFile(cert, other.cert); // key no longer matches
      await p.server.tls.reload();
      assert.equal(await implicitCN(p.submissions), "keep.test");
      assert.equal(await startTlsCN(p.mx), "keep.test");
    }, { tls: { ...(tlsConfig().tls as object), cert, key } });
  } finally {
    await rmCerts();
  }
});

test("TLS 1.1 and older are refused; TLS 1.2 and 1.3 work (STARTTLS and implicit)", async () => {
  await withTls(async (p) => {
    await assert.rejects(
      SmtpClient.connect(p.submissions, { tls: { minVersion: "TLSv1", maxVersion: "TLSv1.1", ciphers: "DEFAULT:@SECLEVEL=0" } }),
      /protocol version|unsupported protocol/i,
      "implicit TLS 1.1 refused by the server (a permissive server would accept this client)",
    );
    const c = await SmtpClient.connect(p.mx);
    await c.ehlo();
    await assert.rejects(c.startTls({ minVersion: "TLSv1", maxVersion: "TLSv1.1", ciphers: "DEFAULT:@SECLEVEL=0" }),
      /protocol version|unsupported protocol/i, "STARTTLS with TLS 1.1 refused");
    c.close();
    for (const v of ["TLSv1.2", "TLSv1.3"] as const) {
      const s = await SmtpClient.connect(p.submissions, { tls: { minVersion: v, maxVersion: v } });
      assert.equal((s.socket as tls.TLSSocket).getProtocol(), v);
      assert.equal((await s.cmd("EHLO x.example.org")).code, 250);
      await s.quit();
      const t = await SmtpClient.connect(p.mx);
      await t.ehlo();
      const secure = await t.startTls({ minVersion: v, maxVersion: v });
      assert.equal(secure.getProtocol(), v);
      assert.equal((await t.cmd("EHLO x.example.org")).code, 250);
      await t.quit();
    }
    // The server is still fine after the refused handshakes.
    assert.equal(await implicitCN(p.submissions), "default.test");
  });
});

test("tls.minVersion: TLSv1.3 refuses a TLS 1.2 client", async () => {
  await withTls(async (p) => {
    await assert.rejects(SmtpClient.connect(p.submissions, { tls: { maxVersion: "TLSv1.2" } }));
    const s = await SmtpClient.connect(p.submissions, { tls: { minVersion: "TLSv1.3" } });
    assert.equal((s.socket as tls.TLSSocket).getProtocol(), "TLSv1.3");
    await s.quit();
  }, { tls: { ...(tlsConfig().tls as object), minVersion: "TLSv1.3" } });
});

test("the Received field and envelope record the TLS version after STARTTLS", async () => {
  await withTls(async (p) => {
    const c = await SmtpClient.connect(p.mx);
    await c.ehlo();
    await c.startTls({ servername: "a.test", maxVersion: "TLSv1.2" });
    await c.ehlo();
    const r = await c.send("a@example.org", ["postmaster@example.test"], "Subject: tls\r\n\r\nhi\r\n");
    const id = /queued as (\S+)/.exec(r.text)![1];
    await c.quit();
    const env = await p.server.spool.readEnvelope(id);
    assert.equal(env.client.tls?.version, "TLSv1.2");
    assert.equal(env.client.protocol, "ESMTPS");
  });
});
