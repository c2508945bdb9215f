import { test } from "node:test";
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { DkimSigner, dkimAlgorithm } from "../../src/mailauth/dkim-sign.ts";
import { MESSAGE, dkimpyVerify, opendkimVerify, testKey } from "./helpers.ts";

const rsa = testKey("a.test", "rsa2024", "rsa");
const ed = testKey("a.test", "ed2024", "ed25519");

/** Sign `message` written in chunks of `size` octets; `header` replaces the header section at the end. */
async function sign(message: string, keys = [rsa, ed], size = 7, header?: string): Promise<string> {
  const signer = new DkimSigner(keys, { now: () => Date.UTC(2024, 0, 1, 10, 0, 5) });
  const bytes = Buffer.from(message);
  for (let i = 0; i < bytes.length; i += size) await signer.write(bytes.subarray(i, i + size));
  return signer.end(header);
}

function tag(field: string, name: string): string | undefined {
  const unfolded = field.replace(/\r\n[ \t]+/g, " ");
  return new RegExp(`(?:;|:)\\s*${name}=([^;]*)`).exec(unfolded)?.[1]?.trim();
}

test("both algorithms at once: an rsa-sha256 and an ed25519-sha256 signature, relaxed/relaxed, no l=", async () => {
  const fields = await sign(MESSAGE);
  const list = fields.split(/\r\n(?=DKIM-Signature:)/);
  assert.equal(list.length, 2);
  assert.ok(fields.endsWith("\r\n"));
  assert.equal(tag(list[0], "a"), "rsa-sha256");
  assert.equal(tag(list[1], "a"), "ed25519-sha256");
  for (const f of list) {
    assert.equal(tag(f, "c"), "relaxed/relaxed");
    assert.equal(tag(f, "d"), "a.test");
    assert.equal(tag(f, "l"), undefined, "never a body length limit");
    assert.equal(tag(f, "x"), undefined);
    assert.equal(tag(f, "t"), String(Date.UTC(2024, 0, 1, 10, 0, 5) / 1000));
    for (const line of f.split("\r\n")) assert.ok(line.length <= 78, `folded: ${line}`);
  }
  assert.deepEqual([tag(list[0], "s"), tag(list[1], "s")], ["rsa2024", "ed2024"]);
});

test("the header list: From, To, Subject, Date, Message-ID over-signed (one more than present), absent Cc and Reply-To guarded", async () => {
  const fields = await sign(MESSAGE, [rsa]);
  const h = tag(fields, "h")!.split(":").map((n) => n.trim().toLowerCase());
  const count = (n: string) => h.filter((x) => x === n).length;
  for (const name of ["from", "to", "subject", "date", "message-id"]) assert.equal(count(name), 2, name);
  assert.equal(count("cc"), 1, "an absent Cc is listed once, so none can be added");
  assert.equal(count("reply-to"), 1);
  assert.equal(count("mime-version"), 2);
  assert.equal(count("content-type"), 2);
  assert.equal(count("received"), 0, "trace fields change in transit and are not signed");
});

test("dkimpy and OpenDKIM verify Petrel's signatures, both algorithms, whatever the chunking", async () => {
  for (const size of [1, 7, 65536]) {
    const signed = (await sign(MESSAGE, [rsa, ed], size)) + MESSAGE;
    assert.deepEqual(await dkimpyVerify(signed, [rsa, ed]), [{ pass: true }, { pass: true }], `chunks of ${size}`);
  }
  const signed = (await sign(MESSAGE)) + MESSAGE;
  assert.deepEqual(await opendkimVerify(signed, [rsa, ed]), ["pass", "pass"]);
});

