import { test } from "node:test";
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { composeDsn, dsnRecipients, chooseBoundary, type DsnInput } from "../../src/delivery/bounce.ts";
import type { DsnRecipient } from "../../src/queue/ports.ts";
import { foldField } from "../../src/delivery/dsn-fields.ts";
import { readOriginal } from "../../src/delivery/dsn-original.ts";
import type { Envelope, Recipient } from "../../src/mail/envelope.ts";

// ---------------------------------------------------------------------------
// A small, strict MIME reader for checking what composeDsn produces.

interface Entity {
  headers: Map<string, string[]>; // lower-case name → unfolded values
  body: Buffer;
}

function header(e: Entity, name: string): string | undefined {
  return e.headers.get(name.toLowerCase())?.[0];
}

/** Every line ends in CRLF and none passes 998 octets. */
function assertWire(buf: Buffer): void {
  for (let i = 0; i < buf.length; i++) {
    if (buf[i] === 0x0a) assert.equal(buf[i - 1], 0x0d, `bare LF at ${i}`);
    if (buf[i] === 0x0d) assert.equal(buf[i + 1], 0x0a, `bare CR at ${i}`);
  }
  assert.ok(buf.subarray(buf.length - 2).equals(Buffer.from("\r\n")), "ends with CRLF");
  for (const line of buf.toString("latin1").split("\r\n")) assert.ok(line.length <= 998, `line of ${line.length} octets`);
}

function parseEntity(buf: Buffer): Entity {
  let sep = buf.indexOf("\r\n\r\n");
  let headText: string;
  let body: Buffer;
  if (buf.subarray(0, 2).equals(Buffer.from("\r\n"))) { headText = ""; body = buf.subarray(2); }
  else if (sep < 0) { headText = buf.toString("utf8"); body = Buffer.alloc(0); }
  else { headText = buf.subarray(0, sep).toString("utf8"); body = buf.subarray(sep + 4); }
  return { headers: parseFields(headText), body };
}

function parseFields(text: string): Map<string, string[]> {
  const map = new Map<string, string[]>();
  if (text === "") return map;
  const unfolded = text.replace(/\r\n(?=[ \t])/g, "");
  for (const line of unfolded.split("\r\n")) {
    if (line === "") continue;
    const m = /^([!-9;-~]+):[ \t]*(.*)$/.exec(line);
    assert.ok(m, `malformed field line: ${JSON.stringify(line)}`);
    const k = m[1].toLowerCase();
    map.set(k, [...(map.get(k) ?? []), m[2]]);
  }
  return map;
}

function boundaryOf(contentType: string): string {
  const m = /boundary="([^"]+)"/.exec(contentType);
  assert.ok(m, "boundary parameter");
  return m[1];
}

/** Split a multipart body by its boundary: [preamble, ...parts]; checks the close delimiter. */
function splitMultipart(body: Buffer, boundary: string): Entity[] {
  const text = body.toString("latin1");
  const delim = `\r\n--${boundary}`;
  const pieces = ("\r\n" + text).split(delim);
  const last = pieces.pop()!;
  assert.equal(last, "--\r\n", "close delimiter ends the message");
  pieces.shift(); // preamble
  return pieces.map((p) => {
    assert.ok(p.startsWith("\r\n"), "delimiter line ends right after the boundary");
    return parseEntity(Buffer.from(p.slice(2), "latin1"));
  });
}

interface ParsedDsn {
  top: Entity;
  parts: Entity[];
  text: string;
  perMessage: Map<string, string[]>;
  perRecipient: Map<string, string[]>[];
}

function parseDsn(message: Buffer): ParsedDsn {
  assertWire(message);
  const top = parseEntity(message);
  const ct = header(top, "Content-Type")!;
  assert.match(ct, /^multipart\/report; report-type=(global-)?delivery-status;/);
  const boundary = boundaryOf(ct);
  assert.ok(boundary.length <= 70);
  const parts = splitMultipart(top.body, boundary);
  assert.equal(parts.length, 3);
  const groups = parts[1].body.toString("utf8").replace(/\r\n$/, "").split("\r\n\r\n");
  const [perMessage, ...perRecipient] = groups.map(parseFields);
  return { top, parts, text: parts[0].body.toString("utf8"), perMessage, perRecipient };
}

