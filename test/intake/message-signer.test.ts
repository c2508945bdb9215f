/**
 * Signing in the intake, checked where it matters: on the bytes a reader gets back from the
 * spool (spool/stored-message.ts, what the agents send and deliver), by independent verifiers —
 * dkimpy (python3-dkim) and OpenDKIM (`opendkim -t`) — with the keys of `dkim.domains` on disk.
 * The Received: field the intake writes, the Message-ID:/Date: it adds on submission, the fields
 * decided at the end of data and a filter's header edit are all there when the signature is
 * made; fields put on top later (the next hop's Received:, Delivered-To:) do not break it.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { FileSpool } from "../../src/spool/file-spool.ts";
import type { Spool } from "../../src/spool/spool.ts";
import { storedMessage } from "../../src/spool/stored-message.ts";
import { Intake, type MessageOrigin } from "../../src/intake/intake.ts";
import { MessageSigner } from "../../src/intake/message-signer.ts";
import { ManualClock } from "../../src/mail/clock.ts";
import { generateDkimKey, listDkimKeys } from "../../src/mailauth/dkim-keys.ts";
import { SigningKeys } from "../../src/mailauth/signing-keys.ts";
import type { Decided } from "../../src/policy/merge.ts";
import { readAll } from "../spool/helpers.ts";
import { dkimpyArcVerify, dkimpyVerify, opendkimVerify, type KeyRecord } from "../mailauth/helpers.ts";

let dir: string;
let spool: Spool;
let records: KeyRecord[];
let keys: SigningKeys;
const clock = new ManualClock(Date.UTC(2026, 0, 2, 3, 4, 5));

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "petrel-signer-"));
  await generateDkimKey(dir, "example.test", "rsa1", "rsa");
  await generateDkimKey(dir, "example.test", "ed1", "ed25519");
  await generateDkimKey(dir, "fwd.test", "arc1", "rsa");
  keys = await SigningKeys.load(dir, { "example.test": { selectors: ["rsa1", "ed1"] }, "fwd.test": { selectors: ["arc1"] } });
  records = [];
  for (const domain of ["example.test", "fwd.test"]) {
    for (const k of await listDkimKeys(dir, domain)) records.push({ name: `${k.selector}._domainkey.${domain}`, record: k.record });
  }
  spool = new FileSpool(join(dir, "spool"), { fsync: false });
  await spool.open();
});

after(async () => {
  await spool?.close();
  await rm(dir, { recursive: true, force: true });
});

function intake(): Intake {
  const log = pino({ level: "silent" });
  return new Intake({
    spool, hostname: "mx.example.test", primaryDomain: "example.test", headerSizeLimit: 65536, clock, log,
    signer: new MessageSigner({ keys, clock, log, headerSizeLimit: 65536 }),
  });
}

const SUBMISSION: MessageOrigin = {
  mailFrom: "alice@example.test",
  recipients: [{ address: "bob@b.test" }],
  params: { smtputf8: false, requireTls: false },
  client: { address: "192.0.2.9", port: 4242, helo: "laptop", protocol: "ESMTPSA", role: "submission", authUser: "alice@example.test" },
  submission: true,
};

const NOTHING: Decided = { prepend: [], headerEdits: [], recipients: { add: [], remove: [] } };

const CONTENT =
  "From: Alice <alice@example.test>\r\nTo: Bob <bob@b.test>\r\nSubject: Quarterly  report\r\nMIME-Version: 1.0\r\n" +
  "Content-Type: text/plain; charset=utf-8\r\n\r\nHello Bob,\r\n\r\nthe  figures are attached.  \r\n";

/** Write `content` in small pieces (chunk boundaries anywhere), end, commit; the message as a reader gets it. */
async function receive(origin: MessageOrigin, content: string, decided: Decided | ((header: { name: string }[]) => Decided)): Promise<string> {
  const m = await intake().begin(origin);
  const bytes = Buffer.from(content);
  for (let i = 0; i < bytes.length; i += 37) await m.write(bytes.subarray(i, i + 37));
  const header = (await m.end())!;
  const envelope = await m.commit(typeof decided === "function" ? decided(header) : decided, header);
  assert.ok(envelope);
  return (await readAll(storedMessage(envelope, spool.readBody(m.id)))).toString();
}

