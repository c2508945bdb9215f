import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { HeaderSection, type HeaderSectionOptions } from "../../src/smtp/header-section.ts";

const ADD = "Message-ID: <TESTID@mx.test>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n";

/** Adds Message-ID and Date when missing, as a submission server does. */
function submission(sizeLimit = 100_000): HeaderSectionOptions & { seen: Map<string, number>[] } {
  const seen: Map<string, number>[] = [];
  return {
    sizeLimit,
    seen,
    additions: (fields) => {
      seen.push(new Map(fields));
      let extra = "";
      if (!fields.has("message-id")) extra += "Message-ID: <TESTID@mx.test>\r\n";
      if (!fields.has("date")) extra += "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n";
      return extra;
    },
  };
}

function run(chunks: Buffer[], options: HeaderSectionOptions = submission()): { out: string; h: HeaderSection } {
  const h = new HeaderSection(options);
  const parts: Buffer[] = [];
  for (const c of chunks) for (const p of h.feed(c)) parts.push(Buffer.from(p));
  for (const p of h.finish()) parts.push(Buffer.from(p));
  return { out: Buffer.concat(parts).toString("latin1"), h };
}

const b = (s: string): Buffer => Buffer.from(s, "latin1");

/** One chunk, every cut in two, every cut in three (short inputs), byte by byte: all identical. */
function allSplits(input: string, options: () => HeaderSectionOptions = () => submission()): { out: string; h: HeaderSection } {
  const whole = run([b(input)], options());
  const bytes = b(input);
  const same = (r: { out: string; h: HeaderSection }, how: string): void => {
    assert.equal(r.out, whole.out, how);
    assert.deepEqual([...r.h.fields], [...whole.h.fields], how);
    assert.equal(r.h.size, whole.h.size, how);
    assert.equal(r.h.tooLarge, whole.h.tooLarge, how);
  };
  for (let cut = 0; cut <= bytes.length; cut++) same(run([bytes.subarray(0, cut), bytes.subarray(cut)], options()), `cut ${cut}`);
  if (bytes.length <= 80) {
    for (let x = 0; x <= bytes.length; x++) {
      for (let y = x; y <= bytes.length; y++) {
        same(run([bytes.subarray(0, x), bytes.subarray(x, y), bytes.subarray(y)], options()), `cuts ${x},${y}`);
      }
    }
  }
  same(run([...bytes].map((x) => Buffer.of(x)), options()), "byte by byte");
  return whole;
}