function fields(m: Map<string, string[]>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of m) out[k] = v.join(" | ");
  return out;
}

// ---------------------------------------------------------------------------
// Fixtures.

function envelope(over: Partial<Envelope> & { recipients?: readonly Recipient[] } = {}): Envelope {
  return {
    mailFrom: "alice@example.com",
    recipients: [{ address: "bob@example.net" }],
    smtputf8: false,
    requireTls: false,
    client: { address: "192.0.2.7", port: 40000, helo: "client.example.com", protocol: "ESMTP", role: "mx" },
    receivedAt: Date.UTC(2024, 4, 1, 10, 0, 0),
    ...over,
  };
}

const ORIGINAL = "From: Alice <alice@example.com>\r\nTo: bob@example.net\r\nSubject: lunch\r\nMessage-ID: <m1@example.com>\r\n\r\nShall we have lunch?\r\n";

const FAILED_BOB: DsnRecipient = {
  address: "bob@example.net",
  action: "failed",
  status: "5.1.1",
  diagnostic: "550 5.1.1 <bob@example.net>: no such user",
  remoteMta: "mx.example.net",
};

let seed = 0;
function input(over: Partial<DsnInput> = {}, original: string | Buffer = ORIGINAL): DsnInput {
  return {
    queueId: "4Q7Z1A",
    envelope: envelope(),
    recipients: [FAILED_BOB],
    reportingMta: "mx.petrel.example",
    arrivalDate: new Date(Date.UTC(2024, 4, 1, 10, 0, 0)),
    now: new Date(Date.UTC(2024, 4, 1, 10, 5, 0)),
    originalMessage: () => Readable.from([Buffer.isBuffer(original) ? original : Buffer.from(original)]),
    randomBytes: (n) => Buffer.alloc(n, ++seed),
    ...over,
  };
}

// ---------------------------------------------------------------------------

test("a failure DSN: headers, three parts, per-message and per-recipient fields exact", async () => {
  const r = await composeDsn(input({ envelope: envelope({ recipients: [{ address: "bob@example.net", orcpt: "rfc822;Bob@Example.NET" }], envid: "QQ314159" }) }));
  assert.ok(r);
  assert.equal(r.mailFrom, "");
  assert.equal(r.to, "alice@example.com");
  assert.equal(r.needs8bit, false);
  assert.equal(r.smtputf8, false);
  const d = parseDsn(r.message);
  assert.equal(header(d.top, "From"), "Mail Delivery System <MAILER-DAEMON@mx.petrel.example>");
  assert.equal(header(d.top, "To"), "<alice@example.com>");
  assert.equal(header(d.top, "Subject"), "Undelivered Mail Returned to Sender");
  assert.equal(header(d.top, "Date"), "Wed, 1 May 2024 10:05:00 +0000");
  assert.match(header(d.top, "Message-ID")!, /^<20240501100500\.4Q7Z1A\.[0-9a-f]+@mx\.petrel\.example>$/);
  assert.equal(header(d.top, "Auto-Submitted"), "auto-replied");
  assert.equal(header(d.top, "MIME-Version"), "1.0");
  assert.equal(header(d.top, "Content-Transfer-Encoding"), undefined);

  assert.equal(header(d.parts[0], "Content-Type"), "text/plain; charset=us-ascii");
  assert.match(d.text, /^This is the mail system at host mx\.petrel\.example\.\r\n/);
  assert.match(d.text, /could not be delivered/);
  assert.match(d.text.replace(/\r\n\s*/g, " "), /<bob@example\.net>: the mail server mx\.example\.net replied: 550 5\.1\.1 <bob@example\.net>: no such user/);

  assert.equal(header(d.parts[1], "Content-Type"), "message/delivery-status");
  assert.deepEqual(fields(d.perMessage), {
    "reporting-mta": "dns; mx.petrel.example",
    "x-petrel-queue-id": "4Q7Z1A",
    "x-petrel-sender": "rfc822; alice@example.com",
    "original-envelope-id": "QQ314159",
    "arrival-date": "Wed, 1 May 2024 10:00:00 +0000",
  });
  assert.equal(d.perRecipient.length, 1);
  assert.deepEqual([...d.perRecipient[0].keys()], ["original-recipient", "final-recipient", "action", "status", "remote-mta", "diagnostic-code"]);
  assert.deepEqual(fields(d.perRecipient[0]), {
    "original-recipient": "rfc822;Bob@Example.NET",
    "final-recipient": "rfc822; bob@example.net",
    action: "failed",
    status: "5.1.1",
    "remote-mta": "dns; mx.example.net",
    "diagnostic-code": "smtp; 550 5.1.1 <bob@example.net>: no such user",
  });

  assert.equal(header(d.parts[2], "Content-Type"), "message/rfc822");
  assert.equal(header(d.parts[2], "Content-Description"), "Undelivered Message");
  assert.equal(d.parts[2].body.toString(), ORIGINAL);
});

