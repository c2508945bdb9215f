/**
 * Bugs the fuzzer found in src/smtp/, each pinned by its shrunk counterexample.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { formatMailbox, parsePath } from "../../src/smtp/address.ts";
import { decodeUtf8AddrXtext, decodeXtext, encodeXtext } from "../../src/smtp/xtext.ts";
import { parseRcptParameters } from "../../src/smtp/mail-parameters.ts";
import { drive } from "./engine-driver.ts";
import type { EngineConfig } from "./arbitraries.ts";

const cfg: EngineConfig = {
  bareNewline: "normalize", tls: "implicit", requireAuth: false, authMechanisms: ["PLAIN"],
  limits: { messageSize: 10_000, recipients: 3, messagesPerConnection: 10, commandLine: 600, softErrors: 10, hardErrors: 20 },
  errorDelay: false,
  handler: { async: false, refuseMail: false, refuseSomeRcpt: false, openFails: false, end: "ok", authSuccessData: false, disconnectOnAuthFailure: false },
};
const one = { mode: "one", sizes: [1], yields: 0 } as const;

test("session.ts canProgress: a partial AUTH response longer than limits.commandLine does not spin the pump", async () => {
  // canProgress() compared with limits.commandLine while takeLine() waits for
  // up to 12288 octets in AUTH: the pump restarted itself on microtasks for
  // ever and the whole process stopped (one client, no credentials needed).
  const out = await drive(cfg, [Buffer.from("EHLO c.test\r\n"), Buffer.from("AUTH PLAIN\r\n"), Buffer.alloc(605, "x")], one);
  assert.equal(out.problem, null);
  assert.match(out.s.transport.written, /^334 $/m);
  assert.equal(out.s.transport.closed, false);
  // The line completes later and is answered.
  const later = await drive(cfg, [Buffer.from("EHLO c.test\r\n"), Buffer.from("AUTH PLAIN\r\n"), Buffer.alloc(605, "x"), Buffer.from("\r\n")], one);
  assert.equal(later.problem, null);
  assert.match(later.s.transport.written, /^501 5\.5\.2 Cannot decode/m);
});

test("address.ts parsePath: a domain that lower-casing lengthens past 63 octets per label is refused", () => {
  // "İ" (2 octets) lower-cases to "i̇" (3 octets): the label was checked as
  // written, then kept lower-cased at 66 octets, which nothing accepts again.
  const text = `<a@${"İ".repeat(22)}.example>`;
  const r = parsePath(text, { allowUtf8: true, allowNull: false });
  assert.equal(r.ok, false);
  // Within the limits after lower-casing it is accepted and round-trips.
  const ok = parsePath(`<a@${"İ".repeat(20)}.example>`, { allowUtf8: true, allowNull: false });
  assert.ok(ok.ok && ok.mailbox);
  const again = parsePath(`<${formatMailbox(ok.mailbox)}>`, { allowUtf8: true, allowNull: false });
  assert.ok(again.ok && again.mailbox);
  assert.equal(again.mailbox.domain, ok.mailbox.domain);
});

test("address.ts parsePath: a path that lower-casing lengthens past 256 octets is refused", () => {
  const local = "l".repeat(64);
  const label = "İ".repeat(20); // 40 octets as written, 60 lower-cased
  const domain = [label, label, label, label].join(".") + ".ab"; // 163 octets as written
  const text = `<${local}@${domain}>`;
  assert.ok(Buffer.byteLength(text) <= 256);
  const r = parsePath(text, { allowUtf8: true, allowNull: true });
  assert.equal(r.ok, false);
  assert.match(r.ok ? "" : r.reason, /path too long/);
});

test("xtext.ts: a leading U+FEFF survives decoding (TextDecoder stripped it as a byte-order mark)", () => {
  // Shrunk counterexample: encodeXtext("\uFEFF") = "+EF+BB+BF" decoded to "".
  assert.equal(decodeXtext(encodeXtext("\uFEFF")), "\uFEFF");
  assert.equal(decodeXtext("+EF+BB+BFalice"), "\uFEFFalice");
  assert.equal(decodeUtf8AddrXtext("+EF+BB+BFa@b"), "\uFEFFa@b");
  // So ORCPT keeps the address as sent rather than silently dropping octets.
  const r = parseRcptParameters("ORCPT=rfc822;+EF+BB+BFa@b.test", { dsn: true });
  assert.ok(r.ok);
  assert.equal(r.params.orcpt, "rfc822;\uFEFFa@b.test");
});
