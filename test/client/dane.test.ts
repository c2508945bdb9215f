import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { verifyDane } from "../../src/client/dane.ts";
import { SmtpClientError, SmtpConnection, type ConnectOptions } from "../../src/client/smtp-connection.ts";
import type { TlsaRecord } from "../../src/dns/tlsa.ts";
import { startPetrel, type TestPetrel } from "../e2e/petrel.ts";
import { createTestCa, issue, tlsaData, writePair, type TestCa, type Issued } from "../support/test-ca.ts";

/**
 * DANE for SMTP (RFC 7672 §3): the client authenticates the server by TLSA records — DANE-EE
 * by the server's own certificate or key whatever its name and dates, DANE-TA by a trust
 * anchor in the presented chain with the usual chain and name checks.
 */

function tlsa(usage: number, selector: 0 | 1, matchingType: 0 | 1 | 2, pem: string): TlsaRecord {
  return { usage, selector, matchingType, data: Buffer.from(tlsaData(pem, selector, matchingType), "hex") };
}

function chainOf(pem: string): X509Certificate[] {
  return (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((c) => new X509Certificate(c));
}

let ca: TestCa;
let server: Issued;
before(async () => {
  ca = await createTestCa();
  server = await ca.issue(["mx.dane.test"]);
});

describe("verifyDane", () => {
  test("DANE-EE: the certificate (3 0 x) or its key (3 1 x), by its data, SHA-256 or SHA-512", () => {
    const chain = chainOf(server.cert);
    for (const [selector, matching] of [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]] as const) {
      const v = verifyDane(chain, { tlsa: [tlsa(3, selector, matching, server.cert)], names: ["mx.dane.test"] });
      assert.ok(v.ok && v.usage === "DANE-EE", `3 ${selector} ${matching}: ${JSON.stringify(v)}`);
    }
  });

  test("DANE-EE ignores the name and the validity dates (RFC 7672 §3.1.1)", async () => {
    const stale = await ca.issue(["other.test"], { expired: true });
    const v = verifyDane(chainOf(stale.cert), { tlsa: [tlsa(3, 1, 1, stale.cert)], names: ["mx.dane.test"] });
    assert.ok(v.ok, JSON.stringify(v));
  });

  test("a TLSA record for another key does not match", async () => {
    const other = await issue(["mx.dane.test"]);
    const v = verifyDane(chainOf(server.cert), { tlsa: [tlsa(3, 1, 1, other.cert)], names: ["mx.dane.test"] });
    assert.deepEqual(v.ok ? v : { ok: v.ok, failure: v.failure }, { ok: false, failure: "validation-failure" });
  });

  test("DANE-TA: the CA in the presented chain is the anchor; the name must match and the certificate be current", async () => {
    const anchor = tlsa(2, 0, 1, ca.cert);
    const ok = verifyDane(chainOf(server.cert), { tlsa: [anchor], names: ["mx.dane.test", "dane.test"] });
    assert.ok(ok.ok && ok.usage === "DANE-TA", JSON.stringify(ok));
    const byKey = verifyDane(chainOf(server.cert), { tlsa: [tlsa(2, 1, 1, ca.cert)], names: ["mx.dane.test"] });
    assert.ok(byKey.ok);

    const wrongName = verifyDane(chainOf(server.cert), { tlsa: [anchor], names: ["mx.other.test"] });
    assert.ok(!wrongName.ok && wrongName.failure === "certificate-host-mismatch", JSON.stringify(wrongName));
    const stale = await ca.issue(["mx.dane.test"], { expired: true });
    const expired = verifyDane(chainOf(stale.cert), { tlsa: [anchor], names: ["mx.dane.test"] });
    assert.ok(!expired.ok && expired.failure === "certificate-expired", JSON.stringify(expired));
    // Only the server's own certificate presented: the anchor is not in the chain.
    const alone = verifyDane(chainOf(server.cert).slice(0, 1), { tlsa: [anchor], names: ["mx.dane.test"] });
    assert.ok(!alone.ok && alone.failure === "validation-failure");
    // A certificate of another CA does not chain to this anchor.
    const otherCa = await createTestCa("Other CA");
    const foreign = await otherCa.issue(["mx.dane.test"]);
    assert.equal(verifyDane(chainOf(foreign.cert), { tlsa: [anchor], names: ["mx.dane.test"] }).ok, false);
  });

  test("PKIX-TA(0) and PKIX-EE(1) records are not usable for SMTP (RFC 7672 §3.1.3)", () => {
    const v = verifyDane(chainOf(server.cert), { tlsa: [tlsa(1, 1, 1, server.cert), tlsa(0, 0, 1, ca.cert)], names: ["mx.dane.test"] });
    assert.equal(v.ok, false);
  });
});

describe("DANE over a real STARTTLS handshake with Petrel", () => {
  let petrel: TestPetrel;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "petrel-dane-"));
    const files = await writePair(dir, "mx", server);
    petrel = await startPetrel({ hostname: "mx.dane.test", tls: files });
  });
  after(async () => {
    await petrel?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const opts = (dane: ConnectOptions["dane"]): ConnectOptions => ({
    host: "127.0.0.1", port: petrel.mx, tls: "starttls", servername: "mx.dane.test", verifyCertificate: false, dane,
    heloName: "client.test", timeouts: { connect: 5000, greeting: 5000, command: 5000 },
  });

  test("a matching DANE-EE record authenticates the server (no CA is trusted for it)", async () => {
    const c = await SmtpConnection.connect(opts({ tlsa: [tlsa(3, 1, 1, server.cert)], names: ["mx.dane.test"] }));
    assert.equal(c.tls?.dane, "DANE-EE");
    assert.equal(c.tls?.authorized, false, "the test CA is not a trusted root: PKIX alone would fail");
    await c.quit();
  });

  test("DANE-TA through the chain the server sends", async () => {
    const c = await SmtpConnection.connect(opts({ tlsa: [tlsa(2, 0, 1, ca.cert)], names: ["mx.dane.test"] }));
    assert.equal(c.tls?.dane, "DANE-TA");
    await c.quit();
  });

  test("no matching record: the connection ends after the handshake with a tls error, before any mail command", async () => {
    const other = await issue(["mx.dane.test"]);
    const before = petrel.server.spool;
    await assert.rejects(SmtpConnection.connect(opts({ tlsa: [tlsa(3, 1, 1, other.cert)], names: ["mx.dane.test"] })), (e: unknown) => {
      assert.ok(e instanceof SmtpClientError);
      assert.equal(e.kind, "tls");
      assert.equal(e.phase, "STARTTLS");
      assert.equal(e.code, "DANE_MISMATCH");
      assert.equal(e.daneFailure, "validation-failure");
      return true;
    });
    assert.deepEqual(await before.list(), []);
  });
});