test("dsnRecipients: NOTIFY rules and the null sender", () => {
  const env = envelope({
    recipients: [
      { address: "never@x.example", notify: ["NEVER"] },
      { address: "default@x.example" },
      { address: "succ@x.example", notify: ["SUCCESS"] },
      { address: "fail@x.example", notify: ["FAILURE"] },
      { address: "all@x.example", notify: ["SUCCESS", "FAILURE", "DELAY"], orcpt: "rfc822;list@x.example" },
    ],
  });
  const c = (address: string, action: DsnRecipient["action"]): DsnRecipient => ({ address, action, status: "5.0.0" });
  const pick = (cands: DsnRecipient[]) => dsnRecipients(env, cands).map((r) => `${r.address}:${r.action}`);
  assert.deepEqual(pick([c("never@x.example", "failed"), c("never@x.example", "delayed"), c("never@x.example", "delivered")]), []);
  assert.deepEqual(pick([c("default@x.example", "failed"), c("default@x.example", "delayed"), c("default@x.example", "delivered")]),
    ["default@x.example:failed", "default@x.example:delayed"]);
  assert.deepEqual(pick([c("succ@x.example", "failed"), c("succ@x.example", "delivered"), c("succ@x.example", "relayed"), c("succ@x.example", "expanded")]),
    ["succ@x.example:delivered", "succ@x.example:relayed", "succ@x.example:expanded"]);
  assert.deepEqual(pick([c("fail@x.example", "delayed"), c("fail@x.example", "failed")]), ["fail@x.example:failed"]);
  assert.deepEqual(pick([c("ALL@X.example", "delivered")]), ["ALL@X.example:delivered"], "matched case-insensitively");
  assert.equal(dsnRecipients(env, [c("all@x.example", "failed")])[0].orcpt, "rfc822;list@x.example", "ORCPT filled from the envelope");
  assert.deepEqual(pick([c("stranger@x.example", "failed")]), ["stranger@x.example:failed"], "unknown recipient: default NOTIFY");
  assert.deepEqual(dsnRecipients(envelope({ ...env, mailFrom: "" }), [c("default@x.example", "failed")]), []);
});

test("NOTIFY=NEVER → no DSN at all", async () => {
  let opened = false;
  const r = await composeDsn(input({
    envelope: envelope({ recipients: [{ address: "bob@example.net", notify: ["NEVER"] }] }),
    originalMessage: () => { opened = true; return Readable.from([Buffer.from(ORIGINAL)]); },
  }));
  assert.equal(r, null);
  assert.equal(opened, false, "the original is not even read");
});

test("null sender → no DSN (bounces are never bounced)", async () => {
  assert.equal(await composeDsn(input({ envelope: envelope({ mailFrom: "" }) })), null);
});

