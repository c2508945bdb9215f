import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { DataDecoder, type BareNewlinePolicy } from "../../src/smtp/data-decoder.ts";

interface Decoded {
  content: Buffer;
  done: boolean;
  rest: Buffer;
  decoder: DataDecoder;
}

/** Feed chunks as the session does: stop at the end and keep what follows as the rest. */
function decode(chunks: Buffer[], policy: BareNewlinePolicy = "normalize"): Decoded {
  const decoder = new DataDecoder(policy);
  const content: Buffer[] = [];
  for (let i = 0; i < chunks.length; i++) {
    const r = decoder.feed(chunks[i]);
    for (const part of r.content) content.push(Buffer.from(part));
    if (r.done) {
      return { content: Buffer.concat(content), done: true, rest: Buffer.concat([r.rest, ...chunks.slice(i + 1)]), decoder };
    }
    assert.equal(r.rest.length, 0);
  }
  return { content: Buffer.concat(content), done: false, rest: Buffer.alloc(0), decoder };
}

const b = (s: string): Buffer => Buffer.from(s, "latin1");
const bytewise = (s: string): Buffer[] => [...b(s)].map((x) => Buffer.of(x));

/** Every way to cut the input in two, plus byte by byte: all must agree with one chunk. */
function allSplits(input: string, policy: BareNewlinePolicy = "normalize"): Decoded {
  const whole = decode([b(input)], policy);
  const bytes = b(input);
  const check = (d: Decoded, how: string): void => {
    assert.equal(d.content.toString("latin1"), whole.content.toString("latin1"), how);
    assert.equal(d.done, whole.done, how);
    assert.equal(d.rest.toString("latin1"), whole.rest.toString("latin1"), how);
    assert.equal(d.decoder.bareNewlineSeen, whole.decoder.bareNewlineSeen, how);
  };
  for (let cut = 0; cut <= bytes.length; cut++) check(decode([bytes.subarray(0, cut), bytes.subarray(cut)], policy), `cut ${cut}`);
  check(decode(bytewise(input), policy), "byte by byte");
  return whole;
}

describe("DataDecoder", () => {
  test("an empty message ends at once; the rest is returned", () => {
    const d = allSplits(".\r\nQUIT\r\n");
    assert.equal(d.done, true);
    assert.equal(d.content.length, 0);
    assert.equal(d.rest.toString(), "QUIT\r\n");
  });

  test("plain lines pass through as sub-arrays of the input", () => {
    const decoder = new DataDecoder("normalize");
    const input = b("Subject: x\r\n\r\nbody line\r\n");
    const r = decoder.feed(input);
    assert.equal(r.done, false);
    assert.equal(Buffer.concat(r.content).toString(), "Subject: x\r\n\r\nbody line\r\n");
    assert.ok(r.content.every((c) => c.buffer === input.buffer), "no copies");
  });

  test("dot-unstuffing: a leading dot is removed from every line", () => {
    const d = allSplits("..\r\n...\r\n.x\r\n..y.\r\nz.\r\n.\r\n");
    assert.equal(d.done, true);
    assert.equal(d.content.toString(), ".\r\n..\r\nx\r\n.y.\r\nz.\r\n");
  });

  test("the end must follow a real CRLF and be followed by one", () => {
    for (const input of ["a\n.\n", "a\n.\r\n", "a\r\n.\n", "a\r.\r", "a\r\n.\r", "a\r.\r\n", "a\r\n\x00.\r\n", ".\n", "a\r\n. \r\n", "a\r\n.\r\r\n"]) {
      const d = allSplits(input);
      assert.equal(d.done, false, JSON.stringify(input));
    }
  });

  test("bare LF is normalised to CRLF and recorded", () => {
    const d = allSplits("a\nb\r\n\nc\r\n.\r\n");
    assert.equal(d.done, true);
    assert.equal(d.content.toString(), "a\r\nb\r\n\r\nc\r\n");
    assert.equal(d.decoder.bareLfSeen, true);
    assert.equal(d.decoder.bareNewlineSeen, true);
  });

  test("a line after a bare LF can never end the data; the next one after a CRLF can", () => {
    const d = allSplits("a\n.\r\n.\r\nrest");
    assert.equal(d.done, true);
    assert.equal(d.content.toString(), "a\r\n.\r\n");
    assert.equal(d.rest.toString(), "rest");
  });

  test("bare CR: kept under normalize, recorded under reject", () => {
    const n = allSplits("a\rb\r\n.\r\n", "normalize");
    assert.equal(n.content.toString(), "a\rb\r\n");
    const r = allSplits("a\rb\r\n.\r\n", "reject");
    assert.equal(r.content.toString(), "a\rb\r\n");
    assert.equal(r.decoder.bareCrSeen, true);
    for (const input of ["a\r\r\n.\r\n", "\rx\r\n.\r\n", "..\rx\r\n.\r\n", "x\r\n.\rx\r\n.\r\n"]) {
      assert.equal(allSplits(input, "reject").decoder.bareNewlineSeen, true, JSON.stringify(input));
    }
    for (const input of ["a\r\nb\r\n.\r\n", "\r\n\r\n.\r\n", "..\r\n.\r\n"]) {
      assert.equal(allSplits(input, "reject").decoder.bareNewlineSeen, false, JSON.stringify(input));
    }
  });

  test("a CRLF split across chunks is a CRLF", () => {
    const d = decode([b("abc\r"), b("\n"), b("."), b("\r"), b("\n")], "reject");
    assert.equal(d.done, true);
    assert.equal(d.content.toString(), "abc\r\n");
    assert.equal(d.decoder.bareNewlineSeen, false);
  });

  test("a 1 MiB line costs no copies and the decoder carries at most two bytes", () => {
    const decoder = new DataDecoder("normalize");
    const big = Buffer.alloc(1024 * 1024, 0x61);
    const r = decoder.feed(big);
    assert.equal(r.content.length, 1);
    assert.equal(r.content[0].buffer, big.buffer);
    decoder.feed(b("\r\n."));
    const carry = (decoder as unknown as { carry: Buffer | null }).carry;
    assert.ok(carry !== null && carry.length <= 2);
  });
});

