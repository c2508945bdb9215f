import { test } from "node:test";
import assert from "node:assert/strict";
import { sealArc, verifyArc } from "../../src/mailauth/arc.ts";
import { DkimMessageVerifier, type DkimVerification } from "../../src/mailauth/dkim-verify.ts";
import { DkimSigner } from "../../src/mailauth/dkim-sign.ts";
import type { MailauthResolver } from "../../src/mailauth/dns-resolver.ts";
import { MESSAGE, dkimpyArcSign, dkimpyArcVerify, keyZone, testDns, testKey } from "./helpers.ts";

const author = testKey("a.test", "s1", "rsa");
const list = testKey("list.test", "arc1", "rsa");
const petrelRsa = testKey("fwd.test", "arc-rsa", "rsa");
const petrelEd = testKey("fwd.test", "arc-ed", "ed25519");
const keys = [author, list, petrelRsa, petrelEd];

async function signed(): Promise<string> {
  const s = new DkimSigner([author]);
  await s.write(Buffer.from(MESSAGE));
  return (await s.end()) + MESSAGE;
}

async function verify(resolver: MailauthResolver, message: string): Promise<DkimVerification> {
  const v = new DkimMessageVerifier({ resolver });
  await v.write(Buffer.from(message));
  return v.end();
}

const unfold = (s: string) => s.replace(/\r\n[ \t]+/g, " ");

function split(message: string): { header: string; body: string } {
  const i = message.indexOf("\r\n\r\n");
  return { header: message.slice(0, i + 2), body: message.slice(i + 2) };
}

/** What Petrel does when it forwards: verify, write its Authentication-Results, seal. */
async function forward(resolver: MailauthResolver, message: string, key = petrelRsa): Promise<string> {
  const v = await verify(resolver, message);
  const arc = await verifyArc(v, { resolver, ip: "192.0.2.10" });
  const authResults = ["mx.fwd.test", ...v.authResults, arc.authResults].join(";\r\n ");
  const withAr = `Authentication-Results: ${authResults}\r\n${message}`;
  const { header } = split(withAr);
  return (await sealArc({ header, bodyHash: v.bodyHash, chainValidation: arc.result, authResults, key })) + withAr;
}

test("a message Petrel seals (i=1, cv=none) validates in dkimpy and in Petrel; only RSA keys seal", async (t) => {
  const { mailauth } = await testDns(t, keyZone(keys));
  const sealed = await forward(mailauth, await signed());
  assert.match(unfold(sealed), /^ARC-Seal: i=1; a=rsa-sha256; t=\d+; cv=none; d=fwd\.test; s=arc-rsa;/);
  assert.match(sealed, /\r\nARC-Authentication-Results: i=1; mx\.fwd\.test;\r\n dkim=pass header\.d=a\.test/);
  assert.equal((await dkimpyArcVerify(sealed, keys)).cv, "pass");
  const arc = await verifyArc(await verify(mailauth, sealed), { resolver: mailauth });
  assert.deepEqual([arc.result, arc.instance], ["pass", 1]);
  // dkimpy answers an Ed25519 set with "unknown signature algorithm": the chain would fail there.
  await assert.rejects(forward(mailauth, await signed(), petrelEd), /ARC sealing needs an RSA key; arc-ed\._domainkey\.fwd\.test is ed25519/);
});

test("a list changes the body and seals with dkimpy: DKIM fails at Petrel, ARC passes and tells what the list saw", async (t) => {
  const { mailauth } = await testDns(t, keyZone(keys));
  const original = await signed();
  const footer = original + "-- \r\nlist footer\r\n";
  const atList = `Authentication-Results: list.test; dkim=pass header.d=a.test; spf=pass smtp.mailfrom=a.test; dmarc=pass header.from=a.test\r\n${footer}`;
  const sealedByList = (await dkimpyArcSign(atList, list, "list.test")) + atList;
  const v = await verify(mailauth, sealedByList);
  assert.deepEqual(v.signatures.map((s) => s.result), ["fail"]);
  const arc = await verifyArc(v, { resolver: mailauth, ip: "192.0.2.20" });
  assert.equal(arc.result, "pass");
  assert.equal(arc.instance, 1);
  assert.match(arc.authResults, /^arc=pass \(i=1 spf=pass dkim=pass dmarc=pass fromdomain=a\.test\) smtp\.remote-ip=192\.0\.2\.20$/);
  // Who added the newest set, and what it saw: for a receiver that trusts that list (RFC 8617 §7.2).
  assert.deepEqual(arc.newest, { sealer: "list.test", dmarc: "pass" });

  // Petrel forwards it on: its set is i=2 with cv=pass, and the whole chain validates in dkimpy.
  const twice = await forward(mailauth, sealedByList);
  assert.match(unfold(twice), /^ARC-Seal: i=2; a=rsa-sha256; t=\d+; cv=pass;/);
  assert.equal((await dkimpyArcVerify(twice, keys)).cv, "pass");
  const again = await verifyArc(await verify(mailauth, twice), { resolver: mailauth });
  assert.deepEqual([again.result, again.instance], ["pass", 2]);
});

test("tampering after the seal fails the chain; a chain whose newest seal says cv=fail is not sealed again", async (t) => {
  const { mailauth } = await testDns(t, keyZone(keys));
  const sealed = await forward(mailauth, await signed());
  const tampered = sealed.replace("Hello Bob", "Hello Rob");
  assert.equal((await dkimpyArcVerify(tampered, keys)).cv, "fail");
  const v = await verify(mailauth, tampered);
  const arc = await verifyArc(v, { resolver: mailauth });
  assert.equal(arc.result, "fail");
  assert.match(arc.authResults, /^arc=fail \(i=1 no valid signature\)/);

  // Petrel may add a set recording the failure (cv=fail) ...
  const recorded = await forward(mailauth, tampered);
  assert.match(unfold(recorded), /^ARC-Seal: i=2; a=rsa-sha256; t=\d+; cv=fail;/);
  // ... after which nobody seals again (RFC 8617 §5.1.2).
  const { header } = split(recorded);
  await assert.rejects(
    sealArc({ header, bodyHash: v.bodyHash, chainValidation: "fail", authResults: "mx.fwd.test; arc=fail", key: petrelRsa }),
    /ARC sealing failed: The newest ARC-Seal \(i=2\) has cv=fail/,
  );
});

test("no chain: arc=none with the client's address", async (t) => {
  const { mailauth } = await testDns(t, keyZone(keys));
  const arc = await verifyArc(await verify(mailauth, MESSAGE), { resolver: mailauth, ip: "192.0.2.30" });
  assert.deepEqual(arc, { result: "none", instance: 0, authResults: "arc=none smtp.remote-ip=192.0.2.30" });
});

test("a key lookup that fails (SERVFAIL) is arc=fail marked temporary, not a broken chain", async (t) => {
  const { mailauth } = await testDns(t, keyZone(keys));
  const sealed = await forward(mailauth, await signed());
  const other = await testDns(t, keyZone(keys), { timeout: 100 });
  other.dns.setBehaviour(petrelRsa.name, "servfail");
  const arc = await verifyArc(await verify(other.mailauth, sealed), { resolver: other.mailauth });
  assert.equal(arc.result, "fail");
  assert.equal(arc.temporary, true);
  assert.match(arc.authResults, /^arc=fail \(DNS failure: .*SERVFAIL.*\)/);
  assert.equal((await verifyArc(await verify(mailauth, sealed), { resolver: mailauth })).temporary, undefined);
});