test("NOTIFY=SUCCESS with a delivered recipient → success report, headers only by default", async () => {
  const r = await composeDsn(input({
    envelope: envelope({ recipients: [{ address: "bob@example.net", notify: ["SUCCESS"] }] }),
    recipients: [{ address: "bob@example.net", action: "delivered", status: "2.0.0", diagnostic: "250 2.0.0 Ok: queued as 9ABC", remoteMta: "mx.example.net" }],
  }));
  assert.ok(r);
  const d = parseDsn(r.message);
  assert.equal(header(d.top, "Subject"), "Successful Mail Delivery Report");
  assert.deepEqual(fields(d.perRecipient[0]), {
    "final-recipient": "rfc822; bob@example.net",
    action: "delivered",
    status: "2.0.0",
    "remote-mta": "dns; mx.example.net",
    "diagnostic-code": "smtp; 250 2.0.0 Ok: queued as 9ABC",
  });
  assert.match(d.text, /Delivered:/);
  assert.doesNotMatch(d.text, /could not be delivered/);
  assert.equal(header(d.parts[2], "Content-Type"), "text/rfc822-headers");
  assert.equal(header(d.parts[2], "Content-Description"), "Original Message Headers");
  assert.equal(d.parts[2].body.toString(), ORIGINAL.slice(0, ORIGINAL.indexOf("\r\n\r\n") + 2));
});

test("success DSN with RET=FULL returns the full message", async () => {
  const r = await composeDsn(input({
    envelope: envelope({ ret: "FULL", recipients: [{ address: "bob@example.net", notify: ["SUCCESS"] }] }),
    recipients: [{ address: "bob@example.net", action: "delivered", status: "2.0.0" }],
  }));
  const d = parseDsn(r!.message);
  assert.equal(header(d.parts[2], "Content-Type"), "message/rfc822");
  assert.equal(d.parts[2].body.toString(), ORIGINAL);
});

test("a REQUIRETLS message's content is never returned, even with RET=FULL (RFC 8689 §5)", async () => {
  const r = await composeDsn(input({ envelope: envelope({ ret: "FULL", requireTls: true }) }));
  const d = parseDsn(r!.message);
  assert.equal(header(d.parts[2], "Content-Type"), "text/rfc822-headers");
  assert.doesNotMatch(d.parts[2].body.toString(), /lunch\?/);
});

test("RET=HDRS → only the headers are returned, and the text says it was asked", async () => {
  const r = await composeDsn(input({ envelope: envelope({ ret: "HDRS" }) }));
  const d = parseDsn(r!.message);
  assert.equal(header(d.parts[2], "Content-Type"), "text/rfc822-headers");
  assert.equal(header(d.parts[2], "Content-Description"), "Undelivered Message Headers");
  const body = d.parts[2].body.toString();
  assert.equal(body, "From: Alice <alice@example.com>\r\nTo: bob@example.net\r\nSubject: lunch\r\nMessage-ID: <m1@example.com>\r\n");
  assert.doesNotMatch(body, /lunch\?/);
  assert.match(d.text.replace(/\r\n/g, " "), /Only the headers of your message are attached, as was asked/);
});

test("RET=FULL with a message over maxOriginalSize → headers only, with a note; reading stops early", async () => {
  const head = "From: alice@example.com\r\nSubject: big\r\n\r\n";
  const line = "x".repeat(78) + "\r\n";
  let pulled = 0;
  const total = 2000;
  function* gen() {
    yield Buffer.from(head);
    for (let i = 0; i < total; i++) { pulled++; yield Buffer.from(line.repeat(10)); }
  }
  const r = await composeDsn(input({
    envelope: envelope({ ret: "FULL" }),
    maxOriginalSize: 10_000,
    originalMessage: () => Readable.from(gen()),
  }));
  const d = parseDsn(r!.message);
  assert.equal(header(d.parts[2], "Content-Type"), "text/rfc822-headers");
  assert.equal(d.parts[2].body.toString(), "From: alice@example.com\r\nSubject: big\r\n");
  assert.match(d.text.replace(/\r\n/g, " "), /too large to be returned in full \(more than 10000 bytes\), so only its headers are attached/);
  assert.ok(pulled < 50, `stopped reading after the limit (pulled ${pulled})`);
  assert.ok(r!.message.length < 5000);
});

