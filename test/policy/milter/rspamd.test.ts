/**
 * The milter check against a real rspamd (Debian's rspamd 3.x, its proxy
 * worker in milter mode), started once for this file with its own config.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { milterCheck } from "../../../src/policy/milter/milter-check.ts";
import { parseServiceAddress } from "../../../src/mail/service-address.ts";
import { GTUBE, rspamdForThisFile } from "../../support/milter-peers.ts";
import { capturingLogger, converse, field, storedMessage } from "./drive.ts";

const rspamd = rspamdForThisFile();

function check() {
  const { log, lines } = capturingLogger();
  const c = milterCheck(
    {
      name: "rspamd", address: parseServiceAddress(rspamd().address)!, connectTimeout: 10_000, commandTimeout: 30_000,
      endOfMessageTimeout: 60_000, defaultAction: "tempfail",
    },
    { hostname: "mx.example.net", headerSizeLimit: 1024 * 1024, log },
  );
  return { check: c, lines };
}

function message(body: string, subject = "Quarterly report"): string {
  return [
    "From: Alice <alice@example.org>",
    "To: Bob <bob@example.net>",
    `Subject: ${subject}`,
    "Date: Thu, 03 Dec 2026 10:00:00 +0000",
    "Message-ID: <report-1@example.org>",
    "MIME-Version: 1.0",
    "Content-Type: text/plain; charset=us-ascii",
    "",
    body,
    "",
  ].join("\r\n");
}

test("rspamd: the GTUBE string is refused at end of data with rspamd's own reply", async () => {
  const { check: c } = check();
  const out = await converse(c, {
    transactions: [{ from: "alice@example.org", to: ["bob@example.net"], content: message(`Buy now.\r\n${GTUBE}`) }],
  });
  assert.equal(out.connect, undefined);
  assert.deepEqual(out.transactions[0].rcpt, [undefined]);
  const verdict = out.transactions[0].endOfData?.verdict;
  assert.deepEqual(verdict, { action: "reject", reply: { code: 554, status: "5.7.1", lines: ["Gtube pattern"] } });
});

test("rspamd: a normal message is accepted with rspamd's headers, its queue id from the `i` macro, folds as CRLF", async () => {
  const { check: c } = check();
  const content = message("Dear Bob,\r\n\r\nthe figures are attached.\r\n\r\nAlice");
  const out = await converse(c, {
    transactions: [{ from: "alice@example.org", to: ["bob@example.net"], content, queueId: "4QspamTest1" }],
  });
  const result = out.transactions[0].endOfData;
  assert.ok(result, "rspamd's headers come back as a result");
  assert.equal(result.verdict, undefined, "no refusal");
  const stored = await storedMessage(content, result);
  assert.match(field(stored, "X-Spamd-Result") ?? "", /^default: False \[[-0-9.]+ \/ 15\.00\];/);
  assert.match(field(stored, "X-Spam-Status") ?? "", /^No, score=/);
  assert.equal(field(stored, "X-Rspamd-Queue-Id"), "4QspamTest1");
  const text = stored.toString("latin1");
  assert.doesNotMatch(text.replace(/\r\n/g, ""), /[\r\n]/, "every line of the stored message ends in CRLF");
  assert.ok(text.endsWith(content.slice(content.indexOf("\r\n\r\n"))), "the body is untouched");
});

test("rspamd: on one connection a refused message does not stop the next one", async () => {
  const { check: c } = check();
  const out = await converse(c, {
    transactions: [
      { from: "alice@example.org", to: ["bob@example.net"], content: message(GTUBE) },
      { from: "alice@example.org", to: ["carol@example.net"], content: message("Hello Carol."), queueId: "4QspamTest2" },
    ],
  });
  assert.equal(out.transactions[0].endOfData?.verdict?.action, "reject");
  const second = out.transactions[1].endOfData;
  assert.equal(second?.verdict, undefined);
  assert.equal(field(await storedMessage(message("Hello Carol."), second), "X-Rspamd-Queue-Id"), "4QspamTest2");
});
