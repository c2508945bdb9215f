/**
 * The milter check against Sendmail's own libmilter (through Debian's
 * python3-milter): every action rspamd and OpenDKIM never take — refusals at
 * each stage with and without reply text, discard, accept, quarantine,
 * header insert/change/delete, recipient add/delete, progress, skip — and
 * what the filter receives: macros per stage, arguments, header values,
 * body chunks, aborts. See test/support/py/scenario_milter.py.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { milterCheck, type MilterSettings } from "../../../src/policy/milter/milter-check.ts";
import { parseServiceAddress } from "../../../src/mail/service-address.ts";
import { startScenarioMilter, type RunningMilter } from "../../support/milter-peers.ts";
import { capturingLogger, converse, field, storedMessage, type Conversation } from "./drive.ts";

let milter: RunningMilter;
let leadspc: RunningMilter;

before(async () => {
  [milter, leadspc] = await Promise.all([startScenarioMilter(), startScenarioMilter({ leadingSpace: true })]);
}, { timeout: 60_000 });

after(async () => {
  await Promise.all([milter?.stop(), leadspc?.stop()]);
});

function check(extra: Partial<MilterSettings> = {}, on = milter) {
  const { log, lines } = capturingLogger();
  const c = milterCheck(
    {
      name: "scenario", address: parseServiceAddress(on.address)!, connectTimeout: 10_000, commandTimeout: 30_000,
      endOfMessageTimeout: 30_000, defaultAction: "tempfail", ...extra,
    },
    { hostname: "mx.example.net", headerSizeLimit: 1024 * 1024, log },
  );
  return { check: c, lines };
}

const CONTENT = [
  "From: Alice <alice@example.org>",
  "To: Bob <bob@example.net>",
  "Subject: Weekly",
  " report",
  "X-Remove: this field goes",
  "X-Tight:no space",
  "",
  "Hello.",
  "",
].join("\r\n");

function one(to: string[], extra: Partial<Conversation> = {}): Conversation {
  return { ...extra, transactions: [{ from: "alice@example.org", to, content: CONTENT, queueId: "4QscenTest1" }] };
}

test("libmilter: macros of each stage, MAIL and RCPT arguments, header values and body as a filter receives them", async () => {
  const out = await converse(check().check, {
    client: { address: "127.0.0.1", port: 41234, localAddress: "127.0.0.1", localPort: 587, role: "submission", tls: { version: "TLSv1.3", cipher: "TLS_AES_256_GCM_SHA384" } },
    helo: "client.example.org",
    auth: { user: "alice@example.org", mechanism: "SCRAM-SHA-256" },
    transactions: [{ from: "alice@example.org", to: ["bob@example.net"], notify: ["SUCCESS", "FAILURE"], content: CONTENT, queueId: "4QscenTest1" }],
  });
  const stored = await storedMessage(CONTENT, out.transactions[0].endOfData);
  assert.equal(
    field(stored, "X-Seen-Connect"),
    "j=mx.example.net;_=unknown [127.0.0.1];v=Petrel;{daemon_name}=submission;{daemon_addr}=127.0.0.1;{daemon_port}=587;" +
      "{if_addr}=127.0.0.1;{client_addr}=127.0.0.1;{client_port}=41234;{client_name}=unknown",
  );
  assert.equal(field(stored, "X-Seen-Helo"), "{tls_version}=TLSv1.3;{cipher}=TLS_AES_256_GCM_SHA384");
  // The queue id is known from DATA on, so MAIL and RCPT do not carry `i`.
  assert.equal(field(stored, "X-Seen-Mail"), "{auth_type}=SCRAM-SHA-256;{auth_authen}=alice@example.org;{mail_addr}=alice@example.org");
  assert.equal(field(stored, "X-Seen-Rcpt"), "{rcpt_addr}=bob@example.net");
  assert.equal(field(stored, "X-Seen-Data"), "i=4QscenTest1");
  assert.equal(field(stored, "X-Seen-Eom"), "i=4QscenTest1");
  assert.equal(field(stored, "X-Seen-Args"), "NOTIFY=SUCCESS,FAILURE");
  // Without SMFIP_HDR_LEADSPC: one space after the colon dropped, folds as bare LF (Sendmail's form).
  assert.equal(
    field(stored, "X-Seen-Headers"),
    "[('From', 'Alice <alice@example.org>'), ('To', 'Bob <bob@example.net>'), ('Subject', 'Weekly\\n report'), " +
      "('X-Remove', 'this field goes'), ('X-Tight', 'no space')]",
  );
  assert.equal(field(stored, "X-Seen-Body"), "1 chunks, 8 octets");
});

test("libmilter: with SMFIP_HDR_LEADSPC the filter gets each value exactly as written after the colon", async () => {
  const out = await converse(check({}, leadspc).check, one(["bob@example.net"]));
  const stored = await storedMessage(CONTENT, out.transactions[0].endOfData);
  assert.equal(
    field(stored, "X-Seen-Headers"),
    "[('From', ' Alice <alice@example.org>'), ('To', ' Bob <bob@example.net>'), ('Subject', ' Weekly\\n report'), " +
      "('X-Remove', ' this field goes'), ('X-Tight', 'no space')]",
  );
});

test("libmilter: header insert, append, change, delete and recipient changes become header edits and recipient changes", async () => {
  const out = await converse(check().check, one(["edits@example.net"]));
  const result = out.transactions[0].endOfData;
  assert.ok(result);
  assert.deepEqual(result.recipients, { add: ["added@example.net"], remove: ["edits@example.net"] });
  const stored = (await storedMessage(CONTENT, result)).toString("latin1");
  const section = stored.slice(0, stored.indexOf("\r\n\r\n") + 2);
  assert.ok(section.startsWith("X-Top: inserted at the top\r\nFrom: Alice"), section);
  assert.match(section, /\r\nSubject: changed subject\r\nX-Tight:no space\r\n/);
  assert.doesNotMatch(section, /(^|\r\n)X-Remove:/);
  assert.match(section, /\r\nX-Folded: first line\r\n\tsecond line\r\nX-Absent: added by change\r\n$/);
  assert.equal(result.verdict, undefined);
});

test("libmilter: refusals with the filter's own reply — at connect, HELO, RCPT (that recipient only), end of message (two lines)", async () => {
  const atConnect = await converse(check().check, one(["bob@example.net"], { client: { address: "127.0.0.66" } }));
  assert.deepEqual(atConnect.connect?.verdict, { action: "reject", reply: { code: 554, status: "5.7.1", lines: ["connection refused by the scenario filter"] } });

  const atHelo = await converse(check().check, one(["bob@example.net"], { helo: "refuse.example" }));
  assert.deepEqual(atHelo.helo?.verdict, { action: "reject", reply: { code: 550, status: "5.7.1", lines: ["HELO refused by the scenario filter"] } });

  const atRcpt = await converse(check().check, one(["reject@example.net", "bob@example.net"]));
  const [refused, accepted] = atRcpt.transactions[0].rcpt;
  assert.deepEqual(refused?.verdict, { action: "reject", reply: { code: 550, status: "5.1.1", lines: ["<reject@example.net>: refused by the scenario filter"] } });
  assert.equal(accepted, undefined);
  assert.equal(atRcpt.transactions[0].endOfData?.verdict, undefined, "the message goes on for the other recipient");

  const atEnd = await converse(check().check, one(["multiline@example.net"]));
  assert.deepEqual(atEnd.transactions[0].endOfData?.verdict, {
    action: "reject", reply: { code: 550, status: "5.7.0", lines: ["first line of the refusal", "second line of the refusal"] },
  });
});

test("libmilter: a plain SMFIR_TEMPFAIL at MAIL answers 451 4.7.1; the next transaction on the connection is filtered again", async () => {
  const out = await converse(check().check, {
    transactions: [
      { from: "tempfail-mail@example.org", to: ["bob@example.net"], content: CONTENT },
      { from: "alice@example.org", to: ["bob@example.net"], content: CONTENT, queueId: "4QscenTest2" },
    ],
  });
  assert.deepEqual(out.transactions[0].mail?.verdict, { action: "tempfail", reply: { code: 451, status: "4.7.1", lines: ["Service unavailable - try again later"] } });
  const second = await storedMessage(CONTENT, out.transactions[1].endOfData);
  assert.equal(field(second, "X-Seen-Eom"), "i=4QscenTest2");
  assert.equal(field(second, "X-Seen-Mail"), "{mail_addr}=alice@example.org");
});

test("libmilter: RSET after the recipients sends SMFIC_ABORT; the filter starts the next message afresh", async () => {
  const out = await converse(check().check, {
    transactions: [
      { from: "alice@example.org", to: ["bob@example.net"] },
      { from: "alice@example.org", to: ["carol@example.net"], content: CONTENT },
    ],
  });
  const stored = await storedMessage(CONTENT, out.transactions[1].endOfData);
  assert.equal(field(stored, "X-Seen-Aborts"), "1");
  assert.equal(field(stored, "X-Seen-Rcpt"), "{rcpt_addr}=carol@example.net");
});

test("libmilter: discard at RCPT discards the message at end of data; accept at RCPT ends filtering of the message", async () => {
  const discarded = await converse(check().check, one(["discard@example.net", "bob@example.net"]));
  assert.equal(discarded.transactions[0].rcpt[0], undefined, "the RCPT itself is accepted");
  assert.equal(discarded.transactions[0].endOfData?.verdict?.action, "discard");

  const accepted = await converse(check().check, one(["accept@example.net", "bob@example.net"]));
  assert.equal(accepted.transactions[0].endOfData, undefined, "no more steps, so no X-Seen fields");
});

test("libmilter: quarantine at end of message holds the message, with the filter's other changes", async () => {
  const out = await converse(check().check, one(["quarantine@example.net"]));
  const result = out.transactions[0].endOfData;
  assert.deepEqual(result?.verdict, { action: "quarantine", reason: "milter scenario: held by the scenario filter" });
  assert.ok(result?.headerEdits?.some((e) => e.op === "insert" && e.field.name === "X-Seen-Eom"));
});

test("libmilter: SMFIR_PROGRESS keeps a slow end of message alive past the content timeout", async () => {
  // Three progress packets 0.6 s apart: 1.8 s in all, past the 1.2 s timeout, never 1.2 s of silence.
  const out = await converse(check({ endOfMessageTimeout: 1200 }).check, one(["progress@example.net"]));
  const result = out.transactions[0].endOfData;
  assert.equal(result?.verdict, undefined, JSON.stringify(result));
  assert.ok(result?.headerEdits?.length);
});

test("libmilter: SMFIR_SKIP after the first body chunk — no more chunks are sent, end of message still is", async () => {
  const big = CONTENT + "x".repeat(200_000) + "\r\n";
  const out = await converse(check().check, {
    transactions: [{ from: "alice@example.org", to: ["skip@example.net"], content: big, chunk: 16_384 }],
  });
  const stored = await storedMessage(big, out.transactions[0].endOfData);
  assert.equal(field(stored, "X-Seen-Body"), "1 chunks, 65535 octets");
});
