import { test } from "node:test";
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { countTraceFields, isLoop, loopOutcome, HeaderScanner } from "../../src/delivery/loop-detection.ts";
import { chunked } from "./helpers.ts";

const msg = Buffer.from(
  "Received: from a\r\n\tby b; Mon, 1 Jan 2024 00:00:00 +0000\r\n" +
  "Delivered-To: <Alice@Example.COM>\r\n" +
  "received: from c by d\r\n" +
  "X-Received-Not: 1\r\n" +
  "Delivered-To:\r\n bob@example.com\r\n" +
  "Subject: x\r\n" +
  "\r\n" +
  "Received: in the body does not count\r\n" +
  "Delivered-To: carol@example.com\r\n",
);

test("counts Received and Delivered-To in the header section only, at any chunk size", async () => {
  for (const size of [1, 2, 3, 5, 17, 1000]) {
    const c = await countTraceFields(chunked(msg, size));
    assert.equal(c.received, 2, `chunk size ${size}`);
    assert.deepEqual(c.deliveredTo, ["alice@example.com", "bob@example.com"], `chunk size ${size}`);
  }
});

test("stops reading at the end of the header section and destroys the stream", async () => {
  let pulled = 0;
  const s = new Readable({
    read() {
      pulled++;
      this.push(pulled === 1 ? "Received: x\r\n\r\n" : "body line\r\n".repeat(1000));
    },
  });
  const c = await countTraceFields(s);
  assert.equal(c.received, 1);
  assert.ok(pulled < 5);
  assert.equal(s.destroyed, true);
});

test("a message with LF line ends and no body separator is all header", () => {
  const h = new HeaderScanner();
  assert.equal(h.push(Buffer.from("Received: a\nDelivered-To: x@y\nReceived: b")), false);
  assert.deepEqual(h.finish(), { received: 2, deliveredTo: ["x@y"], tlsRequiredNo: false });
});

test("a TLS-Required: No field (RFC 8689 §4.1), folded or not, in any case; other values do not count", () => {
  for (const [text, no] of [
    ["TLS-Required: No\r\n\r\nbody", true],
    ["Subject: x\r\ntls-required:\r\n  NO\r\n\r\n", true],
    ["TLS-Required: Yes\r\n\r\n", false],
    ["Subject: x\r\n\r\nTLS-Required: No\r\n", false],
  ] as const) {
    const h = new HeaderScanner();
    h.push(Buffer.from(text));
    assert.equal(h.finish().tlsRequiredNo, no, text);
  }
});

test("isLoop: Delivered-To for this recipient (case-insensitive) is a loop", () => {
  const counts = { received: 3, deliveredTo: ["alice@example.com"] };
  const r = isLoop(counts, { deliveredTo: "ALICE@example.com" });
  assert.equal(r.loop, true);
  assert.equal(isLoop(counts, { deliveredTo: "bob@example.com" }).loop, false);
});

test("isLoop: 50 Received fields (Postfix hopcount_limit) is a loop, 49 is not", () => {
  assert.equal(isLoop({ received: 49, deliveredTo: [] }, { deliveredTo: "a@b" }).loop, false);
  assert.equal(isLoop({ received: 50, deliveredTo: [] }, { deliveredTo: "a@b" }).loop, true);
  assert.equal(isLoop({ received: 10, deliveredTo: [] }, { deliveredTo: "a@b", maxReceived: 10 }).loop, true);
});

test("loopOutcome is a permanent 5.4.6 failure", () => {
  const o = loopOutcome("mail forwarding loop for a@b");
  assert.equal(o.status, "failed");
  assert.ok(o.status === "failed" && o.enhanced === "5.4.6" && /loop/.test(o.diagnostic));
});

test("a header section larger than the limit is cut off, not buffered", async () => {
  const big = Buffer.concat([Buffer.from("Received: a\r\n"), Buffer.from("X: " + "y".repeat(5000) + "\r\n"), Buffer.from("Received: b\r\n\r\n")]);
  const c = await countTraceFields(chunked(big, 100), { maxHeaderBytes: 1000 });
  assert.equal(c.received, 1);
});
