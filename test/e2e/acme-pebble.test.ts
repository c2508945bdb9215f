/**
 * Automatic certificates against a real ACME server: Pebble (Debian package
 * `pebble`) on loopback, resolving the names through the test's DNS server
 * to the loopback address where Petrel's challenge listeners are. Cases:
 * issuance (HTTP-01 and TLS-ALPN-01), renewal when the injected clock says
 * the certificate is due, the new certificate served without a restart
 * (the serial a TLS client sees changes), and a failed challenge that keeps
 * the working certificate and logs why. The issued chain is verified
 * against the root from Pebble's management interface.
 */
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tls from "node:tls";
import pino from "pino";
import { parseConfig } from "../../src/config/load.ts";
import { startMta, type Mta } from "../../src/mta.ts";
import { ManualClock } from "../../src/mail/clock.ts";
import { renewalTime, warningTime } from "../../src/acme/renewal.ts";
import { recordsToPublish } from "../../src/publish/dns-records.ts";
import { policyId } from "../../src/mta-sts/policy.ts";
import { startDnsServer, type TestDnsServer, type Zone } from "../support/dns-server.ts";
import { fetchResponse, requirePebble, startPebble, uniqueLoopback, type Pebble } from "../support/pebble.ts";

const HOST = "mail.example.test";
/** Pebble validates HTTP-01 and TLS-ALPN-01 on these ports of the address a name resolves to. */
const HTTP_PORT = 5002;
const TLS_PORT = 5001;

let dns: TestDnsServer;
let pebble: Pebble;
let root: string;
/** Petrel's challenge listeners bind here; the names resolve here. */
const petrelAddress = uniqueLoopback();

function zone(address: string): Zone {
  return {
    [HOST]: { A: [address] },
    "mta-sts.example.test": { A: [address] },
    "example.test": { SOA: {}, MX: [[10, HOST]] },
  };
}

before(async () => {
  requirePebble();
  dns = await startDnsServer(zone(petrelAddress));
  pebble = await startPebble({ dnsServer: dns.server, httpPort: HTTP_PORT, tlsPort: TLS_PORT });
  root = await pebble.root();
});

after(async () => {
  await pebble?.stop();
  await dns?.close();
});

interface Running {
  mta: Mta;
  clock: ManualClock;
  logs: Array<Record<string, unknown>>;
  dataDir: string;
  submissions: number;
  stop(): Promise<void>;
}

async function startPetrel(acme: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<Running> {
  const dataDir = await mkdtemp(join(tmpdir(), "petrel-acme-"));
  const config = parseConfig({
    hostname: HOST,
    dataDir,
    domains: ["example.test"],
    listeners: [{ address: "127.0.0.1", port: 0, role: "submissions" }],
    tls: {
      acme: {
        directory: pebble.directory,
        email: "hostmaster@example.test",
        ca: pebble.directoryCaFile,
        http: { address: petrelAddress, port: HTTP_PORT },
        tlsAlpn: { address: petrelAddress, port: TLS_PORT },
        ...acme,
      },
    },
    log: { level: "info" },
    ...extra,
  }, "test");
  const logs: Array<Record<string, unknown>> = [];
  const log = pino({ level: "info" }, { write: (line: string) => void logs.push(JSON.parse(line)) });
  const clock = new ManualClock(Date.now());
  const mta = await startMta(config, { log, clock, controlSocket: false, acmeAutoStart: false, acmePolling: { min: 100, max: 500 } });
  const submissions = mta.smtp.listeners.find((l) => l.role === "submissions")!.port;
  return {
    mta, clock, logs, dataDir, submissions,
    async stop() {
      await mta.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** The certificate a TLS client verifying against Pebble's root gets on `port`. */
function servedCertificate(port: number): Promise<tls.PeerCertificate> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: "127.0.0.1", port, servername: HOST, ca: root, rejectUnauthorized: true }, () => {
      const cert = s.getPeerCertificate();
      s.destroy();
      resolve(cert);
    });
    s.on("error", reject);
  });
}