// ---------------------------------------------------------------- property test

/** mulberry32: a small seeded PRNG so failures reproduce. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Random content rich in CR, LF, "." and NUL; `bareLf` false makes every LF part of a CRLF. */
function randomMessage(rand: () => number, bareLf: boolean): Buffer {
  const n = Math.floor(rand() * 200);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const r = rand();
    if (r < 0.15) out.push(0x0d);
    else if (r < 0.3) {
      if (!bareLf && out[out.length - 1] !== 0x0d) out.push(0x0d);
      out.push(0x0a);
    } else if (r < 0.5) out.push(0x2e);
    else if (r < 0.55) out.push(0x00);
    else out.push(Math.floor(rand() * 256));
  }
  // Content ends with CRLF (what a client adds before the final dot).
  if (out.length > 0 && !(out[out.length - 2] === 0x0d && out[out.length - 1] === 0x0a)) out.push(0x0d, 0x0a);
  const m = Buffer.from(out);
  return bareLf ? m : normalizeLf(m);
}

/** RFC 5321 §4.5.2 transparency: a dot at the start of any line (after any LF) is doubled. */
function dotStuff(m: Buffer): Buffer {
  const out: number[] = [];
  let lineStart = true;
  for (const x of m) {
    if (lineStart && x === 0x2e) out.push(0x2e);
    out.push(x);
    lineStart = x === 0x0a;
  }
  return Buffer.from(out);
}

/** What "normalize" stores: every LF not preceded by CR becomes CRLF. */
function normalizeLf(m: Buffer): Buffer {
  const out: number[] = [];
  for (let i = 0; i < m.length; i++) {
    if (m[i] === 0x0a && (i === 0 || m[i - 1] !== 0x0d)) out.push(0x0d);
    out.push(m[i]);
  }
  return Buffer.from(out);
}

function hasBareLf(m: Buffer): boolean {
  for (let i = 0; i < m.length; i++) if (m[i] === 0x0a && (i === 0 || m[i - 1] !== 0x0d)) return true;
  return false;
}
function hasBareCr(m: Buffer): boolean {
  for (let i = 0; i < m.length; i++) if (m[i] === 0x0d && m[i + 1] !== 0x0a) return true;
  return false;
}

function randomChunks(rand: () => number, data: Buffer): Buffer[] {
  const chunks: Buffer[] = [];
  for (let i = 0; i < data.length;) {
    const r = rand();
    const size = r < 0.3 ? 1 : r < 0.6 ? 2 + Math.floor(rand() * 4) : 1 + Math.floor(rand() * 64);
    chunks.push(data.subarray(i, i + size));
    i += size;
  }
  return chunks;
}

describe("DataDecoder property: stuffed messages decode back and end exactly at the terminator", () => {
  test("2,000 random messages in random chunk sizes", () => {
    const rand = prng(0x5eed);
    const trailer = b("MAIL FROM:<x@y>\r\n.\r\n");
    for (let k = 0; k < 2000; k++) {
      const bareLf = k % 2 === 1;
      const original = randomMessage(rand, bareLf);
      const policy: BareNewlinePolicy = k % 4 < 2 ? "normalize" : "reject";
      const wire = Buffer.concat([dotStuff(original), b(".\r\n"), trailer]);
      const d = decode(randomChunks(rand, wire), policy);
      const label = `message ${k}: ${JSON.stringify(original.toString("latin1"))}`;
      assert.equal(d.done, true, label);
      const expected = bareLf ? normalizeLf(original) : original;
      assert.ok(d.content.equals(expected), `${label}\n got ${JSON.stringify(d.content.toString("latin1"))}`);
      assert.ok(d.rest.equals(trailer), `${label}: rest ${JSON.stringify(d.rest.toString("latin1"))}`);
      assert.equal(d.decoder.bareLfSeen, hasBareLf(original), label);
      if (policy === "reject") {
        assert.equal(d.decoder.bareNewlineSeen, hasBareLf(original) || hasBareCr(original), label);
      }
    }
  });
});