test("a message exactly at maxOriginalSize is returned in full", async () => {
  const r = await composeDsn(input({ maxOriginalSize: Buffer.byteLength(ORIGINAL) }));
  assert.equal(header(parseDsn(r!.message).parts[2], "Content-Type"), "message/rfc822");
  const r2 = await composeDsn(input({ maxOriginalSize: Buffer.byteLength(ORIGINAL) - 1 }));
  assert.equal(header(parseDsn(r2!.message).parts[2], "Content-Type"), "text/rfc822-headers");
});

test("ENVID and ORCPT are echoed; ORCPT from the candidate wins over the envelope's", async () => {
  const r = await composeDsn(input({
    envelope: envelope({ envid: "abc+def=1", recipients: [{ address: "bob@example.net", orcpt: "rfc822;bob@old.example" }, { address: "carol@example.net", orcpt: "rfc822;carol@list.example" }] }),
    recipients: [
      { ...FAILED_BOB, orcpt: "rfc822;bob@explicit.example" },
      { address: "carol@example.net", action: "failed", status: "5.2.2", diagnostic: "552 5.2.2 mailbox full" },
    ],
  }));
  const d = parseDsn(r!.message);
  assert.equal(header({ headers: d.perMessage, body: Buffer.alloc(0) }, "Original-Envelope-Id"), "abc+def=1");
  assert.equal(d.perRecipient[0].get("original-recipient")![0], "rfc822;bob@explicit.example");
  assert.equal(d.perRecipient[1].get("original-recipient")![0], "rfc822;carol@list.example");
  // No ENVID → no field.
  const r2 = await composeDsn(input());
  assert.equal(parseDsn(r2!.message).perMessage.has("original-envelope-id"), false);
  assert.equal(parseDsn(r2!.message).perRecipient[0].has("original-recipient"), false);
});

test("SMTPUTF8 message → global types, utf-8 address types, 8-bit flags", async () => {
  const original = "From: José <josé@exemple.fr>\r\nTo: 用户@例子.广告\r\nSubject: ¡Hola!\r\n\r\nCuerpo con acentos: ñ\r\n";
  const r = await composeDsn(input({
    envelope: envelope({ mailFrom: "josé@exemple.fr", smtputf8: true, recipients: [{ address: "用户@例子.广告", orcpt: "utf-8;用户@例子.广告" }, { address: "ascii@example.net" }] }),
    recipients: [
      { address: "用户@例子.广告", action: "failed", status: "5.1.1", diagnostic: "550 5.1.1 用户: unknown" },
      { address: "ascii@example.net", action: "failed", status: "5.1.1" },
    ],
  }, original));
  assert.ok(r);
  assert.equal(r.to, "josé@exemple.fr");
  assert.equal(r.needs8bit, true);
  assert.equal(r.smtputf8, true);
  const d = parseDsn(r.message);
  assert.match(header(d.top, "Content-Type")!, /report-type=global-delivery-status/);
  assert.equal(header(d.top, "To"), "<josé@exemple.fr>");
  assert.equal(header(d.top, "Content-Transfer-Encoding"), "8bit");
  assert.equal(header(d.parts[0], "Content-Type"), "text/plain; charset=utf-8");
  assert.equal(header(d.parts[1], "Content-Type"), "message/global-delivery-status");
  assert.equal(header(d.parts[2], "Content-Type"), "message/global");
  assert.equal(header(d.parts[2], "Content-Transfer-Encoding"), "8bit");
  assert.equal(d.parts[2].body.toString("utf8"), original);
  assert.equal(d.perMessage.get("x-petrel-sender")![0], "utf-8; josé@exemple.fr");
  assert.equal(d.perRecipient[0].get("original-recipient")![0], "utf-8;用户@例子.广告");
  assert.equal(d.perRecipient[0].get("final-recipient")![0], "utf-8; 用户@例子.广告");
  assert.equal(d.perRecipient[0].get("diagnostic-code")![0], "smtp; 550 5.1.1 用户: unknown");
  assert.equal(d.perRecipient[1].get("final-recipient")![0], "rfc822; ascii@example.net");
  assert.equal(d.perRecipient[1].has("diagnostic-code"), false);
  assert.match(d.text, /<ascii@example\.net>: delivery failed \(status 5\.1\.1\)/);

  // Headers only in global form.
  const h = await composeDsn(input({ envelope: envelope({ mailFrom: "josé@exemple.fr", smtputf8: true, ret: "HDRS" }) }, original));
  assert.equal(header(parseDsn(h!.message).parts[2], "Content-Type"), "message/global-headers");
});

