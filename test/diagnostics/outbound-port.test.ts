/**
 * Where doctor tests outbound port 25: by default an MX of a well-known
 * domain (here the loopback DNS server says where), the smarthost when all
 * mail goes through one, a probe host that refuses — and what each result
 * means in words.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { parseConfig } from "../../src/config/load.ts";
import { createResolver, type ClosableResolver } from "../../src/dns/resolver.ts";
import { DEFAULT_PROBE_DOMAIN, outboundPort } from "../../src/diagnostics/outbound-port.ts";
import { startDnsServer, type TestDnsServer } from "../support/dns-server.ts";
import { closedPort, startFake, type FakeSmtp } from "../client/fake-smtp.ts";

let dns: TestDnsServer;
let resolver: ClosableResolver;
let mx: FakeSmtp;

before(async () => {
  mx = await startFake({ greeting: "220 big-mx.test ESMTP\r\n" });
  dns = await startDnsServer({
    [DEFAULT_PROBE_DOMAIN]: { MX: [[5, "big-mx.test"]] },
    "big-mx.test": { A: ["127.0.0.1"] },
    "relay.test": { A: ["127.0.0.1"] },
  });
  resolver = createResolver({ servers: [dns.server] });
});
after(async () => {
  resolver.close();
  await dns.close();
  await mx.close();
});

const base = { heloName: "mx.example.test", timeoutMs: 3000 };

test("by default: the MX of the well-known domain, on outbound.port", async () => {
  const config = parseConfig({ outbound: { port: mx.port } }, "test");
  const findings = await outboundPort(config, { ...base, resolver });
  assert.deepEqual(findings.map((f) => [f.severity, f.message]), [
    ["ok", `outbound port ${mx.port} is open: an MX of ${DEFAULT_PROBE_DOMAIN} big-mx.test (127.0.0.1) answered "220 big-mx.test ESMTP"`],
  ]);
  assert.ok(dns.queries.some((q) => q.name === DEFAULT_PROBE_DOMAIN && q.type === "MX"));
});

test("with a smarthost for every domain, the smarthost is what is tested", async () => {
  const config = parseConfig({ transport: [{ domains: ["*"], type: "smtp", host: "relay.test", port: mx.port, tls: "required" }] }, "test");
  const findings = await outboundPort(config, { ...base, resolver });
  assert.equal(findings[0].severity, "info");
  assert.match(findings[0].message, new RegExp(`goes through the smarthost relay\\.test:${mx.port}: port 25 toward MX hosts is not needed`));
  assert.equal(findings[1].severity, "ok");
  assert.match(findings[1].message, /the smarthost relay\.test \(127\.0\.0\.1\) answered/);
});

test("a refusal is a warning that names a firewall or a host that is down; no DNS for the probe is a warning too", async () => {
  const config = parseConfig({}, "test");
  const refused = await outboundPort(config, { ...base, resolver, probe: { host: "127.0.0.1", port: await closedPort() } });
  assert.equal(refused[0].severity, "warn");
  assert.match(refused[0].message, /refused the connection: a firewall on the way rejects port \d+, or that host is down/);
  const nowhere = createResolver({ servers: [dns.server] });
  dns.setBehaviour(DEFAULT_PROBE_DOMAIN, "servfail");
  try {
    const f = await outboundPort(config, { ...base, resolver: nowhere });
    assert.equal(f[0].severity, "warn");
    assert.match(f[0].message, /cannot test outbound port 25: the MX of gmail\.com could not be looked up/);
    assert.match(f[0].fix!, /petrel doctor --probe HOST/);
  } finally {
    dns.setBehaviour(DEFAULT_PROBE_DOMAIN, undefined);
    nowhere.close();
  }
});
