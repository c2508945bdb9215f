import { test } from "node:test";
import assert from "node:assert/strict";
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createPublicKey } from "node:crypto";
import { dkimKeyPaths, dkimRecordValue, generateDkimKey, listDkimKeys, loadDkimKey, recordPublicKey } from "../../src/mailauth/dkim-keys.ts";
import { DkimSigner } from "../../src/mailauth/dkim-sign.ts";
import { SigningKeys } from "../../src/mailauth/signing-keys.ts";
import { MESSAGE, dkimpyVerify } from "./helpers.ts";

async function dataDir(t: import("node:test").TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "petrel-dkim-keys-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const mode = async (path: string) => (await stat(path)).mode & 0o777;

test("keygen writes <dataDir>/dkim/<domain>/<selector>.{key,pub}: directories 0700, files 0600", async (t) => {
  const dir = await dataDir(t);
  const rsa = await generateDkimKey(dir, "Example.COM", "s2024", "rsa");
  assert.equal(rsa.key, join(dir, "dkim", "example.com", "s2024.key"));
  assert.equal(await mode(join(dir, "dkim")), 0o700);
  assert.equal(await mode(join(dir, "dkim", "example.com")), 0o700);
  assert.equal(await mode(rsa.key), 0o600);
  assert.equal(await mode(rsa.pub), 0o600);
  assert.match(await readFile(rsa.key, "utf8"), /^-----BEGIN PRIVATE KEY-----/);
  const loaded = await loadDkimKey(dir, "example.com", "s2024");
  assert.equal(loaded.privateKey.asymmetricKeyDetails?.modulusLength, 2048);
  assert.equal(dkimRecordValue(createPublicKey(loaded.privateKey)), dkimRecordValue(rsa.publicKey));
});

test("the key records: k=rsa with the SPKI key, k=ed25519 with the raw 32 octets (RFC 8463 §4)", async (t) => {
  const dir = await dataDir(t);
  const rsa = await generateDkimKey(dir, "a.test", "r", "rsa");
  const ed = await generateDkimKey(dir, "a.test", "e", "ed25519");
  assert.match(dkimRecordValue(rsa.publicKey), /^v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA[A-Za-z0-9+/]+={0,2}$/);
  const edValue = dkimRecordValue(ed.publicKey);
  assert.match(edValue, /^v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=$/);
  assert.equal(Buffer.from(recordPublicKey(edValue)!, "base64").length, 32);
  assert.deepEqual(await listDkimKeys(dir, "a.test"), [
    { selector: "e", algorithm: "ed25519", record: edValue },
    { selector: "r", algorithm: "rsa", record: dkimRecordValue(rsa.publicKey) },
  ]);
  assert.deepEqual(await listDkimKeys(dir, "other.test"), []);
  // What the files hold signs mail that an independent verifier accepts with the printed records.
  const signer = new DkimSigner([await loadDkimKey(dir, "a.test", "r"), await loadDkimKey(dir, "a.test", "e")]);
  await signer.write(Buffer.from(MESSAGE));
  const records = [
    { name: "r._domainkey.a.test", record: dkimRecordValue(rsa.publicKey) },
    { name: "e._domainkey.a.test", record: edValue },
  ];
  assert.deepEqual(await dkimpyVerify((await signer.end()) + MESSAGE, records), [{ pass: true }, { pass: true }]);
});

test("an existing key is never overwritten; bad selectors and domains are refused", async (t) => {
  const dir = await dataDir(t);
  const first = await generateDkimKey(dir, "a.test", "s1", "ed25519");
  const before = await readFile(first.key, "utf8");
  await assert.rejects(generateDkimKey(dir, "a.test", "s1", "rsa"), /s1\.key already exists: choose another selector/);
  assert.equal(await readFile(first.key, "utf8"), before);
  assert.throws(() => dkimKeyPaths(dir, "a.test", "../x"), /invalid DKIM selector/);
  assert.throws(() => dkimKeyPaths(dir, "a.test", "-s"), /invalid DKIM selector/);
  assert.throws(() => dkimKeyPaths(dir, "../etc", "s"), /invalid domain/);
  assert.throws(() => dkimKeyPaths(dir, "a/b", "s"), /invalid domain/);
});

test("loading refuses a key others can read, a missing key (naming the command) and a file that is no key", async (t) => {
  const dir = await dataDir(t);
  const k = await generateDkimKey(dir, "a.test", "s1", "rsa");
  await chmod(k.key, 0o644);
  await assert.rejects(loadDkimKey(dir, "a.test", "s1"), /is readable by others \(mode 0644\): run "chmod 600 .*s1\.key"/);
  await assert.rejects(loadDkimKey(dir, "a.test", "s2"), /no DKIM key .*s2\.key: create it with "petrel dkim keygen a\.test --selector s2"/);
  const junk = dkimKeyPaths(dir, "a.test", "junk");
  await writeFile(junk.key, "not a key", { mode: 0o600 });
  await assert.rejects(loadDkimKey(dir, "a.test", "junk"), /is not a PEM private key/);
});

test("signing keys per domain: loaded at once, chosen by the author domain or its closest parent with keys", async (t) => {
  const dir = await dataDir(t);
  await generateDkimKey(dir, "example.com", "r", "rsa");
  await generateDkimKey(dir, "example.com", "e", "ed25519");
  await generateDkimKey(dir, "shop.example.com", "s", "ed25519");
  const keys = await SigningKeys.load(dir, { "example.com": { selectors: ["r", "e"] }, "shop.example.com": { selectors: ["s"] } });
  const pick = (d: string) => keys.keysFor(d).map((k) => `${k.selector}@${k.domain}`);
  assert.deepEqual(pick("example.com"), ["r@example.com", "e@example.com"]);
  assert.deepEqual(pick("News.Example.COM"), ["r@example.com", "e@example.com"], "a parent's signature aligns (relaxed)");
  assert.deepEqual(pick("eu.shop.example.com"), ["s@shop.example.com"]);
  assert.deepEqual(pick("other.test"), []);
  assert.deepEqual(pick("com"), []);

  await chmod(join(dir, "dkim", "example.com", "e.key"), 0o640);
  await assert.rejects(
    SigningKeys.load(dir, { "example.com": { selectors: ["r", "e", "x"] } }),
    (err: Error) => /e\.key is readable by others/.test(err.message) && /no DKIM key .*x\.key/.test(err.message),
  );
});
