import { test } from "node:test";
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { DkimMessageVerifier, type DkimVerification } from "../../src/mailauth/dkim-verify.ts";
import { DkimSigner } from "../../src/mailauth/dkim-sign.ts";
import { dkimRecordValue } from "../../src/mailauth/dkim-keys.ts";
import type { MailauthResolver } from "../../src/mailauth/dns-resolver.ts";
import { MESSAGE, dkimpySign, keyZone, testDns, testKey, txtStrings } from "./helpers.ts";

const rsa = testKey("a.test", "rsa2024", "rsa");
const ed = testKey("a.test", "ed2024", "ed25519");

async function verify(resolver: MailauthResolver, message: string, options: { maxSignatures?: number; size?: number; now?: () => number } = {}): Promise<DkimVerification> {
  const v = new DkimMessageVerifier({ resolver, ...options });
  const bytes = Buffer.from(message);
  const size = options.size ?? 13;
  for (let i = 0; i < bytes.length; i += size) await v.write(bytes.subarray(i, i + size));
  return v.end();
}

test("signatures made by dkimpy verify in Petrel through the loopback DNS: rsa-sha256 and ed25519-sha256", async (t) => {
  const { mailauth, dns } = await testDns(t, keyZone([rsa, ed]));
  const signed = (await dkimpySign(MESSAGE, rsa)) + (await dkimpySign(MESSAGE, ed)) + MESSAGE;
  const r = await verify(mailauth, signed);
  assert.deepEqual(r.signatures.map((s) => [s.result, s.domain, s.selector, s.algorithm]), [
    ["pass", "a.test", "rsa2024", "rsa-sha256"],
    ["pass", "a.test", "ed2024", "ed25519-sha256"],
  ]);
  assert.match(r.authResults[0], /^dkim=pass header\.d=a\.test header\.i=@a\.test header\.s=rsa2024 header\.a=rsa-sha256 header\.b=("[^"]{8}"|[^"\s]{8})$/, "header.b is the first 8 characters, quoted when not a token (RFC 2045)");
  assert.match(r.authResults[1], /^dkim=pass header\.d=a\.test .*header\.a=ed25519-sha256/);
  assert.deepEqual(r.authors, ["alice@a.test"]);
  assert.equal(r.fromFields, 1);
  assert.deepEqual(new Set(dns.queries.map((q) => `${q.type} ${q.name}`)), new Set(["TXT rsa2024._domainkey.a.test", "TXT ed2024._domainkey.a.test"]));
});

test("tampered body and tampered signed header fail (dkim=fail), an unsigned header added in transit does not", async (t) => {
  const { mailauth } = await testDns(t, keyZone([rsa, ed]));
  const signed = (await dkimpySign(MESSAGE, rsa)) + (await dkimpySign(MESSAGE, ed)) + MESSAGE;
  const body = await verify(mailauth, signed.replace("Hello Bob", "Hello Rob"));
  assert.deepEqual(body.signatures.map((s) => [s.result, s.comment]), [["fail", "body hash did not verify"], ["fail", "body hash did not verify"]]);
  const header = await verify(mailauth, signed.replace("Subject: Quarterly report", "Subject: Quarterly refund"));
  assert.deepEqual(header.signatures.map((s) => [s.result, s.comment]), [["fail", "bad signature"], ["fail", "bad signature"]]);
  assert.match(header.authResults[0], /^dkim=fail \(bad signature\) header\.d=a\.test/);
  const received = await verify(mailauth, "Received: from relay.test by mx.test; Mon, 01 Jan 2024 10:00:09 +0000\r\n" + signed);
  assert.deepEqual(received.signatures.map((s) => s.result), ["pass", "pass"]);
});

