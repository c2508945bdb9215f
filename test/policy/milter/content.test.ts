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
import type { Modification } from "../../../src/policy/milter/answers.ts";
import { storedMessage } from "./drive.ts";

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

test("header changes: edits against the stored section, whatever their order; recipients parsed, non-addresses dropped", () => {
  const stored = ["Received", "From", "To", "Subject", "Received"];
  const mods: Modification[] = [
    { kind: "insertHeader", index: 0, name: "A", value: Buffer.from(" 1") },
    { kind: "insertHeader", index: 0, name: "B", value: Buffer.from(" 2") },
    { kind: "addHeader", name: "X-Spam", value: Buffer.from(" no") },
    { kind: "changeHeader", index: 2, name: "received", value: Buffer.from("") },
    { kind: "changeHeader", index: 0, name: "Subject", value: Buffer.from(" new") },
    { kind: "changeHeader", index: 3, name: "To", value: Buffer.from(" added") },
    { kind: "changeHeader", index: 1, name: "X-Missing", value: Buffer.from("") },
    { kind: "changeHeader", index: 1, name: "x-spam", value: Buffer.from(" yes") },
    { kind: "addRecipient", address: "<new@example.net>" },
    { kind: "addRecipient", address: "plain@example.net" },
    { kind: "deleteRecipient", address: "<old@example.net>" },
    { kind: "addRecipient", address: "not an address" },
  ];
  const c = applyModifications(stored, mods, true);
  assert.deepEqual(c.headerEdits, [
    { op: "delete", name: "Received", index: 2 },
    { op: "insert", position: 0, field: { name: "B", value: "2" } },
    { op: "insert", position: 0, field: { name: "A", value: "1" } },
    { op: "change", name: "Subject", index: 1, value: "new" },
    { op: "insert", position: 5, field: { name: "X-Spam", value: "yes" } },
    { op: "insert", position: 5, field: { name: "To", value: "added" } },
  ]);
  assert.deepEqual(c.add, ["new@example.net", "plain@example.net"]);
  assert.deepEqual(c.remove, ["old@example.net"]);
  assert.deepEqual(c.dropped, ['add recipient "not an address": not an address']);
});

/** Sendmail's semantics, one change after the other, on [name, value] pairs: the reference. */
function sequential(fields: [string, string][], mods: readonly Modification[]): [string, string][] {
  const out = fields.map((f) => [...f] as [string, string]);
  const find = (name: string, index: number) => {
    let seen = 0;
    return out.findIndex(([n]) => n.toLowerCase() === name.toLowerCase() && ++seen === index);
  };
  for (const m of mods) {
    if (m.kind === "addHeader") out.push([m.name, m.value.toString().trim()]);
    else if (m.kind === "insertHeader") out.splice(Math.min(m.index, out.length), 0, [m.name, m.value.toString().trim()]);
    else if (m.kind === "changeHeader") {
      const at = find(m.name, Math.max(m.index, 1));
      if (at === -1) {
        if (m.value.length > 0) out.push([m.name, m.value.toString().trim()]);
      } else if (m.value.length === 0) out.splice(at, 1);
      else out[at] = [out[at][0], m.value.toString().trim()];
    }
  }
  return out;
}

test("header changes played in order equal the edits applied in one pass by the spool's reader (any sequence)", async () => {
  const names = ["Received", "From", "To", "X-A"];
  const value = fc.string({ unit: fc.constantFrom("a", "b", "c"), minLength: 1, maxLength: 3 });
  const mod: fc.Arbitrary<Modification> = fc.oneof(
    fc.record({ kind: fc.constant("addHeader" as const), name: fc.constantFrom(...names), value: value.map((v) => Buffer.from(` ${v}`)) }),
    fc.record({ kind: fc.constant("insertHeader" as const), index: fc.nat(8), name: fc.constantFrom(...names), value: value.map((v) => Buffer.from(` ${v}`)) }),
    fc.record({
      kind: fc.constant("changeHeader" as const), index: fc.nat(4), name: fc.constantFrom(...names),
      value: fc.oneof(value.map((v) => Buffer.from(` ${v}`)), fc.constant(Buffer.alloc(0))),
    }),
  );
  const stored = fc.array(fc.tuple(fc.constantFrom(...names), value), { minLength: 1, maxLength: 6 });
  await fc.assert(
    fc.asyncProperty(stored, fc.array(mod, { maxLength: 8 }), async (fields, mods) => {
      const content = fields.map(([n, v]) => `${n}: ${v}\r\n`).join("") + "\r\nbody\r\n";
      const c = applyModifications(fields.map(([n]) => n), mods, true);
      const expected = sequential(fields, mods).map(([n, v]) => `${n}: ${v}\r\n`).join("") + "\r\nbody\r\n";
      assert.equal((await storedMessage(content, { headerEdits: c.headerEdits })).toString(), expected);
    }),
    { numRuns: 2000 },
  );
});

test("header values: one leading space dropped under SMFIP_HDR_LEADSPC only; stored with CRLF folds; no line can start a field or end the section", async () => {
  assert.equal(headerValue(Buffer.from(" v=1;\n\tb=y"), true), "v=1;\n\tb=y");
  assert.equal(headerValue(Buffer.from(" kept"), false), " kept");
  const c = applyModifications(["From"], [
    { kind: "insertHeader", index: 0, name: "DKIM-Signature", value: Buffer.from(" v=1; a=rsa-sha256;\n\tbh=x;\n\t b=y") },
    { kind: "addHeader", name: "X-Evil", value: Buffer.from("a\r\nX-Injected: 1\r\n\r\nbody\rmore") },
  ], true);
  assert.equal(
    (await storedMessage("From: a@example.org\r\n\r\nHello.\r\n", { headerEdits: c.headerEdits })).toString(),
    "DKIM-Signature: v=1; a=rsa-sha256;\r\n\tbh=x;\r\n\t b=y\r\nFrom: a@example.org\r\nX-Evil: a\r\n\tX-Injected: 1\r\n\tbody\r\n\tmore\r\n\r\nHello.\r\n",
  );
});
