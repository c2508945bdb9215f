import assert from "node:assert/strict";
import { X509Certificate, createPrivateKey } from "node:crypto";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { ensureSelfSigned, generateSelfSigned } from "../../src/server/tls-certificates.ts";

let dir = "";
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "petrel-tls-cert-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test("generates a self-signed pair in <dir>/tls with the right names, key mode 0600", async () => {
  const { certPath, keyPath } = await ensureSelfSigned(dir, "mx.example.test");
  assert.equal(certPath, join(dir, "tls", "self-signed.crt"));
  assert.equal(keyPath, join(dir, "tls", "self-signed.key"));
  assert.equal((await stat(keyPath)).mode & 0o777, 0o600);
  const cert = new X509Certificate(await readFile(certPath));
  assert.ok(cert.checkPrivateKey(createPrivateKey(await readFile(keyPath))));
  assert.equal(cert.subject, "CN=mx.example.test");
  assert.equal(cert.checkHost("mx.example.test"), "mx.example.test");
  assert.equal(cert.checkHost("localhost"), "localhost");
  assert.equal(cert.checkIP("127.0.0.1"), "127.0.0.1");
  assert.ok(cert.checkIP("::1"));
  const days = (Date.parse(cert.validTo) - Date.now()) / 86_400_000;
  assert.ok(days > 360 && days < 370, `valid for ${days} days`);
  assert.equal(cert.publicKey.asymmetricKeyType, "ec");
});

test("reuses the existing pair on a later start", async () => {
  const first = await ensureSelfSigned(dir, "mx.example.test");
  const before = await readFile(first.certPath, "utf8");
  const again = await ensureSelfSigned(dir, "mx.example.test");
  assert.deepEqual(again, first);
  assert.equal(await readFile(again.certPath, "utf8"), before);
});

test("regenerates when the hostname is no longer covered or the files are broken", async () => {
  const first = await ensureSelfSigned(dir, "mx.example.test");
  const old = await readFile(first.certPath, "utf8");
  await ensureSelfSigned(dir, "other.example.test");
  const renamed = new X509Certificate(await readFile(first.certPath));
  assert.notEqual(renamed.toString(), old);
  assert.equal(renamed.checkHost("other.example.test"), "other.example.test");

  await writeFile(first.keyPath, "garbage");
  await ensureSelfSigned(dir, "other.example.test");
  const cert = new X509Certificate(await readFile(first.certPath));
  assert.ok(cert.checkPrivateKey(createPrivateKey(await readFile(first.keyPath))));
});

test("generateSelfSigned adds extra names, IPs as IP SANs", async () => {
  const { cert } = await generateSelfSigned("a.test", { extraNames: ["*.wild.test", "192.0.2.7"], days: 2 });
  const x = new X509Certificate(cert);
  assert.match(x.subjectAltName ?? "", /DNS:a\.test/);
  assert.match(x.subjectAltName ?? "", /DNS:\*\.wild\.test/);
  assert.match(x.subjectAltName ?? "", /IP Address:192\.0\.2\.7/);
});