const unfold = (s: string) => s.replace(/\r\n[ \t]+/g, " ");

test("submission: signed with rsa-sha256 and ed25519-sha256 over the stored message — the added Message-ID: and Date: signed, our Received: not — and both verify in dkimpy and OpenDKIM", async () => {
  const delivered = await receive(SUBMISSION, CONTENT, NOTHING);
  const top = unfold(delivered).split("\r\n").slice(0, 3);
  assert.match(top[0], /^DKIM-Signature: v=1; a=rsa-sha256; c=relaxed\/relaxed; d=example\.test; .*s=rsa1; /);
  assert.match(top[1], /^DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed\/relaxed; d=example\.test; .*s=ed1; /);
  assert.match(top[2], /^Received: from laptop /);
  const h = /\bh=([^;]+);/.exec(top[0])![1].replace(/\s/g, "");
  assert.equal(h, "From:From:Reply-To:Subject:Subject:Date:Date:To:To:Cc:Message-ID:Message-ID:MIME-Version:MIME-Version:Content-Type:Content-Type");
  assert.match(delivered, /\r\nMessage-ID: <[^>]+@mx\.example\.test>\r\nDate: Fri, 2 Jan 2026 03:04:05 \+0000\r\n\r\nHello Bob/);
  assert.doesNotMatch(unfold(delivered), /\bl=/, "never a body length");
  assert.deepEqual(await dkimpyVerify(delivered, records), [{ pass: true }, { pass: true }]);
  assert.deepEqual(await opendkimVerify(delivered, records), ["pass", "pass"]);

  // What later hops put on top does not break them; changing a signed field does.
  const later = `Delivered-To: bob@b.test\r\nReceived: from mx.example.test by mx.b.test; Fri, 2 Jan 2026 03:04:06 +0000\r\n${delivered}`;
  assert.deepEqual(await dkimpyVerify(later, records), [{ pass: true }, { pass: true }]);
  const tampered = delivered.replace("Subject: Quarterly  report", "Subject: Quarterly report (corrected)");
  assert.deepEqual((await dkimpyVerify(tampered, records)).map((r) => r.pass), [false, false]);
  assert.deepEqual(await opendkimVerify(delivered.replace("the  figures", "the new figures"), records), ["fail", "fail"]);
});

test("submission: the fields decided at the end of data and a filter's header edit are what is signed", async () => {
  const delivered = await receive(SUBMISSION, CONTENT, (header) => ({
    ...NOTHING,
    prepend: [{ name: "X-Filter", value: "checked" }],
    // A filter rewrites the Subject (index 1 of the fields named so, in the section as stored).
    headerEdits: [{ op: "change", name: "Subject", index: header.filter((f) => f.name === "Subject").length, value: "[external] Quarterly report" }],
  }));
  assert.match(delivered, /\r\nX-Filter: checked\r\nReceived: /);
  assert.match(delivered, /\r\nSubject: \[external\] Quarterly report\r\n/);
  assert.deepEqual(await dkimpyVerify(delivered, records), [{ pass: true }, { pass: true }]);
});

test("not signed: mail from a client that did not log in, and From domains without keys", async () => {
  const mx: MessageOrigin = { ...SUBMISSION, client: { ...SUBMISSION.client, role: "mx", authUser: undefined, protocol: "ESMTP" }, submission: false };
  assert.doesNotMatch(await receive(mx, CONTENT, NOTHING), /DKIM-Signature/);
  assert.doesNotMatch(await receive(SUBMISSION, CONTENT.replace("alice@example.test", "alice@elsewhere.test"), NOTHING), /DKIM-Signature/);
  // A subdomain of a domain with keys is signed by the parent: aligned under relaxed DMARC.
  const sub = await receive(SUBMISSION, CONTENT.replace("alice@example.test", "alice@lists.example.test"), NOTHING);
  assert.match(unfold(sub), /^DKIM-Signature: v=1; a=rsa-sha256; c=relaxed\/relaxed; d=example\.test;/);
});

