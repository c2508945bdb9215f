import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { dkimCommand } from "../../src/cli/dkim-command.ts";
import { dnsCommand } from "../../src/cli/dns-command.ts";
import { loadDkimKey } from "../../src/mailauth/dkim-keys.ts";
import { DkimSigner } from "../../src/mailauth/dkim-sign.ts";
import { reverseName, startDnsServer, type Zone } from "../support/dns-server.ts";
import { MESSAGE, dkimpyVerify } from "../mailauth/helpers.ts";

const README = fileURLToPath(new URL("../../README.md", import.meta.url));

interface Env {
  dir: string;
  dataDir: string;
  run(command: typeof dkimCommand | typeof dnsCommand, args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
}

async function setup(t: import("node:test").TestContext, yaml: string): Promise<Env> {
  const dir = await mkdtemp(join(tmpdir(), "petrel-cli-dns-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const config = join(dir, "petrel.yaml");
  await writeFile(config, `dataDir: ./data\n${yaml}`);
  return {
    dir,
    dataDir: join(dir, "data"),
    async run(command, args) {
      let stdout = "";
      let stderr = "";
      const io = { stdout: { write: (s: string) => (stdout += s) }, stderr: { write: (s: string) => (stderr += s) } };
      const code = await command([...args, "--config", config], io);
      return { code, stdout, stderr };
    },
  };
}

/** The TXT value a zone-file entry publishes: its character-strings joined. */
function zoneValue(entry: string): { name: string; strings: string[]; value: string } {
  const name = /^(\S+)\.\s+IN TXT/m.exec(entry)![1];
  const strings = [...entry.slice(entry.indexOf("IN TXT")).matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]);
  return { name, strings, value: strings.join("") };
}

test("dkim keygen: the key files, and the exact record to publish, split into strings of at most 255 octets", async (t) => {
  const env = await setup(t, "hostname: mail.example.test\n");
  const rsa = await env.run(dkimCommand, ["keygen", "Example.TEST", "--selector", "s1"]);
  assert.equal(rsa.code, 0, rsa.stderr);
  const key = join(env.dataDir, "dkim", "example.test", "s1.key");
  assert.equal((await stat(key)).mode & 0o777, 0o600);
  assert.ok(rsa.stdout.includes(key));
  const entry = zoneValue(rsa.stdout);
  assert.equal(entry.name, "s1._domainkey.example.test");
  assert.equal(entry.strings.length, 2);
  assert.ok(entry.strings.every((s) => Buffer.byteLength(s) <= 255));
  assert.match(entry.value, /^v=DKIM1; k=rsa; p=MIIBIjAN/);
  assert.ok(rsa.stdout.includes(`value as one string:\n   ${entry.value}\n`));
  assert.match(rsa.stdout, /dkim:\n {2}domains:\n {4}example\.test:\n {6}selectors: \[s1\]\n$/);

  const ed = await env.run(dkimCommand, ["keygen", "example.test", "--selector", "s2", "--algo", "ed25519"]);
  assert.equal(ed.code, 0, ed.stderr);
  const edEntry = zoneValue(ed.stdout);
  assert.equal(edEntry.strings.length, 1);
  assert.match(edEntry.value, /^v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=$/);

  // The records as printed are what verifiers need for the keys in the files.
  const signer = new DkimSigner([await loadDkimKey(env.dataDir, "example.test", "s1"), await loadDkimKey(env.dataDir, "example.test", "s2")]);
  const message = MESSAGE.replace("alice@a.test", "alice@example.test");
  await signer.write(Buffer.from(message));
  const records = [entry, edEntry].map((e) => ({ name: e.name, record: e.value }));
  assert.deepEqual(await dkimpyVerify((await signer.end()) + message, records), [{ pass: true }, { pass: true }]);
});

test("dkim keygen: default selector YYYYMM-ALGO, never overwrites, clear usage errors", async (t) => {
  const env = await setup(t, "");
  let stdout = "";
  const io = { stdout: { write: (s: string) => (stdout += s) }, stderr: { write: () => true } };
  const config = join(env.dir, "petrel.yaml");
  assert.equal(await dkimCommand(["keygen", "a.test", "--algo", "ed25519", "--config", config], io, () => new Date(Date.UTC(2026, 11, 3))), 0);
  assert.match(stdout, /DKIM key "202612-ed25519" for a\.test/);
  const again = await env.run(dkimCommand, ["keygen", "a.test", "--selector", "202612-ed25519"]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /202612-ed25519\.key already exists: choose another selector/);
  assert.equal((await env.run(dkimCommand, ["keygen", "a.test", "--algo", "dsa"])).code, 2);
  assert.match((await env.run(dkimCommand, ["keygen", "a.test", "--selector", "../x"])).stderr, /is not a selector/);
  assert.match((await env.run(dkimCommand, ["keygen", "not a domain"])).stderr, /is not a domain name/);
  assert.equal((await env.run(dkimCommand, ["rotate", "a.test"])).code, 2);
});

test("dns: MX, SPF, one DKIM record per key (saying which sign), DMARC; problems on stderr", async (t) => {
  const env = await setup(t, "hostname: mail.example.test\ndkim:\n  domains:\n    example.test:\n      selectors: [new, gone]\n");
  await env.run(dkimCommand, ["keygen", "example.test", "--selector", "new"]);
  await env.run(dkimCommand, ["keygen", "example.test", "--selector", "old", "--algo", "ed25519"]);
  const r = await env.run(dnsCommand, ["example.test"]);
  assert.equal(r.code, 1, "a configured selector has no key");
  assert.match(r.stderr, /dkim\.domains names selector "gone" for example\.test, but .*gone\.pub does not exist: run "petrel dkim keygen example\.test --selector gone"/);
  const owners = [...r.stdout.matchAll(/^(\S+\.) +IN (MX|TXT)/gm)].map((m) => `${m[1]} ${m[2]}`);
  assert.deepEqual(owners, [
    "example.test. MX",
    "example.test. TXT",
    "new._domainkey.example.test. TXT",
    "old._domainkey.example.test. TXT",
    "_dmarc.example.test. TXT",
  ]);
  assert.match(r.stdout, /^example\.test\. +IN MX {2}10 mail\.example\.test\.$/m);
  assert.match(r.stdout, /^example\.test\. +IN TXT "v=spf1 mx ~all"$/m);
  assert.match(r.stdout, /^_dmarc\.example\.test\. +IN TXT "v=DMARC1; p=none; rua=mailto:dmarc-reports@example\.test"$/m);
  assert.match(r.stdout, /; DKIM: key new, rsa, signs \(in dkim\.domains\)\n/);
  assert.match(r.stdout, /; DKIM: key old, ed25519, not in dkim\.domains: publish it before it signs/);

  const local = await setup(t, "");
  const warned = await local.run(dnsCommand, ["example.test"]);
  assert.match(warned.stderr, /hostname is "localhost": set hostname in the config to this server's public name/);
  assert.match(warned.stderr, /example\.test has no DKIM key: create one with "petrel dkim keygen example\.test"/);
});

test("dns --check: each record against the loopback DNS, in plain words; exit 0 only when all are in place", async (t) => {
  const dns = await startDnsServer({});
  t.after(() => dns.close());
  const env = await setup(t, `hostname: mail.example.test\ndns:\n  servers: ["${dns.server}"]\ndkim:\n  domains:\n    example.test:\n      selectors: [k1]\n`);
  const k1 = zoneValue((await env.run(dkimCommand, ["keygen", "example.test", "--selector", "k1"])).stdout);
  const k2 = zoneValue((await env.run(dkimCommand, ["keygen", "example.test", "--selector", "k2", "--algo", "ed25519"])).stdout);
  const server: Zone = {
    "mail.example.test": { A: ["127.0.0.5"] },
    [reverseName("127.0.0.5")]: { PTR: ["host-5.provider.test"] },
    "example.test": { MX: [[10, "mail.example.test"]], TXT: ["v=spf1 ip4:192.0.2.1 -all"] },
    "k1._domainkey.example.test": { TXT: [k1.strings] },
    "k2._domainkey.example.test": { TXT: ["v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="] },
  };
  dns.setZone(server);
  const bad = await env.run(dnsCommand, ["example.test", "--check"]);
  assert.equal(bad.code, 1);
  assert.equal(
    bad.stdout,
    [
      "DNS records of example.test, as the resolvers answer:",
      "MX     ok       example.test MX 10 mail.example.test; mail.example.test is 127.0.0.5",
      'SPF    wrong    example.test: "v=spf1 ip4:192.0.2.1 -all" gives fail for 127.0.0.5 (mail.example.test): this server may not send for example.test; add it, e.g. "v=spf1 mx ~all"',
      "DKIM   ok       k1._domainkey.example.test: the key matches",
      "DKIM   wrong    k2._domainkey.example.test: a different key is published (p=11qYAYKxCrfV…aPcHURo=); mail signed with this key would fail DKIM",
      "DMARC  missing  _dmarc.example.test: no DMARC record (the name does not exist); publish the record petrel dns prints",
      "PTR    wrong    127.0.0.5: its PTR names host-5.provider.test; large mailbox providers refuse mail from an address whose name does not lead back to it: ask its provider to set the PTR to mail.example.test",
      '4 of 6 need attention; "petrel dns example.test" prints the records to publish.',
      "",
    ].join("\n"),
  );

  dns.setZone({
    ...server,
    "example.test": { MX: [[10, "mail.example.test"]], TXT: ["v=spf1 mx ~all", "site-verification=x"] },
    [reverseName("127.0.0.5")]: { PTR: ["mail.example.test"] },
    "k2._domainkey.example.test": { TXT: [k2.value] },
    "_dmarc.example.test": { TXT: ["v=DMARC1; p=none; rua=mailto:dmarc-reports@example.test"] },
  });
  const good = await env.run(dnsCommand, ["example.test", "--check", "--config", join(env.dir, "petrel.yaml")]);
  assert.equal(good.code, 0, good.stdout);
  assert.match(good.stdout, /^SPF {4}ok {7}example\.test: "v=spf1 mx ~all" lets mail\.example\.test \(127\.0\.0\.5\) send$/m);
  assert.match(good.stdout, /^DMARC {2}ok {7}_dmarc\.example\.test: "v=DMARC1; p=none; rua=mailto:dmarc-reports@example\.test" \(p=none: reports only\)$/m);
  assert.match(good.stdout, /All 6 checks passed\.\n$/);

  dns.setBehaviour("*", "servfail");
  const down = await env.run(dnsCommand, ["example.test", "--check"]);
  assert.equal(down.code, 1);
  assert.match(down.stdout, /^MX {5}unknown  example\.test: the DNS did not answer \(.*SERVFAIL.*\); try again$/m);
});

test('the README section "DNS records to publish" shows what petrel dns prints', async (t) => {
  const env = await setup(t, "hostname: mail.example.com\ndkim:\n  domains:\n    example.com:\n      selectors: [202612-rsa, 202612-ed25519]\n");
  await env.run(dkimCommand, ["keygen", "example.com", "--selector", "202612-rsa"]);
  await env.run(dkimCommand, ["keygen", "example.com", "--selector", "202612-ed25519", "--algo", "ed25519"]);
  const { stdout, code } = await env.run(dnsCommand, ["example.com"]);
  assert.equal(code, 0);
  const readme = await readFile(README, "utf8");
  const section = readme.slice(readme.indexOf("## DNS records to publish"));
  const block = /```zone\n([\s\S]*?)```/.exec(section)?.[1];
  assert.ok(block, "the section has a ```zone block");
  // Keys differ on every run: the README shows them shortened.
  const shortened = stdout.replace(/p=[A-Za-z0-9+/=]+("\s*\n\s*"[A-Za-z0-9+/=]+)*"( \))?/g, 'p=…"').replace(/\( ("v=DKIM1[^"]*")/g, "$1");
  assert.equal(block, shortened);
});