test("an 8-bit original in a non-UTF8 message: needs8bit, CTE 8bit on the part and at the top", async () => {
  const original = Buffer.concat([Buffer.from("Subject: caf"), Buffer.from([0xe9]), Buffer.from("\r\n\r\nna"), Buffer.from([0xef]), Buffer.from("ve\r\n")]);
  const r = await composeDsn(input({}, original));
  assert.equal(r!.needs8bit, true);
  assert.equal(r!.smtputf8, false);
  const d = parseDsn(r!.message);
  assert.equal(header(d.top, "Content-Transfer-Encoding"), "8bit");
  assert.equal(header(d.parts[0], "Content-Transfer-Encoding"), undefined);
  assert.equal(header(d.parts[2], "Content-Type"), "message/rfc822");
  assert.equal(header(d.parts[2], "Content-Transfer-Encoding"), "8bit");
  assert.ok(r!.message.includes(original), "the original is carried byte for byte");
});

test("non-ASCII in a diagnostic of a non-UTF8 DSN is replaced, so the report stays 7-bit", async () => {
  const r = await composeDsn(input({ recipients: [{ ...FAILED_BOB, diagnostic: "550 5.1.1 Empfänger unbekannt" }] }));
  assert.equal(r!.needs8bit, false);
  const d = parseDsn(r!.message);
  assert.equal(d.perRecipient[0].get("diagnostic-code")![0], "smtp; 550 5.1.1 Empf?nger unbekannt");
});

test("multiple recipients with mixed outcomes: one DSN, grouped, in order", async () => {
  const env = envelope({
    recipients: [
      { address: "bob@example.net" },
      { address: "carol@example.net", notify: ["SUCCESS", "FAILURE"] },
      { address: "dave@example.org" },
      { address: "erin@example.org", notify: ["NEVER"] },
    ],
  });
  const r = await composeDsn(input({
    envelope: env,
    recipients: [
      FAILED_BOB,
      { address: "carol@example.net", action: "delivered", status: "2.0.0" },
      { address: "dave@example.org", action: "delayed", status: "4.4.1", diagnostic: "connect to mx.example.org[192.0.2.9]:25: Connection timed out", lastAttempt: new Date(Date.UTC(2024, 4, 1, 10, 4, 0)), willRetryUntil: new Date(Date.UTC(2024, 4, 6, 10, 0, 0)) },
      { address: "erin@example.org", action: "failed", status: "5.1.1" },
    ],
  }));
  const d = parseDsn(r!.message);
  assert.equal(header(d.top, "Subject"), "Undelivered Mail Returned to Sender");
  assert.deepEqual(d.perRecipient.map((g) => `${g.get("final-recipient")![0]} ${g.get("action")![0]} ${g.get("status")![0]}`), [
    "rfc822; bob@example.net failed 5.1.1",
    "rfc822; carol@example.net delivered 2.0.0",
    "rfc822; dave@example.org delayed 4.4.1",
  ]);
  assert.equal(d.perRecipient[2].get("diagnostic-code")![0], "x-petrel; connect to mx.example.org[192.0.2.9]:25: Connection timed out");
  assert.doesNotMatch(d.text, /erin/);
  const flat = d.text.replace(/\r\n\s*/g, " ");
  const iFail = flat.indexOf("Could not be delivered:"), iDelay = flat.indexOf("Delayed, still trying:"), iDone = flat.indexOf("Delivered:");
  assert.ok(iFail >= 0 && iFail < iDelay && iDelay < iDone);
  assert.ok(flat.indexOf("<bob@example.net>") > iFail && flat.indexOf("<dave@example.org>") > iDelay && flat.indexOf("<carol@example.net>") > iDone);
  assert.equal(header(d.parts[2], "Content-Type"), "message/rfc822", "a failure returns the full message");
});

