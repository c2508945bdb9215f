import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { LineEndNormalizer } from "../../src/smtp/line-end-normalizer.ts";
import type { BareNewlinePolicy } from "../../src/smtp/data-decoder.ts";

function run(chunks: Buffer[], policy: BareNewlinePolicy = "normalize"): { out: string; n: LineEndNormalizer } {
  const n = new LineEndNormalizer(policy);
  const parts: Buffer[] = [];
  for (const c of chunks) for (const p of n.feed(c)) parts.push(Buffer.from(p));
  for (const p of n.finish()) parts.push(Buffer.from(p));
  return { out: Buffer.concat(parts).toString("latin1"), n };
}

const b = (s: string): Buffer => Buffer.from(s, "latin1");

function allSplits(input: string, policy: BareNewlinePolicy = "normalize"): { out: string; n: LineEndNormalizer } {
  const whole = run([b(input)], policy);
  const bytes = b(input);
  for (let cut = 0; cut <= bytes.length; cut++) {
    const r = run([bytes.subarray(0, cut), bytes.subarray(cut)], policy);
    assert.equal(r.out, whole.out, `cut ${cut}`);
    assert.equal(r.n.bareNewlineSeen, whole.n.bareNewlineSeen, `cut ${cut}`);
  }
  const r = run([...bytes].map((x) => Buffer.of(x)), policy);
  assert.equal(r.out, whole.out, "byte by byte");
  assert.equal(r.n.bareNewlineSeen, whole.n.bareNewlineSeen, "byte by byte");
  return whole;
}

describe("LineEndNormalizer", () => {
  test("CRLF content passes unchanged, dots are not touched (BDAT has no stuffing)", () => {
    const { out, n } = allSplits("a\r\n.\r\n..\r\n\r\n", "reject");
    assert.equal(out, "a\r\n.\r\n..\r\n\r\n");
    assert.equal(n.bareNewlineSeen, false);
  });

  test("bare LF becomes CRLF and is recorded", () => {
    const { out, n } = allSplits("a\nb\r\n\n\nc\r\n");
    assert.equal(out, "a\r\nb\r\n\r\n\r\nc\r\n");
    assert.equal(n.bareLfSeen, true);
  });

  test("bare CR is kept and recorded under reject", () => {
    const { out, n } = allSplits("a\rb\r\n", "reject");
    assert.equal(out, "a\rb\r\n");
    assert.equal(n.bareCrSeen, true);
    assert.equal(allSplits("a\r\r\n", "reject").n.bareNewlineSeen, true);
    assert.equal(allSplits("\ra\r\n", "reject").n.bareNewlineSeen, true);
  });

  test("finish() ends the content with CRLF", () => {
    assert.equal(allSplits("abc").out, "abc\r\n");
    assert.equal(allSplits("abc\r").out, "abc\r\n");
    assert.equal(allSplits("abc\n").out, "abc\r\n");
    assert.equal(allSplits("abc\r\n").out, "abc\r\n");
    assert.equal(allSplits("").out, "");
  });

  test("random content: split anywhere gives the same output, and only CRLF line ends", () => {
    let seed = 7;
    const rand = (): number => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000);
    for (let k = 0; k < 300; k++) {
      const len = Math.floor(rand() * 40);
      let s = "";
      for (let i = 0; i < len; i++) {
        const r = rand();
        s += r < 0.25 ? "\r" : r < 0.5 ? "\n" : r < 0.6 ? "." : String.fromCharCode(97 + Math.floor(rand() * 26));
      }
      const { out } = allSplits(s, k % 2 ? "reject" : "normalize");
      for (let i = 0; i < out.length; i++) if (out[i] === "\n") assert.equal(out[i - 1], "\r", JSON.stringify(s));
    }
  });
});
