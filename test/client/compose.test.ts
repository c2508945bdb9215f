import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { composeMessage } from "../../src/client/compose.ts";

function headerSection(raw: Buffer): string {
  const s = raw.toString("latin1");
  return s.slice(0, s.indexOf("\r\n\r\n") + 2);
}

test("UTF-8 subject and names are RFC 2047 encoded; headers are ASCII; line ends are CRLF", async () => {
  const m = await composeMessage({
    from: "Jörg Müller <joerg@example.test>", to: "Zoë <zoe@example.test>", subject: "Grüße aus Köln ✓", text: "line 1\nline 2 ü\n",
    date: new Date("2024-01-02T03:04:05Z"), messageId: "<x1@example.test>",
  });
  const h = headerSection(m.raw);
  assert.ok(/^[\x00-\x7f]*$/.test(h), "non-ASCII in the header section");
  assert.match(h, /^Subject: =\?UTF-8\?[BQ]\?/m);
  assert.match(h, /^From: =\?UTF-8\?[BQ]\?.+\?= <joerg@example\.test>\r$/m);
  assert.match(h, /^Date: Tue, 02 Jan 2024 03:04:05 \+0000\r$/m);
  assert.match(h, /^Message-ID: <x1@example\.test>\r$/m);
  assert.ok(!/(^|[^\r])\n/.test(m.raw.toString("latin1")), "bare LF in the message");
  assert.deepEqual(m.envelope, { from: "joerg@example.test", to: ["zoe@example.test"] });
});

test("Bcc goes to the envelope only; envelope order is to, cc, bcc", async () => {
  const m = await composeMessage({ from: "a@example.test", to: ["b@example.test"], cc: "c@example.test", bcc: ["secret@example.test"], subject: "s", text: "t" });
  assert.deepEqual(m.envelope.to, ["b@example.test", "c@example.test", "secret@example.test"]);
  assert.ok(!m.raw.toString().includes("secret@example.test"));
  assert.match(headerSection(m.raw), /^Cc: c@example\.test\r$/m);
});

test("text + html → multipart/alternative; attachments (file and content) → multipart/mixed", async () => {
  const dir = await mkdtemp(join(tmpdir(), "petrel-compose-"));
  try {
    const file = join(dir, "report.csv");
    await writeFile(file, "a,b\n1,2\n");
    const bin = Buffer.from([0, 1, 2, 255]);
    const m = await composeMessage({
      from: "a@example.test", to: "b@example.test", subject: "s", text: "plain", html: "<p>rich</p>",
      attachments: [{ path: file }, { content: bin, filename: "blob.bin", contentType: "application/octet-stream" }],
    });
    const s = m.raw.toString("latin1");
    assert.match(s, /^Content-Type: multipart\/mixed;/m);
    assert.match(s, /^Content-Type: multipart\/alternative;/m);
    assert.match(s, /^Content-Type: text\/plain; charset=utf-8\r$/m);
    assert.match(s, /^Content-Type: text\/html; charset=utf-8\r$/m);
    assert.match(s, /filename=report\.csv/);
    assert.match(s, /^Content-Type: application\/octet-stream; name=blob\.bin\r$/m);
    assert.ok(s.includes(bin.toString("base64")));
    assert.ok(s.includes(Buffer.from("a,b\n1,2\n").toString("base64")));
    assert.ok(s.indexOf("plain") < s.indexOf("<p>rich</p>"), "text before html (least preferred first)");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("text only is a single text/plain part; missing sender or recipients are errors", async () => {
  const m = await composeMessage({ from: "a@example.test", to: "b@example.test", subject: "s", text: "hello" });
  assert.match(headerSection(m.raw), /^Content-Type: text\/plain; charset=utf-8\r$/m);
  await assert.rejects(composeMessage({ from: "a@example.test", subject: "s" }), /at least one recipient/);
  await assert.rejects(composeMessage({ from: "", to: "b@example.test" }), /From/);
});