test("delay warning: subject, Last-Attempt-Date and Will-Retry-Until, headers only", async () => {
  const r = await composeDsn(input({
    recipients: [{ address: "bob@example.net", action: "delayed", status: "4.4.1", diagnostic: "451 4.4.1 try later", remoteMta: "mx.example.net", lastAttempt: new Date(Date.UTC(2024, 4, 1, 14, 0, 0)), willRetryUntil: new Date(Date.UTC(2024, 4, 6, 10, 0, 0)) }],
  }));
  const d = parseDsn(r!.message);
  assert.equal(header(d.top, "Subject"), "Delayed Mail (still being retried)");
  assert.deepEqual(fields(d.perRecipient[0]), {
    "final-recipient": "rfc822; bob@example.net",
    action: "delayed",
    status: "4.4.1",
    "remote-mta": "dns; mx.example.net",
    "diagnostic-code": "smtp; 451 4.4.1 try later",
    "last-attempt-date": "Wed, 1 May 2024 14:00:00 +0000",
    "will-retry-until": "Mon, 6 May 2024 10:00:00 +0000",
  });
  assert.match(d.text.replace(/\r\n\s*/g, " "), /will keep trying until Mon, 6 May 2024 10:00:00 \+0000/);
  assert.match(d.text.replace(/\r\n/g, " "), /do not need to send the message again/);
  assert.equal(header(d.parts[2], "Content-Type"), "text/rfc822-headers");
  // Will-Retry-Until only for delayed recipients.
  const f = await composeDsn(input({ recipients: [{ ...FAILED_BOB, lastAttempt: new Date(0), willRetryUntil: new Date(0) }] }));
  const g = parseDsn(f!.message).perRecipient[0];
  assert.equal(g.get("last-attempt-date")![0], "Thu, 1 Jan 1970 00:00:00 +0000");
  assert.equal(g.has("will-retry-until"), false);
});

test("Diagnostic-Code folding: long values fold at spaces, giant words are cut, text is kept", async () => {
  const words = Array.from({ length: 60 }, (_, i) => `word${i}`).join(" ");
  const giant = "z".repeat(1500);
  const diag = `550-5.7.1 first line\r\n550 5.7.1 ${words} ${giant} end`;
  const r = await composeDsn(input({ recipients: [{ ...FAILED_BOB, diagnostic: diag }] }));
  const d = parseDsn(r!.message); // parseDsn checks ≤ 998 octets per line
  const raw = d.parts[1].body.toString();
  const start = raw.indexOf("Diagnostic-Code:");
  const rawField = raw.slice(start, raw.indexOf("\r\n\r\n", start) >= 0 ? raw.indexOf("\r\n\r\n", start) : raw.length).replace(/\r\n$/, "");
  const lines = rawField.split("\r\n");
  assert.ok(lines.length > 4, "folded onto several lines");
  for (const l of lines.slice(1)) assert.match(l, /^ \S/, "continuation lines start with one space");
  for (const l of lines) if (!l.includes("zzz")) assert.ok(l.length <= 78, `soft limit: ${l}`);
  const value = d.perRecipient[0].get("diagnostic-code")![0];
  assert.equal(value.replace(/z+(?: z+)*/g, "Z"), `smtp; 550-5.7.1 first line 550 5.7.1 ${words} Z end`);
  // The giant word is cut into pieces (unfolding joins them with a space each), none lost.
  assert.equal(value.match(/z/g)!.length, 1500);
  // A runaway reply is cut at 2000 characters, marked with "...".
  const huge = await composeDsn(input({ recipients: [{ ...FAILED_BOB, diagnostic: "550 " + "w ".repeat(5000) }] }));
  const hv = parseDsn(huge!.message).perRecipient[0].get("diagnostic-code")![0];
  assert.ok(hv.length <= 2000 + "smtp; ".length && hv.endsWith("..."), hv.slice(-20));
});

