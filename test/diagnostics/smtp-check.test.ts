/**
 * checkSmtpServer against a real Petrel (good certificate from a test CA,
 * wrong name, expired, expiring soon, self-signed), against scripted servers
 * Petrel never imitates (AUTH offered in clear, no STARTTLS, silence after
 * connect), a closed port, and the loopback DNS server for names that do
 * not exist, take no mail or do not answer.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createResolver, type ClosableResolver } from "../../src/dns/resolver.ts";
import { checkSmtpServer, type SmtpCheckOptions, type SmtpCheckReport } from "../../src/diagnostics/smtp-check.ts";
import { exitStatus, type Finding } from "../../src/diagnostics/finding.ts";
import { startDnsServer, type TestDnsServer } from "../support/dns-server.ts";
import { makeCa, makeLeaf, type TestCa } from "../support/certificates.ts";
import { ALICE, startPetrel, type TestPetrel } from "../e2e/petrel.ts";
import { closedPort, startFake } from "../client/fake-smtp.ts";

let dir = "";
let dns: TestDnsServer;
let resolver: ClosableResolver;
let ca: TestCa;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "petrel-check-"));
  ca = await makeCa(dir);
  dns = await startDnsServer({
    "mx.example.test": { A: ["127.0.0.1"] },
    "null.example.test": { MX: [[0, "."]] },
    "broken.example.test": { A: ["127.0.0.1"] },
    "test": { SOA: { minimum: 60 } },
  });
  dns.setBehaviour("broken.example.test", "servfail");
  resolver = createResolver({ servers: [dns.server], failureTtl: 0 });
});
after(async () => {
  resolver.close();
  await dns.close();
  await rm(dir, { recursive: true, force: true });
});

function options(extra: Partial<SmtpCheckOptions> = {}): SmtpCheckOptions {
  return { resolver, heloName: "checker.example.test", timeoutMs: 5000, ca: ca.cert, ...extra };
}

function find(report: SmtpCheckReport, check: string, severity: Finding["severity"], pattern: RegExp): Finding {
  const f = report.findings.find((x) => x.check === check && x.severity === severity && pattern.test(x.message));
  assert.ok(f, `no ${severity} ${check} finding matching ${pattern} in:\n${report.findings.map((x) => `${x.severity} ${x.check} ${x.message}`).join("\n")}`);
  return f;
}

async function petrelWith(cert: { certPath: string; keyPath: string } | null): Promise<TestPetrel> {
  return startPetrel(cert ? { tls: { cert: cert.certPath, key: cert.keyPath } } : {});
}

test("a well-configured Petrel: every finding OK or INFO, the login works, exit 0", async () => {
  const leaf = await makeLeaf(dir, "good", { names: ["mx.example.test"], ca, daysTo: 80 });
  const petrel = await petrelWith(leaf);
  try {
    const r = await checkSmtpServer({ host: "mx.example.test", port: petrel.submission, implicitTls: false }, options({ login: { user: ALICE.address, password: ALICE.password } }));
    assert.equal(exitStatus(r.findings), 0, r.findings.map((f) => `${f.severity} ${f.check} ${f.message}`).join("\n"));
    assert.equal(r.worst, "ok");
    assert.deepEqual(r.reached, { host: "mx.example.test", address: "127.0.0.1" });
    find(r, "dns", "ok", /^mx\.example\.test is 127\.0\.0\.1$/);
    find(r, "greeting", "ok", /^220 mx\.example\.test Petrel ESMTP$/);
    find(r, "ehlo", "ok", /^extensions before TLS: .*STARTTLS/);
    find(r, "tls", "ok", /^STARTTLS: TLSv1\.[23], /);
    find(r, "certificate", "info", /for mx\.example\.test, issued by CN=Petrel Test CA, O=Petrel tests, valid until/);
    find(r, "certificate", "ok", /chain verifies/);
    find(r, "certificate", "ok", /carries the name mx\.example\.test/);
    find(r, "certificate", "ok", /valid for (79|80) more days/);
    find(r, "auth", "ok", /^AUTH after TLS: SCRAM-SHA-256 PLAIN LOGIN$/);
    find(r, "login", "ok", /logged in as alice@example\.test/);
    assert.ok(!r.findings.some((f) => f.check === "auth" && /before TLS/.test(f.message)), "Petrel never offers AUTH in clear");

    const implicit = await checkSmtpServer({ host: "mx.example.test", port: petrel.submissions, implicitTls: true }, options());
    assert.equal(exitStatus(implicit.findings), 0);
    find(implicit, "tls", "ok", /^TLS: TLSv1\.[23]/);

    const wrong = await checkSmtpServer({ host: "mx.example.test", port: petrel.submission, implicitTls: false }, options({ login: { user: ALICE.address, password: "not the password at all" } }));
    assert.equal(exitStatus(wrong.findings), 2);
    find(wrong, "login", "fail", /refused the user name or password \(535 5\.7\.8/);
  } finally {
    await petrel.stop();
  }
});

test("a certificate for another name, an expired one, one expiring in days, a self-signed one", async () => {
  const cases: Array<{ leaf: { certPath: string; keyPath: string } | null; expect: Array<[Finding["severity"], RegExp]>; status: number }> = [
    { leaf: await makeLeaf(dir, "other", { names: ["other.example.test"], ca }), status: 2,
      expect: [["fail", /it is not for mx\.example\.test \(it names other\.example\.test\): clients refuse it/], ["ok", /chain verifies/]] },
    { leaf: await makeLeaf(dir, "expired", { names: ["mx.example.test"], ca, daysFrom: -100, daysTo: -2 }), status: 2,
      expect: [["fail", /it expired on \d{4}-.*: clients refuse it/]] },
    { leaf: await makeLeaf(dir, "soon", { names: ["mx.example.test"], ca, daysTo: 5 }), status: 1,
      expect: [["warn", /it expires in [45] days/], ["ok", /chain verifies/]] },
    { leaf: null, status: 2, expect: [["fail", /the certificate is self-signed: mail clients refuse it/]] },
  ];
  for (const c of cases) {
    const petrel = await petrelWith(c.leaf);
    try {
      const r = await checkSmtpServer({ host: "mx.example.test", port: petrel.submission, implicitTls: false }, options());
      for (const [severity, pattern] of c.expect) {
        const f = find(r, "certificate", severity, pattern);
        if (severity !== "ok") assert.ok(f.fix && f.fix.length > 10, "a failure says how to fix it");
      }
      assert.equal(exitStatus(r.findings), c.status, c.leaf?.certPath ?? "self-signed");
    } finally {
      await petrel.stop();
    }
  }
});

test("AUTH offered in clear is a failure, and no password is sent over plain text", async () => {
  const fake = await startFake({ ehlo: "250-legacy.test\r\n250-PIPELINING\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n" });
  try {
    const r = await checkSmtpServer({ host: "127.0.0.1", port: fake.port, implicitTls: false }, options({ login: { user: "u@example.test", password: "secret-password-1" } }));
    const auth = find(r, "auth", "fail", /^AUTH PLAIN LOGIN is offered before TLS: a client may send its password in clear/);
    assert.match(auth.fix!, /offer AUTH only once TLS is up/);
    find(r, "tls", "fail", /does not offer STARTTLS: everything sent to it, passwords included, travels unencrypted/);
    find(r, "login", "fail", /not tried: .* not encrypted/);
    assert.equal(exitStatus(r.findings), 2);
    assert.ok(!fake.lines.some((l) => /^AUTH/i.test(l)), `the checker sent: ${fake.lines.join(" | ")}`);
    assert.ok(!fake.packets.join("").includes(Buffer.from("secret-password-1").toString("base64").slice(0, 12)));
  } finally {
    await fake.close();
  }
});

test("a closed port, a server that never greets, STARTTLS refused", async () => {
  const closed = await checkSmtpServer({ host: "127.0.0.1", port: await closedPort(), implicitTls: false }, options());
  find(closed, "connect", "fail", /^Nothing is listening on 127\.0\.0\.1 port \d+: the host or port is wrong, or the server is down\.$/);
  assert.equal(closed.reached, null);
  assert.equal(exitStatus(closed.findings), 2);

  const silent = await startFake({ greeting: null });
  try {
    const started = Date.now();
    const r = await checkSmtpServer({ host: "127.0.0.1", port: silent.port, implicitTls: false }, options({ timeoutMs: 300 }));
    find(r, "greeting", "fail", /Connected to 127\.0\.0\.1 port \d+, but the server did not greet us within 0\.3 s: if this is an implicit-TLS port \(465\), use --tls implicit/);
    assert.ok(Date.now() - started < 4000, "the injected timeout is used");
  } finally {
    await silent.close();
  }

  const refusing = await startFake({
    ehlo: "250-fake.test\r\n250 STARTTLS\r\n",
    respond: (line) => (line === "STARTTLS" ? "454 4.7.0 TLS not available due to local problem\r\n" : undefined),
  });
  try {
    const r = await checkSmtpServer({ host: "127.0.0.1", port: refusing.port, implicitTls: false }, options());
    find(r, "tls", "fail", /refused to start TLS\. The server said: "454 4\.7\.0 TLS not available/);
  } finally {
    await refusing.close();
  }
});

test("DNS: a name that does not exist, a domain with a null MX, a server that fails — no connection tried", async () => {
  const nx = await checkSmtpServer({ host: "nowhere.example.test", port: 25, implicitTls: false }, options());
  const f = find(nx, "dns", "fail", /nowhere\.example\.test: domain not found \(NXDOMAIN\)/);
  assert.match(f.fix!, /check the spelling; if nowhere\.example\.test is yours, publish an MX record/);
  assert.equal(nx.reached, null);

  const nullMx = await checkSmtpServer({ host: "null.example.test", port: 25, implicitTls: false }, options());
  find(nullMx, "dns", "fail", /publishes a null MX \("0 \."\): it accepts no mail at all \(RFC 7505\)/);

  const broken = await checkSmtpServer({ host: "broken.example.test", port: 587, implicitTls: false }, options());
  find(broken, "dns", "fail", /^the DNS did not answer for broken\.example\.test: .*SERVFAIL/);

  const hostOnly = await checkSmtpServer({ host: "nowhere.example.test", port: 587, implicitTls: false }, options());
  find(hostOnly, "dns", "fail", /nowhere\.example\.test: host not found \(NXDOMAIN\)/);
  assert.ok(dns.queries.some((q) => q.name === "null.example.test" && q.type === "MX"), "on port 25 the MX is asked for");
});
