/**
 * `petrel dns DOMAIN` with MTA-STS hosting (mtaSts set): the `_mta-sts` TXT record whose id is
 * the hosted policy's, the mta-sts host, and TLS-RPT; none of them without mtaSts; and
 * `--check` against the loopback DNS server.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dnsCommand } from "../../src/cli/dns-command.ts";
import { formatPolicy, policyId } from "../../src/mta-sts/policy.ts";
import { startDnsServer, type Zone } from "../support/dns-server.ts";

async function run(t: import("node:test").TestContext, yaml: string, args: string[]) {
  const dir = await mkdtemp(join(tmpdir(), "petrel-cli-dns-sts-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const config = join(dir, "petrel.yaml");
  await writeFile(config, `dataDir: ./data\nhostname: mail.example.com\ndomains: [example.com]\n${yaml}`);
  let stdout = "";
  let stderr = "";
  const code = await dnsCommand([...args, "--config", config], {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
  });
  return { code, stdout, stderr };
}

/** "name. IN TYPE value" lines, spaces squeezed. */
const entries = (out: string) => out.split("\n").filter((l) => / IN /.test(l)).map((l) => l.split(/\s+/).join(" "));

test("with mtaSts: the _mta-sts TXT record carries the hosted policy's id; the mta-sts host and TLS-RPT follow", async (t) => {
  const r = await run(t, "mtaSts: { mode: enforce, maxAge: 1d, mx: [mail.example.com, '*.backup.example.com'] }\n", ["Example.COM"]);
  const id = policyId(formatPolicy({ mode: "enforce", mx: ["mail.example.com", "*.backup.example.com"], maxAgeSeconds: 86400 }));
  assert.match(id, /^[0-9a-f]{20}$/);
  assert.deepEqual(entries(r.stdout).slice(-3), [
    `_mta-sts.example.com. IN TXT "v=STSv1; id=${id};"`,
    "mta-sts.example.com. IN CNAME mail.example.com.",
    '_smtp._tls.example.com. IN TXT "v=TLSRPTv1; rua=mailto:postmaster@example.com"',
  ]);
  assert.match(r.stdout, /; MTA-STS: a policy \(mode enforce\) is at https:\/\/mta-sts\.example\.com\/\.well-known\/mta-sts\.txt;/);
  assert.match(r.stdout, /; TLS-RPT: other servers send daily reports of TLS failures delivering to example\.com to postmaster@example\.com\n/);
});

test("a changed policy changes the id; without mtaSts there is neither MTA-STS nor TLS-RPT", async (t) => {
  const idOf = (out: string) => /id=([0-9a-f]+);/.exec(out)?.[1];
  const testing = await run(t, "mtaSts: { mode: testing }\n", ["example.com"]);
  const enforce = await run(t, "mtaSts: { mode: enforce }\n", ["example.com"]);
  assert.ok(idOf(testing.stdout));
  assert.notEqual(idOf(testing.stdout), idOf(enforce.stdout));
  const none = await run(t, "", ["example.com"]);
  assert.doesNotMatch(none.stdout, /_mta-sts|mta-sts\.example|_smtp\._tls/);
});

test("dns --check: the MTA-STS id, the policy host's address and TLS-RPT against the loopback DNS", async (t) => {
  const dns = await startDnsServer({});
  t.after(() => dns.close());
  const yaml = `mtaSts: { mode: enforce }\ndns:\n  servers: ["${dns.server}"]\n`;
  const printed = await run(t, yaml, ["example.com"]);
  const record = entries(printed.stdout).find((e) => e.startsWith("_mta-sts."))!;
  const value = /"(.*)"/.exec(record)![1];
  const base: Zone = { "mail.example.com": { A: ["127.0.0.7"] }, "example.com": { MX: [[10, "mail.example.com"]] } };
  dns.setZone({ ...base, "_mta-sts.example.com": { TXT: ["v=STSv1; id=20200101old;"] } });
  const stale = await run(t, yaml, ["example.com", "--check"]);
  assert.equal(stale.code, 1);
  assert.match(stale.stdout, /^MTA-STS wrong +_mta-sts\.example\.com: "v=STSv1; id=20200101old;" names another policy id; senders that cached an older policy keep it: publish "v=STSv1; id=[0-9a-f]{20};"$/m);
  assert.match(stale.stdout, /^MTA-STS missing +mta-sts\.example\.com: no address/m);
  assert.match(stale.stdout, /^TLS-RPT missing +_smtp\._tls\.example\.com: no TLS-RPT record/m);

  dns.setZone({
    ...base,
    "_mta-sts.example.com": { TXT: [value] },
    "mta-sts.example.com": { CNAME: "mail.example.com" },
    "_smtp._tls.example.com": { TXT: ["v=TLSRPTv1; rua=mailto:postmaster@example.com"] },
  });
  const good = await run(t, yaml, ["example.com", "--check"]);
  assert.match(good.stdout, /^MTA-STS ok +_mta-sts\.example\.com: "v=STSv1; id=[0-9a-f]{20};" \(the id of the policy served\)$/m);
  assert.match(good.stdout, /^MTA-STS ok +mta-sts\.example\.com is 127\.0\.0\.7$/m);
  assert.match(good.stdout, /^TLS-RPT ok +_smtp\._tls\.example\.com: "v=TLSRPTv1; rua=mailto:postmaster@example\.com"$/m);
});