test("a message Petrel composes (Intake.submit: a DSN) is signed with its From domain's keys, as stored", async () => {
  const dsn = Buffer.from(
    "From: Mail Delivery System <MAILER-DAEMON@mx.example.test>\r\nTo: <alice@example.test>\r\nSubject: Undelivered Mail Returned to Sender\r\n" +
      "Date: Fri, 2 Jan 2026 03:04:05 +0000\r\nMessage-ID: <dsn-1@mx.example.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nThe message could not be delivered.\r\n",
  );
  const i = intake();
  const id = await i.submit({ mailFrom: "", recipients: ["alice@b.test"], content: dsn, needs8bit: false, smtputf8: false });
  const envelope = await spool.readEnvelope(id);
  const stored = (await readAll(storedMessage(envelope, spool.readBody(id)))).toString();
  assert.match(unfold(stored), /^DKIM-Signature: v=1; a=rsa-sha256; c=relaxed\/relaxed; d=example\.test;/);
  assert.ok(stored.endsWith(dsn.toString()));
  assert.equal(envelope.size, Buffer.byteLength(stored));
  assert.deepEqual(await dkimpyVerify(stored, records), [{ pass: true }, { pass: true }]);
});

test("an ARC set the checks asked for is made over the stored message with the Authentication-Results decided; dkimpy validates the chain", async () => {
  const mx: MessageOrigin = { ...SUBMISSION, client: { ...SUBMISSION.client, role: "mx", authUser: undefined, protocol: "ESMTP" }, submission: false };
  const { RelaxedBodyHash } = await import("../../src/mailauth/body-hash.ts");
  const hashed = new RelaxedBodyHash();
  await hashed.write(Buffer.from(CONTENT));
  const { bodyHash } = await hashed.end();
  const ar = "mx.example.test;\r\n\tspf=pass smtp.mailfrom=example.test;\r\n\tdmarc=pass header.from=example.test";
  const delivered = await receive(mx, CONTENT, (header) => ({
    ...NOTHING,
    prepend: [{ name: "Authentication-Results", value: ar }],
    headerEdits: [{ op: "change", name: "Subject", index: header.filter((f) => f.name === "Subject").length, value: "[fwd] Quarterly report" }],
    arcSeal: { domain: "fwd.test", chainValidation: "none", bodyHash, authResults: ar },
  }));
  const lines = unfold(delivered).split("\r\n");
  assert.match(lines[0], /^ARC-Seal: i=1; a=rsa-sha256; t=\d+; cv=none; d=fwd\.test; s=arc1;/);
  assert.match(lines[1], /^ARC-Message-Signature: i=1; a=rsa-sha256; c=relaxed\/relaxed; d=fwd\.test; .*s=arc1;/);
  assert.equal(lines[2], "ARC-Authentication-Results: i=1; mx.example.test; spf=pass smtp.mailfrom=example.test; dmarc=pass header.from=example.test");
  assert.equal(lines[3], "Authentication-Results: mx.example.test; spf=pass smtp.mailfrom=example.test; dmarc=pass header.from=example.test");
  assert.equal((await dkimpyArcVerify(delivered, records)).cv, "pass");
  // The seal covers the Subject as changed: the original one would fail.
  assert.equal((await dkimpyArcVerify(delivered.replace("[fwd] Quarterly report", "Quarterly  report"), records)).cv, "fail");
  // No RSA key for the sealing domain: stored unsealed, not lost.
  const unsealed = await receive(mx, CONTENT, { ...NOTHING, prepend: [{ name: "Authentication-Results", value: ar }], arcSeal: { domain: "b.test", chainValidation: "none", bodyHash, authResults: ar } });
  assert.match(unsealed, /^Authentication-Results: /);
  assert.doesNotMatch(unsealed, /ARC-Seal/);
});