describe("HeaderSection", () => {
  test("adds missing Message-ID and Date at the end of the header section, before the blank line", () => {
    const { out, h } = allSplits("From: a@b.test\r\nSubject: hi\r\n\r\nbody\r\n");
    assert.equal(out, `From: a@b.test\r\nSubject: hi\r\n${ADD}\r\nbody\r\n`);
    assert.equal(h.ended, true);
    assert.deepEqual([...h.fields], [["from", 1], ["subject", 1]]);
  });

  test("adds nothing when both are present (names matched case-insensitively)", () => {
    const { out } = allSplits("MESSAGE-id: <x@y>\r\ndAtE: Tue, 2 Jan 2024 00:00:00 +0000\r\n\r\nbody\r\n");
    assert.equal(out, "MESSAGE-id: <x@y>\r\ndAtE: Tue, 2 Jan 2024 00:00:00 +0000\r\n\r\nbody\r\n");
  });

  test("counts fields case-insensitively, continuation lines are not fields", () => {
    const { h } = allSplits("Received: a\r\n\tb\r\nRECEIVED: c\r\n  d\r\nreceived:e\r\nTo: x\r\n\r\n");
    assert.deepEqual([...h.fields], [["received", 3], ["to", 1]]);
  });

  test("the body passes through untouched, including header-looking lines", () => {
    const { out } = allSplits("A: 1\r\n\r\nMessage-ID: not a header\r\n\r\n X\r\n");
    assert.equal(out, `A: 1\r\n${ADD}\r\nMessage-ID: not a header\r\n\r\n X\r\n`);
  });

  test("a message with no blank line (header section only) gets the additions at its end", () => {
    const { out, h } = allSplits("From: a@b.test\r\nSubject: x\r\n");
    assert.equal(out, `From: a@b.test\r\nSubject: x\r\n${ADD}`);
    assert.equal(h.ended, true);
  });

  test("an empty message gets only the additions", () => {
    assert.equal(run([]).out, ADD);
  });

  test("a first line that is not a header field: the blank line is inserted before it", () => {
    assert.equal(allSplits("hello world\r\nmore\r\n").out, `${ADD}\r\nhello world\r\nmore\r\n`);
    assert.equal(allSplits(":colon first\r\n").out, `${ADD}\r\n:colon first\r\n`);
    assert.equal(allSplits("From a@b Mon Jan 1\r\nX: y\r\n").out, `${ADD}\r\nFrom a@b Mon Jan 1\r\nX: y\r\n`);
  });

  test("a line without a colon after header fields ends the header section", () => {
    const { out, h } = allSplits("A: 1\r\nnot a header\r\nB: 2\r\n");
    assert.equal(out, `A: 1\r\n${ADD}\r\nnot a header\r\nB: 2\r\n`);
    assert.deepEqual([...h.fields], [["a", 1]]);
  });

  test("a blank line first: empty header section", () => {
    assert.equal(allSplits("\r\nbody\r\n").out, `${ADD}\r\nbody\r\n`);
  });

  test("obsolete whitespace before the colon (RFC 5322 §4.5) is still a header field", () => {
    const { out, h } = allSplits("From: a\r\nSubject : x\r\nTo\t: b\r\n\r\nbody\r\n");
    assert.equal(out, `From: a\r\nSubject : x\r\nTo\t: b\r\n${ADD}\r\nbody\r\n`);
    assert.deepEqual([...h.fields], [["from", 1], ["subject", 1], ["to", 1]]);
    // Whitespace inside a name is not.
    assert.equal(allSplits("A: 1\r\nSub ject: x\r\n").out, `A: 1\r\n${ADD}\r\nSub ject: x\r\n`);
  });

  test("a CR that is not part of a blank line does not start a field name", () => {
    const { out, h } = allSplits("A: 1\r\n\r:x\r\n");
    assert.equal(out, `A: 1\r\n${ADD}\r\n\r:x\r\n`);
    assert.deepEqual([...h.fields], [["a", 1]]);
  });

  test("a field name longer than 998 octets is not a field", () => {
    const name = "X".repeat(1000);
    const { out, h } = allSplits(`A: 1\r\n${name}: v\r\n`);
    assert.equal(out, `A: 1\r\n${ADD}\r\n${name}: v\r\n`);
    assert.deepEqual([...h.fields], [["a", 1]]);
  });

  test("tooLarge past sizeLimit; size counts header octets only", () => {
    const input = "Subject: 0123456789\r\n\r\nbody body body body\r\n";
    const { h } = allSplits(input, () => submission(21));
    assert.equal(h.size, 21);
    assert.equal(h.tooLarge, false);
    const big = allSplits(input, () => submission(20));
    assert.equal(big.h.tooLarge, true);
    const long = allSplits("A: " + "x".repeat(5000) + "\r\n\r\n", () => submission(1000));
    assert.equal(long.h.tooLarge, true);
  });

  test("an unterminated last header line gets a CRLF before the additions", () => {
    assert.equal(run([b("Subject: x")]).out, `Subject: x\r\n${ADD}`);
    assert.equal(run([b("Subj")]).out, `Subj\r\n${ADD}`);
  });

  test("without additions the content is unchanged", () => {
    for (const input of ["A: 1\r\n\r\nbody\r\n", "A: 1\r\n", "body only\r\n", "\r\n", ""]) {
      const { out } = allSplits(input, () => ({ sizeLimit: 1000 }));
      assert.equal(out, input.startsWith("body") ? `\r\n${input}` : input, JSON.stringify(input));
    }
  });

  test("additions are asked for once", () => {
    const options = submission();
    run([b("A: 1\r\n"), b("\r\n"), b("body\r\n")], options);
    assert.equal(options.seen.length, 1);
  });

  test("memory: only a field name is ever held", () => {
    const h = new HeaderSection(submission());
    h.feed(b("Subject: " + "x".repeat(100_000)));
    assert.equal((h as unknown as { head: Buffer | null }).head, null);
    h.feed(b("\r\nX-Long-Name-Without-Colon-Yet"));
    const head = (h as unknown as { head: Buffer | null }).head;
    assert.ok(head !== null && head.length < 100);
  });

  test("collect: every field with its name as written, its value and its exact octets, whatever the chunking; additions too", () => {
    const input = "Received: from a\r\n\tby b; Mon, 1 Jan 2024\r\nSubject : x\r\nTo:b@c\r\nX-Utf8: h\u00e9\r\n\r\nReceived: body\r\n";
    const collect = () => ({ ...submission(), collect: true });
    const bytes = Buffer.from(input, "utf8");
    const { h } = run([bytes], collect());
    for (let cut = 0; cut <= bytes.length; cut++) {
      const h2 = new HeaderSection(collect());
      h2.feed(bytes.subarray(0, cut));
      h2.feed(bytes.subarray(cut));
      h2.finish();
      assert.deepEqual(h2.collected, h.collected, `cut ${cut}`);
    }
    assert.deepEqual(h.collected.map((f) => [f.name, f.value, f.raw.toString("utf8")]), [
      ["Received", "from a\r\n\tby b; Mon, 1 Jan 2024", "Received: from a\r\n\tby b; Mon, 1 Jan 2024\r\n"],
      ["Subject", "x", "Subject : x\r\n"],
      ["To", "b@c", "To:b@c\r\n"],
      ["X-Utf8", "h\u00e9", "X-Utf8: h\u00e9\r\n"],
      ["Message-ID", "<TESTID@mx.test>", "Message-ID: <TESTID@mx.test>\r\n"],
      ["Date", "Mon, 1 Jan 2024 00:00:00 +0000", "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"],
    ]);
  });

  test("collect: the fields' octets are the header section exactly; an unterminated last line is ended", () => {
    const { h, out } = allSplits("A: 1\r\nB: 2\r\n continued\r\n\r\nbody\r\n", () => ({ sizeLimit: 1000, collect: true }));
    assert.equal(Buffer.concat(h.collected.map((f) => f.raw)).toString("latin1"), out.slice(0, out.indexOf("\r\n\r\n") + 2));
    const cut = run([b("Subject: x")], { sizeLimit: 1000, collect: true });
    assert.deepEqual(cut.h.collected.map((f) => f.raw.toString("latin1")), ["Subject: x\r\n"]);
  });

  test("collect: nothing is kept past the size limit; without collect nothing is kept at all", () => {
    const big = allSplits("A: 1\r\nB: " + "x".repeat(2000) + "\r\n\r\n", () => ({ sizeLimit: 1000, collect: true }));
    assert.equal(big.h.tooLarge, true);
    assert.ok(big.h.collected.reduce((n, f) => n + f.raw.length, 0) <= 1000);
    assert.deepEqual(allSplits("A: 1\r\n\r\n").h.collected, []);
  });
});
