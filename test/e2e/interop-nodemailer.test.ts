/**
 * Interop with nodemailer (STARTTLS, implicit TLS, AUTH PLAIN, PIPELINING):
 * the spool holds exactly the bytes nodemailer generated.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import nodemailer from "nodemailer";
import MailComposer from "nodemailer/lib/mail-composer";
import type Mail from "nodemailer/lib/mailer";
import { ALICE, startPetrel, type TestPetrel } from "./petrel.ts";
import { headerValue, messageById, queuedId, sha256, splitReceived } from "./interop-helpers.ts";

let p: TestPetrel;

before(async () => {
  p = await startPetrel({ limits: { shutdownGrace: 2 } });
});
after(async () => {
  await p?.stop();
});

function transport(kind: "submission" | "submissions" | "mx") {
  const common = { host: "127.0.0.1", name: "nodemailer.test", tls: { rejectUnauthorized: false }, connectionTimeout: 10_000 };
  if (kind === "mx") return nodemailer.createTransport({ ...common, port: p.mx, secure: false, ignoreTLS: true });
  return nodemailer.createTransport({
    ...common,
    port: kind === "submission" ? p.submission : p.submissions,
    secure: kind === "submissions",
    requireTLS: kind === "submission",
    auth: { user: ALICE.address, pass: ALICE.password },
    authMethod: "PLAIN",
  });
}

function compose(mail: Mail.Options): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    new MailComposer(mail).compile().build((err, buf) => {
      if (err) return reject(err);
      // The comparison below is byte for byte, so the test message must be what goes on the wire.
      if (/(^|[^\r])\n/.test(buf.toString("latin1"))) return reject(new Error("composed message has a bare LF"));
      resolve(buf);
    });
  });
}

const attachmentBytes = randomBytes(4096);

async function richMessage(tag: string): Promise<Buffer> {
  return compose({
    from: `Alice Ünïcødé <${ALICE.address}>`,
    to: "Bob <bob@example.test>",
    subject: `Grüße aus Köln — ✓ ${tag}`,
    // CRLF everywhere: nodemailer's SMTP layer turns a bare LF into CRLF on the wire.
    text: "Hallo Bob,\r\n.this line starts with a dot\r\n..and this with two\r\nÜmlaut body.\r\n",
    attachments: [
      { filename: "data.bin", content: attachmentBytes },
      { filename: "notes-ü.txt", content: "Zeile 1\r\nZeile 2\r\n", contentType: "text/plain; charset=utf-8" },
    ],
    messageId: `<${tag}@nodemailer.test>`,
    date: new Date("2024-01-02T03:04:05Z"),
  });
}

describe("nodemailer", { timeout: 30_000 }, () => {
  test("STARTTLS + AUTH PLAIN on submission: raw message with attachment stored byte-identical", async () => {
    const raw = await richMessage("starttls");
    const t = transport("submission");
    try {
      const info = await t.sendMail({ envelope: { from: ALICE.address, to: ["bob@example.test"] }, raw });
      assert.match(info.response, /^250 2\.0\.0 Ok: queued as \S+$/);
      assert.deepEqual(info.accepted, ["bob@example.test"]);
      assert.deepEqual(info.rejected, []);
      const m = await messageById(p, queuedId(info.response));
      const { received, rest } = splitReceived(m.body);
      assert.ok(rest.equals(raw), "body after Received differs from what nodemailer generated");
      assert.match(received, /^Received: from nodemailer\.test \(\[127\.0\.0\.1\]\)\r\n\t\(using TLSv1\.[23] with cipher \S+\)\r\n\tby mx\.example\.test \(Petrel\) with ESMTPSA id /);
      assert.equal(m.envelope.client.authUser, ALICE.address);
      assert.equal(m.envelope.client.role, "submission");
      assert.equal(headerValue(rest, "Message-ID"), "<starttls@nodemailer.test>");
      assert.match(headerValue(rest, "Subject") ?? "", /=\?UTF-8\?/);
    } finally {
      t.close();
    }
  });

  test("implicit TLS on submissions: raw message stored byte-identical", async () => {
    const raw = await richMessage("implicit");
    const t = transport("submissions");
    try {
      const info = await t.sendMail({ envelope: { from: ALICE.address, to: ["friend@foreign.test", "bob@example.test"] }, raw });
      assert.match(info.response, /^250 2\.0\.0 Ok: queued as \S+$/);
      assert.deepEqual(info.accepted, ["friend@foreign.test", "bob@example.test"]);
      const m = await messageById(p, queuedId(info.response));
      assert.ok(splitReceived(m.body).rest.equals(raw));
      assert.equal(m.envelope.client.role, "submissions");
      assert.deepEqual(m.envelope.recipients.map((r) => r.address), ["friend@foreign.test", "bob@example.test"]);
    } finally {
      t.close();
    }
  });

  test("nodemailer-composed message (not raw) on submission: its Message-ID is kept, none added", async () => {
    const t = transport("submission");
    try {
      const info = await t.sendMail({
        from: ALICE.address, to: "bob@example.test", subject: "Ünïcødé ✓", text: "plain text\n", html: "<p>html ✓</p>",
      });
      const m = await messageById(p, queuedId(info.response));
      const rest = splitReceived(m.body).rest;
      assert.equal(headerValue(rest, "Message-ID"), info.messageId);
      assert.equal(rest.toString("latin1").split(/\r\nMessage-ID:/i).length, 2);
    } finally {
      t.close();
    }
  });

  test("pipelined envelope on mx: one recipient refused (554 relay), the other accepted", async () => {
    const raw = await compose({ from: "carol@sender.test", to: "bob@example.test", subject: "pipelined", text: "x\r\n" });
    const t = transport("mx");
    try {
      const info = await t.sendMail({ envelope: { from: "carol@sender.test", to: ["bob@example.test", "x@foreign.test"] }, raw });
      assert.deepEqual(info.accepted, ["bob@example.test"]);
      assert.deepEqual(info.rejected, ["x@foreign.test"]);
      const errs = (info as unknown as { rejectedErrors?: { response: string }[] }).rejectedErrors ?? [];
      assert.equal(errs[0]?.response, "554 5.7.1 <x@foreign.test>: Relay access denied");
      const m = await messageById(p, queuedId(info.response));
      assert.deepEqual(m.envelope.recipients, [{ address: "bob@example.test" }]);
      assert.ok(splitReceived(m.body).rest.equals(raw));
    } finally {
      t.close();
    }
  });

  test("a 5 MiB message arrives intact (sha256 after the Received field)", async () => {
    const head = `From: ${ALICE.address}\r\nTo: bob@example.test\r\nSubject: five MiB\r\nMessage-ID: <big@nodemailer.test>\r\nDate: Tue, 2 Jan 2024 03:04:05 +0000\r\n\r\n`;
    const lines: string[] = [];
    let size = head.length;
    const noise = randomBytes(4 * 1024 * 1024).toString("base64");
    for (let i = 0; size < 5 * 1024 * 1024; i++) {
      // Some lines start with a dot, so dot-stuffing is exercised on the way.
      const line = (i % 97 === 0 ? "." : "") + noise.slice((i * 76) % (noise.length - 76), ((i * 76) % (noise.length - 76)) + 76);
      lines.push(line);
      size += line.length + 2;
    }
    const raw = Buffer.from(head + lines.join("\r\n") + "\r\n", "latin1");
    assert.ok(raw.length >= 5 * 1024 * 1024);
    const t = transport("submission");
    try {
      const info = await t.sendMail({ envelope: { from: ALICE.address, to: ["bob@example.test"] }, raw });
      const m = await messageById(p, queuedId(info.response));
      const rest = splitReceived(m.body).rest;
      assert.equal(rest.length, raw.length);
      assert.equal(sha256(rest), sha256(raw));
    } finally {
      t.close();
    }
  });
});