test("Petrel's own signatures verify, and a From added above the signed one fails only thanks to over-signing", async (t) => {
  const { mailauth } = await testDns(t, keyZone([rsa, ed]));
  const sign = async (oversignedFields?: string[]) => {
    const s = new DkimSigner([rsa, ed], oversignedFields ? { oversignedFields } : {});
    await s.write(Buffer.from(MESSAGE));
    return (await s.end()) + MESSAGE;
  };
  const signed = await sign();
  assert.deepEqual((await verify(mailauth, signed)).signatures.map((s) => s.result), ["pass", "pass"]);
  const added = (m: string) => "From: ceo@a.test\r\n" + m;
  assert.deepEqual((await verify(mailauth, added(signed))).signatures.map((s) => s.result), ["fail", "fail"]);
  assert.deepEqual((await verify(mailauth, added(await sign([])))).signatures.map((s) => s.result), ["pass", "pass"]);
});

test("unsigned: no signatures, dkim=none; every signature of many is not checked, only the first N", async (t) => {
  const { mailauth, dns } = await testDns(t, keyZone([rsa]));
  const none = await verify(mailauth, MESSAGE);
  assert.deepEqual(none.signatures, []);
  assert.deepEqual(none.authResults, ["dkim=none"]);

  const one = await dkimpySign(MESSAGE, rsa);
  const many = one.repeat(8) + MESSAGE;
  dns.queries.length = 0;
  const limited = await verify(mailauth, many, { maxSignatures: 3 });
  assert.equal(limited.signatures.length, 3);
  assert.equal(limited.unchecked, 5);
  assert.deepEqual(limited.signatures.map((s) => s.result), ["pass", "pass", "pass"]);
  assert.equal(dns.queries.length, 1, "one key lookup per key record for the message");
  const all = await verify(mailauth, many, { maxSignatures: 10 });
  assert.equal(all.signatures.length, 8);
  assert.equal(all.unchecked, 0);
});

test("key problems: a revoked key (empty p=) and no key record are neutral, a DNS failure is temperror", async (t) => {
  const { mailauth, dns } = await testDns(t, {
    "rsa2024._domainkey.a.test": { TXT: ["v=DKIM1; k=rsa; p="] },
  });
  const signed = (await dkimpySign(MESSAGE, rsa)) + (await dkimpySign(MESSAGE, ed)) + MESSAGE;
  const r = await verify(mailauth, signed);
  assert.deepEqual(r.signatures.map((s) => [s.result, s.comment]), [["neutral", "invalid public key"], ["neutral", "no key"]]);
  const other = testKey("c.test", "sel", "ed25519");
  dns.setBehaviour(other.name, "servfail");
  const temp = await verify(mailauth, (await dkimpySign(MESSAGE, other)) + MESSAGE);
  assert.equal(temp.signatures[0].result, "temperror");
  assert.match(temp.signatures[0].comment!, /ESERVFAIL/);
});

test("RFC 8301: an RSA key under 1024 bits is dkim=policy, never pass", async (t) => {
  const weak = generateKeyPairSync("rsa", { modulusLength: 768 });
  const weakKey = { ...rsa, selector: "weak", name: "weak._domainkey.a.test", privateKey: weak.privateKey, publicKey: weak.publicKey, record: dkimRecordValue(weak.publicKey) };
  const { mailauth } = await testDns(t, { [weakKey.name]: { TXT: [txtStrings(weakKey.record)] } });
  const signed = (await dkimpySign(MESSAGE, weakKey)) + MESSAGE;
  const r = await verify(mailauth, signed);
  assert.equal(r.signatures[0].result, "policy");
  assert.match(r.signatures[0].authResults, /policy\.dkim-rules=weak-key/);
});

test("the relaxed body hash comes out of the same pass, for ARC sealing", async (t) => {
  const { mailauth } = await testDns(t, {});
  const r = await verify(mailauth, MESSAGE);
  const s = new DkimSigner([ed]);
  await s.write(Buffer.from(MESSAGE));
  const bh = /bh=([^;]+);/.exec((await s.end()).replace(/\r\n /g, ""))![1];
  assert.equal(r.bodyHash, bh);
});
