/**
 * Automatic certificates against a real ACME server: Pebble (Debian package
 * `pebble`) on loopback, resolving the names through the test's DNS server
 * to the loopback address where Petrel's challenge listeners are. Cases:
 * issuance (HTTP-01 and TLS-ALPN-01), renewal when the injected clock says
 * the certificate is due, the new certificate served without a restart
 * (the serial a TLS client sees changes), and a failed challenge that keeps
 * the working certificate and logs why. The issued chain is verified
 * against the root from Pebble's management interface. PEBBLE_LOG=1 prints
 * Pebble's log at the end.
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
import { domainRecords } from "../../src/dns-records/domain-records.ts";
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
  if (process.env.PEBBLE_LOG) process.stderr.write(pebble?.output() ?? "");
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
    admin: { enabled: false },
    hostname: HOST,
    workers: 1,
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
      assert.equal(again.next, p.clock.now() + 12 * 3600_000); // twice a day, the renewal being years away

      // Two thirds of the lifetime later the certificate is due. Moving the clock there fires the
      // service's own timer, which renews, and the check chained behind it may renew once more:
      // Pebble dates certificates by the wall clock, which the test's clock has left years behind,
      // so each new certificate looks due too. Whatever the count, the newest is served at once.
      p.clock.advance(renewalTime(first.certificate) - p.clock.now() + 1000);
      await p.mta.acme!.check();
      const renewals = p.logs.filter((l) => l.msg === "ordering a certificate" && l.reason === "due");
      assert.ok(renewals.length >= 1 && renewals.length <= 2, JSON.stringify(renewals));
      const issued = p.logs.filter((l) => l.msg === "certificate issued and in service").map((l) => String(l.serial));
      assert.equal(issued.length, 1 + renewals.length);
      const newest = issued[issued.length - 1];
      assert.notEqual(newest, first.certificate.serialNumber);
      assert.equal((await servedCertificate(p.submissions)).serialNumber, newest);
    } finally {
      await p.stop();
    }
  });

  test("a failed challenge keeps the working certificate, logs, warns near expiry, and retries later", async () => {
    // mtaSts puts mta-sts.<domain> of every local domain on the certificate; a domain added
    // later brings a name the CA has never validated for this account (so no earlier
    // authorization can stand in for the failing challenge).
    const p = await startPetrel({ challenge: "http-01" }, { mtaSts: { listen: { address: petrelAddress, port: 0 } } });
    try {
      const first = await p.mta.acme!.check();
      assert.ok(first.kind === "issued", JSON.stringify(first));
      const before = await readFile(join(p.dataDir, "acme", "certificate.pem"), "utf8");

      // A new domain whose mta-sts name points where nothing answers; the clock is past the warning time.
      dns.setZone({ ...zone(petrelAddress), "mta-sts.other.test": { A: [uniqueLoopback()] } });
      await p.mta.accounts.addDomain("other.test");
      // Moving the clock fires the service's own timer: that check fails first; ours runs after
      // it, so it is the second failure in a row.
      p.clock.advance(warningTime(first.certificate) - p.clock.now() + 1000);
      const failed = await p.mta.acme!.check();
      assert.equal(failed.kind, "failed", JSON.stringify(failed));
      assert.ok(failed.kind === "failed");
      assert.equal(failed.reason, "names");
      assert.equal(failed.failures, 2);
      assert.match(failed.error, /mta-sts\.other\.test/);
      // 10 minutes after the first failure, doubled after the second.
      assert.equal(failed.next, p.clock.now() + 20 * 60_000);
      assert.equal(await readFile(join(p.dataDir, "acme", "certificate.pem"), "utf8"), before);
      assert.equal((await servedCertificate(p.submissions)).serialNumber, first.certificate.serialNumber);
      const errors = p.logs.filter((l) => l.msg === "certificate order failed; the current certificate stays in service");
      assert.equal(errors.length, 2, JSON.stringify(p.logs));
      assert.equal(errors[0].level, 50);
      assert.equal(errors[0].kept, first.certificate.serialNumber);
      assert.ok(p.logs.some((l) => l.level === 40 && l.msg === "the certificate expires soon and could not be renewed"));

      // The next failure waits twice as long again.
      const third = await p.mta.acme!.check();
      assert.ok(third.kind === "failed");
      assert.equal(third.next, p.clock.now() + 40 * 60_000);

      // The name reaches Petrel now: the retry succeeds and the new certificate carries it.
      dns.setZone({ ...zone(petrelAddress), "mta-sts.other.test": { A: [petrelAddress] } });
      const retried = await p.mta.acme!.check();
      assert.equal(retried.kind, "issued", JSON.stringify(retried));
      assert.ok(retried.kind === "issued");
      assert.deepEqual([...retried.certificate.names].sort(), [HOST, "mta-sts.example.test", "mta-sts.other.test"]);
      assert.equal((await servedCertificate(p.submissions)).serialNumber, retried.certificate.serialNumber);
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
      const txt = (await domainRecords(p.mta.smtp.config, "example.test")).records.find((rec) => rec.name === "_mta-sts.example.test");
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
