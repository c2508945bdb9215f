/**
 * The milter check against a real OpenDKIM in signing mode: what it signs,
 * stored as the intake stores it (header edits applied, CRLF folds), must
 * verify with an independent verifier (Python's dkimpy) — byte for byte,
 * since the canonicalization is simple/simple.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { milterCheck, type MilterSettings } from "../../../src/policy/milter/milter-check.ts";
import { parseServiceAddress } from "../../../src/mail/service-address.ts";
import { startOpenDkim, type DkimKey, type RunningMilter } from "../../support/milter-peers.ts";
import { dkimpyVerify } from "../../mailauth/helpers.ts";
import { capturingLogger, converse, field, storedMessage } from "./drive.ts";

let opendkim: RunningMilter & { key: DkimKey };

before(async () => {
  opendkim = await startOpenDkim();
}, { timeout: 60_000 });

after(async () => {
  await opendkim?.stop();
});

/** dkimpy (Debian python3-dkim), a receiving MTA's view: does every signature of `message` verify? */
async function verifies(message: Buffer): Promise<boolean> {
  const verdicts = await dkimpyVerify(message, [opendkim.key]);
  return verdicts.length > 0 && verdicts.every((v) => v.pass);
}

function check(extra: Partial<MilterSettings> = {}) {
  const { log } = capturingLogger();
  return milterCheck(
    {
      name: "opendkim", address: parseServiceAddress(opendkim.address)!, connectTimeout: 10_000, commandTimeout: 30_000,
      endOfMessageTimeout: 60_000, defaultAction: "tempfail", ...extra,
    },
    { hostname: "mail.example.org", headerSizeLimit: 1024 * 1024, log },
  );
}

const CONTENT = [
  "From: Alice <alice@example.org>",
  "To: Bob <bob@example.net>",
  "Subject: A subject long enough to be folded by its writer, as mail clients do",
  "\twith a tab on the continuation line,",
  "  and spaces on the next",
  "Date: Thu, 03 Dec 2026 10:00:00 +0000",
  "Message-ID: <signed-1@example.org>",
  "X-Mailer:no space after the colon",
  "",
  "Hello Bob,",
  "",
  "  indented line, trailing spaces kept   ",
  ".a line that was dot-stuffed on the wire",
  "",
  "",
].join("\r\n");

const SUBMISSION = { role: "submission" as const, localPort: 587 };

test("OpenDKIM: a submitted message comes out with a DKIM-Signature that dkimpy verifies on the stored bytes", async () => {
  const out = await converse(check(), {
    client: SUBMISSION,
    auth: { user: "alice@example.org", mechanism: "PLAIN" },
    transactions: [{ from: "alice@example.org", to: ["bob@example.net"], content: CONTENT }],
  });
  const result = out.transactions[0].endOfData;
  assert.ok(result?.headerEdits?.length, "OpenDKIM asked for a header");
  assert.equal(result.verdict, undefined);
  const stored = await storedMessage(CONTENT, result);
  const text = stored.toString("latin1");
  assert.ok(text.startsWith("DKIM-Signature: v=1; a=rsa-sha256; c=simple/simple; d=example.org; s=sel;\r\n\t"), text.slice(0, 120));
  assert.doesNotMatch(text.replace(/\r\n/g, ""), /[\r\n]/, "OpenDKIM's bare-LF folds are written as CRLF");
  assert.match(field(stored, "DKIM-Signature") ?? "", /h=From:To:Subject:Date:Message-ID:X-Mailer/);
  assert.ok(await verifies(stored), "dkimpy verifies the stored message");
});

test("OpenDKIM: a signature made on the stored bytes fails once one signed byte changes (the verifier is not lenient)", async () => {
  const out = await converse(check(), {
    client: SUBMISSION,
    transactions: [{ from: "alice@example.org", to: ["bob@example.net"], content: CONTENT }],
  });
  const stored = (await storedMessage(CONTENT, out.transactions[0].endOfData)).toString("latin1");
  assert.ok(await verifies(Buffer.from(stored, "latin1")));
  const tampered = Buffer.from(stored.replace("X-Mailer:no space", "X-Mailer: no space"), "latin1");
  assert.equal(await verifies(tampered), false);
});

test("OpenDKIM: signs only for InternalHosts, as told by the connect step (an outside client gets no signature)", async () => {
  const out = await converse(check(), {
    client: { address: "192.0.2.10" },
    transactions: [{ from: "alice@example.org", to: ["bob@example.net"], content: CONTENT }],
  });
  assert.equal(out.transactions[0].endOfData, undefined);
});

test("OpenDKIM: `listeners: [submission]` leaves mail received on an mx listener alone", async () => {
  const c = check({ listeners: ["submission", "submissions"] });
  const mx = await converse(c, { transactions: [{ from: "alice@example.org", to: ["bob@example.net"], content: CONTENT }] });
  assert.equal(mx.transactions[0].endOfData, undefined);
  const sub = await converse(c, { client: SUBMISSION, transactions: [{ from: "alice@example.org", to: ["bob@example.net"], content: CONTENT }] });
  assert.ok(await verifies(await storedMessage(CONTENT, sub.transactions[0].endOfData)));
});

test("OpenDKIM: a large message streams in 64 KiB milter chunks and still verifies", async () => {
  const line = "All work and no play makes Jack a dull boy, all work and no play makes Jack a dull boy.\r\n";
  const big = CONTENT + line.repeat(Math.ceil((300 * 1024) / line.length));
  const out = await converse(check(), {
    client: SUBMISSION,
    transactions: [{ from: "alice@example.org", to: ["bob@example.net"], content: big, chunk: 10_000 }],
  });
  assert.ok(await verifies(await storedMessage(big, out.transactions[0].endOfData)));
});
