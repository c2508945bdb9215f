import { test } from "node:test";
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { DotStuffer, dotStuff, dotStuffingStream } from "../../src/smtp/dot-stuffing.ts";
import { DataDecoder } from "../../src/smtp/data-decoder.ts";

const cases: [string, string, string][] = [
  ["empty", "", ".\r\n"],
  ["one line", "a\r\n", "a\r\n.\r\n"],
  ["no final line end", "a\r\nb", "a\r\nb\r\n.\r\n"],
  ["dot at start", ".a\r\n", "..a\r\n.\r\n"],
  ["lone dot line", "a\r\n.\r\nb\r\n", "a\r\n..\r\nb\r\n.\r\n"],
  ["dots everywhere", "..\r\n.\r\n.", "...\r\n..\r\n..\r\n.\r\n"],
  ["dot not at line start", "a.b\r\n a.\r\n", "a.b\r\n a.\r\n.\r\n"],
  ["bare LF becomes CRLF and the next line is stuffed", "a\n.b\n", "a\r\n..b\r\n.\r\n"],
  ["bare CR is content, not a line start", "a\r.b\r\n", "a\r.b\r\n.\r\n"],
  ["final bare CR", "a\r", "a\r\r\n.\r\n"],
  ["smuggling attempt <LF>.<CRLF>", "x\n.\r\nMAIL FROM:<a@b>\r\n", "x\r\n..\r\nMAIL FROM:<a@b>\r\n.\r\n"],
];

for (const [name, input, expected] of cases) {
  test(`dot-stuffing: ${name}`, () => {
    assert.equal(dotStuff(Buffer.from(input, "latin1")).toString("latin1"), expected);
  });

  test(`dot-stuffing: ${name}, split at every position (and into single bytes)`, () => {
    const buf = Buffer.from(input, "latin1");
    for (let cut = 0; cut <= buf.length; cut++) {
      for (let cut2 = cut; cut2 <= buf.length; cut2++) {
        const s = new DotStuffer();
        const out = [
          ...s.encode(buf.subarray(0, cut)),
          ...s.encode(buf.subarray(cut, cut2)),
          ...s.encode(buf.subarray(cut2)),
          s.end(),
        ];
        assert.equal(Buffer.concat(out).toString("latin1"), expected, `cuts at ${cut}, ${cut2}`);
      }
    }
    const s = new DotStuffer();
    const bytes: Buffer[] = [];
    for (let i = 0; i < buf.length; i++) bytes.push(...s.encode(buf.subarray(i, i + 1)));
    bytes.push(s.end());
    assert.equal(Buffer.concat(bytes).toString("latin1"), expected);
  });
}

test("dot-stuffing round-trips through the server's strict DATA decoder, whatever the split", () => {
  const content = Buffer.from("Subject: x\r\n\r\n.\r\n..\r\n.x\r\nUTF-8: ünïcødé\r\n" + "y".repeat(1500) + "\r\n.", "utf8");
  const expectedContent = Buffer.concat([content, Buffer.from("\r\n")]);
  const wire = dotStuff(content);
  for (let cut = 0; cut <= wire.length; cut += 7) {
    const d = new DataDecoder("reject");
    const a = d.feed(wire.subarray(0, cut));
    const b = a.done ? a : d.feed(wire.subarray(cut));
    assert.equal(b.done, true);
    assert.equal(b.rest.length, 0);
    assert.deepEqual(Buffer.concat([...a.content, ...(a.done ? [] : b.content)]), expectedContent);
  }
});

test("dot-stuffing does not copy lines: output buffers are views of the input", () => {
  const input = Buffer.from("a".repeat(100000) + "\r\n.b\r\n");
  const out = new DotStuffer().encode(input);
  assert.equal(out[0].buffer, input.buffer);
  assert.equal(out.reduce((n, b) => n + b.length, 0), input.length + 1);
});

test("dotStuffingStream transforms a stream and appends the terminator", async () => {
  const chunks: Buffer[] = [];
  for await (const c of Readable.from([Buffer.from("a\r\n."), Buffer.from("b\r"), Buffer.from("\n")]).pipe(dotStuffingStream())) chunks.push(c);
  assert.equal(Buffer.concat(chunks).toString(), "a\r\n..b\r\n.\r\n");
});

test("encode after end throws", () => {
  const s = new DotStuffer();
  s.end();
  assert.throws(() => s.encode(Buffer.from("x")));
});
