/**
 * The configuration of the rate limits, DNS lists and plugins: defaults,
 * units, both ways of writing a DNS list, and errors naming the key.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { configError } from "./expect-config-error.ts";
import { parseConfig, parseConfigText } from "../../src/config/load.ts";

test("defaults: per-client rates off (Postfix's 0), per-user rates on, loopback exempt; no DNS lists; no plugins", () => {
  const c = parseConfig({}, "test", { checkFiles: false });
  assert.deepEqual(c.limits.rates, {
    exempt: ["127.0.0.0/8", "::1"],
    ipv6Prefix: 64,
    trackedKeys: 100_000,
    mx: { window: 60_000, connections: 0, messages: 0, recipients: 0 },
    submission: { window: 60_000, connections: 0, messages: 0, recipients: 0 },
    user: { window: 3_600_000, messages: 100, recipients: 1000, exempt: [] },
  });
  assert.deepEqual(c.dnsbl, { sites: [], threshold: 1, timeout: 10_000, rejectAt: "rcpt", roles: ["mx"], exempt: ["127.0.0.0/8", "::1"] });
  assert.deepEqual(c.plugins, []);
});

test("rates take durations and keep the other defaults of their group", () => {
  const c = parseConfigText(`
limits:
  rates:
    exempt: [10.0.0.0/8]
    mx: { connections: 30, window: 30s }
    user: { messages: 20, window: 10m, exempt: [Robot@Example.COM] }
`, "test");
  assert.deepEqual(c.limits.rates.mx, { window: 30_000, connections: 30, messages: 0, recipients: 0 });
  assert.deepEqual(c.limits.rates.user, { window: 600_000, messages: 20, recipients: 1000, exempt: ["Robot@example.com"] });
  assert.deepEqual(c.limits.rates.exempt, ["10.0.0.0/8"]);
});

test("rate errors name the key", () => {
  const err = configError(() => parseConfigText(`
limits:
  rates:
    exempt: [10.0.0.0/33]
    mx: { window: 0, connection: 5 }
    ipv6Prefix: 16
`, "petrel.yaml"));
  const paths = err.issues.map((i) => i.path).sort();
  assert.deepEqual(paths, ["limits.rates.exempt[0]", "limits.rates.ipv6Prefix", "limits.rates.mx.connection", "limits.rates.mx.window"]);
  assert.match(err.message, /limits\.rates\.mx\.connection: unknown key 'connection' \(did you mean 'connections'\?\)/);
  assert.match(err.message, /limits\.rates\.mx\.window: got 0; expected a duration longer than 0/);
});

test("DNS lists: postscreen's text form and the mapping form, with a name that hides a query key", () => {
  const c = parseConfigText(`
dnsbl:
  sites:
    - zen.spamhaus.org=127.0.0.[2..11]*3
    - "list.dnswl.org=127.0.[0..255].[1..3]*-2"
    - b.barracudacentral.org
    - { zone: SECRETKEY.zen.dq.spamhaus.net, filter: "127.0.0.[2..11]", weight: 3, name: zen.spamhaus.org }
  threshold: 3
  timeout: 2s
  rejectAt: connect
  roles: [mx, submission]
  exempt: []
`, "test");
  assert.deepEqual(c.dnsbl.sites.map((s) => ({ ...s, filter: s.filter?.pattern })), [
    { zone: "zen.spamhaus.org", name: "zen.spamhaus.org", weight: 3, filter: "127.0.0.[2..11]" },
    { zone: "list.dnswl.org", name: "list.dnswl.org", weight: -2, filter: "127.0.[0..255].[1..3]" },
    { zone: "b.barracudacentral.org", name: "b.barracudacentral.org", weight: 1, filter: undefined },
    { zone: "secretkey.zen.dq.spamhaus.net", name: "zen.spamhaus.org", weight: 3, filter: "127.0.0.[2..11]" },
  ]);
  assert.deepEqual(c.dnsbl.sites[0].filter?.octets, [[[127, 127]], [[0, 0]], [[0, 0]], [[2, 11]]]);
  assert.equal(c.dnsbl.timeout, 2000);
  assert.equal(c.dnsbl.rejectAt, "connect");
});

test("DNS list errors name the entry and say what is allowed", () => {
  const err = configError(() => parseConfigText(`
dnsbl:
  sites:
    - zen.spamhaus.org=127.0.0.[2..]
    - { zone: bl.example, wieght: 2 }
    - { zone: "not a zone" }
    - 42
  threshold: 0
  rejectAt: helo
`, "petrel.yaml"));
  const at = (p: string) => err.issues.find((i) => i.path === p)?.message ?? `nothing at ${p}:\n${err.message}`;
  assert.match(at("dnsbl.sites[0]"), /petrel\.yaml:4:\d+: dnsbl\.sites\[0\]: got "zen\.spamhaus\.org=127\.0\.0\.\[2\.\.\]"; "127\.0\.0\.\[2\.\.\]" is not an answer pattern/);
  assert.match(at("dnsbl.sites[1]"), /unknown key 'wieght': a site has zone, weight, filter, name/);
  assert.match(at("dnsbl.sites[2]"), /"not a zone" is not a DNS zone name/);
  assert.match(at("dnsbl.sites[3]"), /got 42; expected a DNS list as postscreen writes it/);
  assert.match(at("dnsbl.threshold"), /expected a number >= 1/);
  assert.match(at("dnsbl.rejectAt"), /expected one of "rcpt", "connect"/);
});

test("plugins: paths relative to the config file, options as given; a missing module is an error naming the entry", async () => {
  const dir = await mkdtemp(join(tmpdir(), "petrel-config-"));
  try {
    await writeFile(join(dir, "mine.ts"), "export default () => ({ name: 'mine', open: () => ({}) });\n");
    const file = join(dir, "petrel.yaml");
    const c = parseConfigText(`
plugins:
  - path: mine.ts
    options: { domains: [a.example], deep: { n: 1 } }
  - path: ${join(dir, "mine.ts")}
`, file);
    assert.deepEqual(c.plugins, [
      { path: join(dir, "mine.ts"), options: { domains: ["a.example"], deep: { n: 1 } } },
      { path: join(dir, "mine.ts") },
    ]);
    const missing = configError(() => parseConfigText("plugins:\n  - path: missing.ts\n", file));
    assert.match(missing.message, /petrel\.yaml:2:\d+: plugins\[0\]\.path: got "missing\.ts"; expected a readable plugin module: .*missing\.ts does not exist$/);
    const noPath = configError(() => parseConfigText("plugins:\n  - { options: {} }\n", file));
    assert.match(noPath.message, /plugins\[0\]\.path: missing; expected a string/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("dnsbl.timeout must be shorter than policy.timeout, so that a list that is down fails open", () => {
  const err = configError(() => parseConfigText("policy: { timeout: 5s }\ndnsbl: { sites: [bl.example], timeout: 5s }\n", "petrel.yaml"));
  assert.match(err.message, /petrel\.yaml:2:\d+: dnsbl\.timeout: got "5s"; expected less than policy\.timeout \(5s\)/);
  assert.equal(parseConfigText("policy: { timeout: 5s }\ndnsbl: { sites: [bl.example], timeout: 4s }\n", "t").dnsbl.timeout, 4000);
  assert.equal(parseConfigText("policy: { timeout: 5s }\n", "t").dnsbl.timeout, 10_000, "no lists: nothing to wait for");
});