describe("ACME with Pebble", () => {
  test("HTTP-01: issuance, chain verified, files private, renewal when due goes live without a restart", async () => {
    const p = await startPetrel({ challenge: "http-01" });
    try {
      // Before the first order: a self-signed placeholder, which a verifying client refuses.
      await assert.rejects(servedCertificate(p.submissions), /self-signed|unable to verify/);

      const first = await p.mta.acme!.check();
      assert.equal(first.kind, "issued", JSON.stringify(first));
      assert.ok(first.kind === "issued");
      assert.equal(first.reason, "placeholder");
      assert.deepEqual(first.certificate.names, [HOST]);
      const served = await servedCertificate(p.submissions);
      assert.equal(served.serialNumber, first.certificate.serialNumber);
      assert.equal(served.subjectaltname, `DNS:${HOST}`);

      // <dataDir>/acme is the owner's only.
      const acmeDir = join(p.dataDir, "acme");
      assert.equal((await stat(acmeDir)).mode & 0o777, 0o700);
      for (const f of ["account.key", "certificate.pem"]) assert.equal((await stat(join(acmeDir, f))).mode & 0o777, 0o600, f);

      // Not due yet: nothing is ordered.
      const again = await p.mta.acme!.check();
      assert.equal(again.kind, "current");
      assert.equal(again.next, Math.min(renewalTime(first.certificate), p.clock.now() + 12 * 3600_000));

      // Two thirds of the lifetime later the certificate is due: a new one is served, no restart.
      p.clock.advance(renewalTime(first.certificate) - p.clock.now() + 1000);
      const renewed = await p.mta.acme!.check();
      assert.equal(renewed.kind, "issued", JSON.stringify(renewed));
      assert.ok(renewed.kind === "issued");
      assert.equal(renewed.reason, "due");
      assert.notEqual(renewed.certificate.serialNumber, first.certificate.serialNumber);
      const after = await servedCertificate(p.submissions);
      assert.equal(after.serialNumber, renewed.certificate.serialNumber);
      assert.ok(p.logs.some((l) => l.msg === "certificate issued and in service" && l.serial === renewed.certificate.serialNumber));
    } finally {
      await p.stop();
    }
  });

  test("a failed challenge keeps the working certificate, logs, warns near expiry, and retries later", async () => {
    const p = await startPetrel({ challenge: "http-01" });
    try {
      const first = await p.mta.acme!.check();
      assert.ok(first.kind === "issued", JSON.stringify(first));
      const before = await readFile(join(p.dataDir, "acme", "certificate.pem"), "utf8");

      // The name now points where nothing answers; the certificate is past its warning time.
      dns.setZone(zone(uniqueLoopback()));
      try {
        // Moving the clock fires the service's own timer (set for the renewal time): that check
        // fails first; ours runs after it, so it is the second failure in a row.
        p.clock.advance(warningTime(first.certificate) - p.clock.now() + 1000);
        const failed = await p.mta.acme!.check();
        assert.equal(failed.kind, "failed", JSON.stringify(failed));
        assert.ok(failed.kind === "failed");
        assert.equal(failed.failures, 2);
        assert.equal(p.logs.filter((l) => l.msg === "ordering a certificate" && l.reason === "due").length, 2);
        // 10 minutes after the first failure, doubled after the second.
        assert.equal(failed.next, p.clock.now() + 20 * 60_000);
        assert.equal(await readFile(join(p.dataDir, "acme", "certificate.pem"), "utf8"), before);
        assert.equal((await servedCertificate(p.submissions)).serialNumber, first.certificate.serialNumber);
        const error = p.logs.find((l) => l.msg === "certificate order failed; the current certificate stays in service");
        assert.ok(error, JSON.stringify(p.logs));
        assert.equal(error.level, 50);
        assert.equal(error.kept, first.certificate.serialNumber);
        assert.ok(p.logs.some((l) => l.level === 40 && l.msg === "the certificate expires soon and could not be renewed"));

        // The next failure waits twice as long again.
        const third = await p.mta.acme!.check();
        assert.ok(third.kind === "failed");
        assert.equal(third.next, p.clock.now() + 40 * 60_000);
      } finally {
        dns.setZone(zone(petrelAddress));
      }
      // The name is reachable again: the retry succeeds.
      const retried = await p.mta.acme!.check();
      assert.equal(retried.kind, "issued", JSON.stringify(retried));
    } finally {
      await p.stop();
    }
  });

  test("TLS-ALPN-01 on the port that also serves the MTA-STS policy (verified HTTPS, exact text)", async () => {
    const p = await startPetrel(
      { challenge: "tls-alpn-01" },
      { mtaSts: { mode: "enforce", maxAge: "1d", listen: { address: petrelAddress, port: TLS_PORT } } },
    );
    try {
      const r = await p.mta.acme!.check();
      assert.equal(r.kind, "issued", JSON.stringify(r));
      assert.ok(r.kind === "issued");
      assert.deepEqual([...r.certificate.names].sort(), [HOST, "mta-sts.example.test"]);
      assert.ok(p.logs.some((l) => l.msg === "TLS-ALPN-01 challenge answered"));

      const policy = await fetchResponse(`https://mta-sts.example.test:${TLS_PORT}/.well-known/mta-sts.txt`, root, { lookupAddress: petrelAddress });
      assert.equal(policy.status, 200);
      assert.equal(policy.body, `version: STSv1\r\nmode: enforce\r\nmx: ${HOST}\r\nmax_age: 86400\r\n`);
      assert.match(String(policy.headers["content-type"]), /^text\/plain/);
      assert.equal(policy.serialNumber, r.certificate.serialNumber);
      // The `_mta-sts` record `petrel dns` prints names this very policy.
      const txt = recordsToPublish(p.mta.smtp.config, "example.test").find((rec) => rec.name === "_mta-sts.example.test");
      assert.equal(txt?.value, `v=STSv1; id=${policyId(policy.body)};`);

      // Any other path or host is not served.
      const other = await fetchResponse(`https://mta-sts.example.test:${TLS_PORT}/.well-known/other.txt`, root, { lookupAddress: petrelAddress });
      assert.equal(other.status, 404);
      const otherHost = await fetchResponse(`https://${HOST}:${TLS_PORT}/.well-known/mta-sts.txt`, root, { lookupAddress: petrelAddress });
      assert.equal(otherHost.status, 404);
    } finally {
      await p.stop();
    }
  });
});