test("foldField: short values untouched; exact limits", () => {
  assert.equal(foldField("Status", "5.1.1"), "Status: 5.1.1\r\n");
  const v = "a".repeat(70) + " " + "b".repeat(70);
  assert.equal(foldField("X", v), `X: ${"a".repeat(70)}\r\n ${"b".repeat(70)}\r\n`);
  const big = foldField("X", "é".repeat(1000)); // 2000 octets in one word
  for (const l of big.split("\r\n")) assert.ok(Buffer.byteLength(l) <= 998);
  assert.equal(big.replace(/\r\n /g, "").replace(/\r\n$/, ""), "X: " + "é".repeat(1000), "no character split");
});

test("the boundary never occurs in the content: a colliding random draw is rejected", async () => {
  const first = Buffer.alloc(16, 0xab);
  const clash = `--=_petrel_${first.toString("hex")}`;
  const original = `From: alice@example.com\r\nSubject: tricky\r\n\r\n${clash}\r\n${clash}--\r\n`;
  let calls = 0;
  const r = await composeDsn(input({ randomBytes: (n) => (++calls === 1 && n === 16 ? first : Buffer.alloc(n, 0x11 + calls)) }, original));
  const d = parseDsn(r!.message);
  assert.notEqual(boundaryOf(header(d.top, "Content-Type")!), `=_petrel_${first.toString("hex")}`);
  assert.equal(d.parts[2].body.toString(), original);
  assert.throws(() => chooseBoundary([{ body: Buffer.from(clash) }], () => first));
});

test("the original is carried with CRLF ends and no line over 998 octets", async () => {
  // Bare LF line ends are repaired.
  const r = await composeDsn(input({}, "Subject: lf\n\nbody\nline\n"));
  const d = parseDsn(r!.message);
  assert.equal(d.parts[2].body.toString(), "Subject: lf\r\n\r\nbody\r\nline\r\n");
  // A body line over 998 octets cannot be carried in full: headers only, with a note.
  const long = `Subject: long\r\n\r\n${"y".repeat(1500)}\r\n`;
  const r2 = await composeDsn(input({}, long));
  const d2 = parseDsn(r2!.message);
  assert.equal(header(d2.parts[2], "Content-Type"), "text/rfc822-headers");
  assert.match(d2.text.replace(/\r\n/g, " "), /lines too long/);
  // An over-long header line is folded when returned as headers.
  const r3 = await composeDsn(input({ envelope: envelope({ ret: "HDRS" }) }, `X-Long: ${"q".repeat(1200)}\r\nSubject: s\r\n\r\nb\r\n`));
  const d3 = parseDsn(r3!.message);
  assert.equal(d3.parts[2].body.toString().replace(/\r\n /g, ""), `X-Long: ${"q".repeat(1200)}\r\nSubject: s\r\n`);
});

test("readOriginal: headers-only stops at the blank line; a message with no body is all headers", async () => {
  let pulled = 0;
  function* gen() { yield Buffer.from("A: 1\r\nB: 2\r"); yield Buffer.from("\n\r\nbody"); for (;;) { pulled++; yield Buffer.from("more\r\n"); } }
  const h = await readOriginal(Readable.from(gen()), "headers", 100);
  assert.deepEqual(h.kind, "headers");
  assert.equal(h.content.toString(), "A: 1\r\nB: 2\r\n");
  assert.ok(pulled <= 1);
  const nobody = await readOriginal(Readable.from([Buffer.from("A: 1\r\nB: 2\r\n")]), "headers", 100);
  assert.equal(nobody.content.toString(), "A: 1\r\nB: 2\r\n");
});
