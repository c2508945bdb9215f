/**
 * What the filter is sent of a message (header fields, end of header, body),
 * however the content is chunked; and how its changes become header edits
 * and recipient changes that cannot break the header section.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { ContentSplitter, type ContentPart } from "../../../src/policy/milter/content-splitter.ts";
import { applyModifications, headerValue } from "../../../src/policy/milter/modifications.ts";

function split(content: string, cuts: number[], limit = 1 << 20): { headers: [string, string][]; body: string; parts: string[] } {
  const s = new ContentSplitter(limit);
  const buf = Buffer.from(content, "latin1");
  const parts: ContentPart[] = [];
  let at = 0;
  for (const cut of [...cuts].sort((a, b) => a - b)) {
    parts.push(...s.feed(buf.subarray(at, cut)));
    at = cut;
  }
  parts.push(...s.feed(buf.subarray(at)), ...s.finish());
  return {
    headers: parts.flatMap((p) => (p.kind === "header" ? [[p.name, p.value.toString("latin1")] as [string, string]] : [])),
    body: parts.flatMap((p) => (p.kind === "body" ? [p.data.toString("latin1")] : [])).join(""),
    parts: parts.map((p) => p.kind),
  };
}

const MESSAGE = "From: a@example.org\r\nSubject: one\r\n two\r\n\tthree\r\nX-Tight:v\r\nX-Space : w\r\n\r\nbody line\r\n\r\nlast\r\n";

test("fields with their folds, the end of the header section, then the body — whatever the chunking", () => {
  const expected = {
    headers: [["From", " a@example.org"], ["Subject", " one\r\n two\r\n\tthree"], ["X-Tight", "v"], ["X-Space", " w"]],
    body: "body line\r\n\r\nlast\r\n",
  };
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: MESSAGE.length }), { maxLength: 6 }), (cuts) => {
      const got = split(MESSAGE, cuts);
      assert.deepEqual({ headers: got.headers, body: got.body }, expected);
      assert.equal(got.parts.filter((p) => p === "endOfHeaders").length, 1);
      assert.ok(got.parts.indexOf("endOfHeaders") > got.parts.lastIndexOf("header"));
    }),
    { numRuns: 300 },
  );
});

test("a line that is no field ends the header section and starts the body; so does the end of a header-only message", () => {
  assert.deepEqual(split("Subject: x\r\nnot a header line\r\nmore\r\n", []), {
    headers: [["Subject", " x"]], body: "not a header line\r\nmore\r\n", parts: ["header", "endOfHeaders", "body", "body"],
  });
  assert.deepEqual(split("Subject: x\r\n Folded", [5]), { headers: [["Subject", " x\r\n Folded"]], body: "", parts: ["header", "endOfHeaders"] });
  assert.deepEqual(split("body only, no header\r\n", []).headers, []);
  assert.deepEqual(split(" leading space line\r\n", []).body, " leading space line\r\n");
});

test("a header field past the header size limit stops the splitting (the intake refuses that message)", () => {
  const s = new ContentSplitter(100);
  const parts = s.feed(Buffer.from(`Subject: ${"x".repeat(200)}\r\n\r\nbody`));
  assert.equal(s.tooLarge, true);
  assert.deepEqual(parts, []);
  assert.deepEqual(s.feed(Buffer.from("more")), []);
  assert.deepEqual(s.finish(), []);
});

test("header changes: positions against the section as the filter saw it, edits in order", () => {
  const received = ["From", "To", "Subject", "Received", "Received"];
  const mods = [
    { kind: "insertHeader" as const, index: 0, name: "DKIM-Signature", value: Buffer.from(" v=1;\n\tb=abc") },
    { kind: "addHeader" as const, name: "X-Spam", value: Buffer.from(" no") },
    { kind: "insertHeader" as const, index: 99, name: "X-Late", value: Buffer.from(" end") },
    { kind: "changeHeader" as const, index: 2, name: "received", value: Buffer.from("") },
    { kind: "changeHeader" as const, index: 0, name: "Subject", value: Buffer.from(" new") },
    { kind: "changeHeader" as const, index: 3, name: "To", value: Buffer.from(" added") },
    { kind: "changeHeader" as const, index: 1, name: "X-Missing", value: Buffer.from("") },
    { kind: "addRecipient" as const, address: "<new@example.net>" },
    { kind: "addRecipient" as const, address: "plain@example.net" },
    { kind: "deleteRecipient" as const, address: "<old@example.net>" },
    { kind: "addRecipient" as const, address: "not an address" },
  ];
  const c = applyModifications(received, mods, true);
  assert.deepEqual(c.headerEdits, [
    { op: "insert", position: 0, field: { name: "DKIM-Signature", value: "v=1;\r\n\tb=abc" } },
    { op: "insert", position: 6, field: { name: "X-Spam", value: "no" } },
    { op: "insert", position: 7, field: { name: "X-Late", value: "end" } },
    { op: "delete", name: "received", index: 2 },
    { op: "change", name: "Subject", index: 1, value: "new" },
    { op: "insert", position: 7, field: { name: "To", value: "added" } },
  ]);
  assert.deepEqual(c.add, ["new@example.net", "plain@example.net"]);
  assert.deepEqual(c.remove, ["old@example.net"]);
  assert.deepEqual(c.dropped, ['add recipient "not an address": not an address']);
});

test("header values: one leading space dropped under SMFIP_HDR_LEADSPC only; folds as CRLF; no line can start a field or end the section", () => {
  assert.equal(headerValue(Buffer.from(" v=1; a=rsa-sha256;\n\tbh=x;\n\t b=y"), true), "v=1; a=rsa-sha256;\r\n\tbh=x;\r\n\t b=y");
  assert.equal(headerValue(Buffer.from(" kept"), false), " kept");
  assert.equal(headerValue(Buffer.from("a\r\nX-Injected: 1\r\n\r\nbody"), false), "a\r\n\tX-Injected: 1\r\n\tbody");
  assert.equal(headerValue(Buffer.from("a\rb"), false), "a\r\n\tb");
});
