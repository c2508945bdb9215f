/**
 * What doctor finds on this machine without a server: the ACME certificate
 * file (missing before the first start, then the self-signed placeholder
 * with what that means), a key that belongs to another certificate, and
 * the data directory.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseConfig } from "../../src/config/load.ts";
import { FileAcmeStore } from "../../src/acme/acme-store.ts";
import { certificateSetup, dataDirSetup } from "../../src/diagnostics/local-setup.ts";
import { makeLeaf } from "../support/certificates.ts";

let dir = "";
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "petrel-local-setup-"));
});
after(() => rm(dir, { recursive: true, force: true }));

const listeners = [{ address: "127.0.0.1", port: 0, role: "mx" }, { address: "127.0.0.1", port: 0, role: "submission" }];

test("the ACME certificate: missing before the first start, then the placeholder, which is not yet issued", async () => {
  const dataDir = join(dir, "acme-data");
  const config = parseConfig({ hostname: "mx.example.test", dataDir, listeners, tls: { acme: { email: "admin@example.test" } } }, "test");
  const missing = await certificateSetup(config, Date.now());
  assert.deepEqual(missing.map((f) => [f.severity, f.message, f.fix]), [
    ["fail", `the ACME certificate: ${join(dataDir, "acme", "certificate.pem")} does not exist`, "start petrel serve: it writes this file when it starts"],
  ]);
  await new FileAcmeStore(dataDir).ensurePlaceholder("mx.example.test", ["mx.example.test"]);
  const placeholder = await certificateSetup(config, Date.now());
  assert.equal(placeholder[0].severity, "ok");
  assert.match(placeholder[0].message, /^the ACME certificate: .*certificate\.pem and its key are readable and belong together$/);
  const self = placeholder.find((f) => /self-signed/.test(f.message) && f.severity === "fail");
  assert.ok(self, JSON.stringify(placeholder, null, 1));
  assert.match(self.fix!, /no certificate has been issued yet \(this is the placeholder\): look for the ACME service's errors in Petrel's log; the CA must reach mx\.example\.test on port 80/);
  assert.ok(placeholder.some((f) => f.severity === "ok" && f.message === "it carries the name mx.example.test"));
});

test("a key that belongs to another certificate; only mx listeners make a self-signed certificate a warning", async () => {
  const a = await makeLeaf(dir, "a", { names: ["mx.example.test"] });
  const b = await makeLeaf(dir, "b", { names: ["mx.example.test"] });
  const mismatched = parseConfig({ hostname: "mx.example.test", dataDir: dir, listeners, tls: { cert: a.certPath, key: b.keyPath } }, "test");
  const f = await certificateSetup(mismatched, Date.now());
  assert.equal(f.length, 1);
  assert.equal(f[0].severity, "fail");
  assert.equal(f[0].message, `tls.cert: the key ${b.keyPath} does not belong to the certificate ${a.certPath}`);

  const mxOnly = parseConfig({ hostname: "mx.example.test", dataDir: dir, listeners: [listeners[0]], tls: { cert: a.certPath, key: a.keyPath } }, "test");
  const self = (await certificateSetup(mxOnly, Date.now())).find((x) => /is self-signed/.test(x.message));
  assert.equal(self?.severity, "warn");
});

test("the data directory: missing, then writable with its free space", async () => {
  const gone = await dataDirSetup(parseConfig({ dataDir: join(dir, "nope") }, "test"));
  assert.equal(gone[0].severity, "fail");
  assert.match(gone[0].message, /nope does not exist$/);
  const here = await dataDirSetup(parseConfig({ dataDir: dir }, "test"));
  assert.equal(here[0].message, `${dir} is writable`);
  assert.match(here[1].message, /^\d+\.\d GiB free \(\d+%\) on the data directory's file system/);
});