test("tampering is caught by the independent verifiers: body, signed header, an added From or Subject", async () => {
  const signed = (await sign(MESSAGE)) + MESSAGE;
  const body = signed.replace("the  figures", "the  numbers");
  const subject = signed.replace("Subject: Quarterly report", "Subject: Quarterly Report");
  // A field added above the signed one: a verifier picks the bottom-most instance first
  // (RFC 6376 §5.4.2), so only the over-signed second name in h= catches it.
  const secondFrom = "From: mallory@evil.test\r\n" + signed;
  const secondSubject = "Subject: Urgent: new bank details\r\n" + signed;
  for (const [what, message] of [["body", body], ["subject", subject]] as const) {
    assert.deepEqual((await dkimpyVerify(message, [rsa, ed])).map((r) => r.pass), [false, false], what);
    assert.deepEqual(await opendkimVerify(message, [rsa, ed]), ["fail", "fail"], what);
  }
  // (OpenDKIM does not evaluate a message with two From or Subject fields at all.)
  assert.deepEqual((await dkimpyVerify(secondFrom, [rsa, ed])).map((r) => r.pass), [false, false]);
  assert.deepEqual((await dkimpyVerify(secondSubject, [rsa, ed])).map((r) => r.pass), [false, false]);
  const signer = new DkimSigner([rsa], { oversignedFields: [] });
  await signer.write(Buffer.from(MESSAGE));
  const plain = "Subject: Urgent: new bank details\r\n" + (await signer.end()) + MESSAGE;
  assert.deepEqual(await dkimpyVerify(plain, [rsa]), [{ pass: true }], "without over-signing the added Subject goes unnoticed");
  // Relaxed canonicalization: whitespace changes and refolding by a relay do not break it.
  const relaxed = signed.replace("Subject: Quarterly report", "Subject:   Quarterly\r\n  report").replace("figures   are", "figures are");
  assert.deepEqual(await dkimpyVerify(relaxed, [rsa, ed]), [{ pass: true }, { pass: true }]);
});

test("headers decided at the end: the header section given to end() is what is signed", async () => {
  // Submission adds Message-ID and Date after the content streamed (RFC 6409 §8).
  const streamed = MESSAGE.replace("Message-ID: <report-1@a.test>\r\n", "").replace("Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n", "");
  const split = streamed.indexOf("\r\n\r\n") + 2;
  const finalHeader = "Message-ID: <added@a.test>\r\nDate: Mon, 01 Jan 2024 10:00:01 +0000\r\n" + streamed.slice(0, split);
  const fields = await sign(streamed, [rsa, ed], 64, finalHeader);
  const delivered = fields + finalHeader + streamed.slice(split);
  assert.deepEqual(await dkimpyVerify(delivered, [rsa, ed]), [{ pass: true }, { pass: true }]);
  const changed = delivered.replace("<added@a.test>", "<other@a.test>");
  assert.deepEqual((await dkimpyVerify(changed, [rsa, ed])).map((r) => r.pass), [false, false], "the added Message-ID is covered");
  // The same header section as the policy pipeline's parsed fields (name, value).
  const asFields = finalHeader.replace(/\r\n(?=[ \t])/g, "\u0000").split("\r\n").filter(Boolean).map((line) => {
    const colon = line.indexOf(":");
    return { name: line.slice(0, colon), value: line.slice(colon + 1).replace(/^ /, "").replace(/\u0000/g, "\r\n") };
  });
  const signer = new DkimSigner([rsa, ed]);
  await signer.write(Buffer.from(streamed));
  const fromFields = (await signer.end(asFields)) + finalHeader + streamed.slice(split);
  assert.deepEqual(await dkimpyVerify(fromFields, [rsa, ed]), [{ pass: true }, { pass: true }]);
});

test("a message without From cannot be signed; keys that cannot sign are refused up front", async () => {
  await assert.rejects(sign("To: bob@b.test\r\n\r\nhi\r\n", [rsa]), /no From field/);
  const small = generateKeyPairSync("rsa", { modulusLength: 512 });
  assert.throws(() => dkimAlgorithm(small.privateKey), /512 bits: DKIM needs at least 1024/);
  const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
  assert.throws(() => new DkimSigner([{ domain: "a.test", selector: "s", privateKey: ec.privateKey }]), /ec key cannot make DKIM signatures/);
});

test("a bare-LF message is signed as its CRLF form", async () => {
  const lf = MESSAGE.replace(/\r\n/g, "\n");
  const fields = await sign(lf, [ed]);
  assert.deepEqual(await dkimpyVerify(fields + MESSAGE, [ed]), [{ pass: true }]);
});
