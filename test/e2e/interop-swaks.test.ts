/**
 * Interop with swaks (the Swiss Army Knife for SMTP, Perl + Net::SSLeay):
 * plain, PIPELINING, STARTTLS + AUTH PLAIN / LOGIN, implicit TLS.
 * This swaks (20201014) has no BDAT/CHUNKING support and no SCRAM; BDAT
 * is covered with a raw socket in interop-protocol.test.ts, SCRAM there too.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ALICE, startPetrel, type TestPetrel } from "./petrel.ts";
import { messageById, queuedId, run, spoolMessages, splitReceived } from "./interop-helpers.ts";
import { requirePeer, requirePerlModule } from "../support/peers.ts";

let p: TestPetrel;
let tmp: string;

before(async () => {
  requirePeer("swaks", "swaks");
  // swaks' --tls and --tlsc load Net::SSLeay, only a Recommends of swaks; its AUTH PLAIN and LOGIN need only Perl's own modules.
  requirePerlModule("Net::SSLeay", "libnet-ssleay-perl");
  p = await startPetrel({ limits: { shutdownGrace: 2 } });
  tmp = await mkdtemp(join(tmpdir(), "petrel-swaks-"));
});
after(async () => {
  await p?.stop();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

function swaks(port: number, ...args: string[]) {
  return run("swaks", ["--server", `127.0.0.1:${port}`, "--timeout", "10", ...args]);
}

const auth = (mech: string) => ["--auth", mech, "--auth-user", ALICE.address, "--auth-password", ALICE.password];

/** The message named in swaks' "250 2.0.0 Ok: queued as" line. */
async function queued(out: { code: number | null; stdout: string; stderr: string }) {
  assert.equal(out.code, 0, out.stdout + out.stderr);
  const line = out.stdout.split("\n").find((l) => /^<[-~] {2}250 2\.0\.0 Ok: queued as /.test(l));
  assert.ok(line, `no queued line in:\n${out.stdout}`);
  return messageById(p, queuedId(line));
}

describe("swaks", { timeout: 30_000 }, () => {
  test("plain send on mx: exit 0, 250 queued, swaks' message in the spool", async () => {
    const out = await swaks(p.mx, "--to", "bob@example.test", "--from", "x@y.test");
    assert.match(out.stdout, /^<- {2}250 2\.0\.0 Ok: queued as \S+$/m);
    const m = await queued(out);
    assert.equal(m.envelope.mailFrom, "x@y.test");
    assert.deepEqual(m.envelope.recipients, [{ address: "bob@example.test" }]);
    const { received, rest } = splitReceived(m.body);
    assert.match(received, new RegExp(String.raw`^Received: from \S+ \(\[127\.0\.0\.1\]\)\r\n\tby mx\.example\.test \(Petrel\) with ESMTP id ${m.id}\r\n\tfor <bob@example\.test>; `));
    const text = rest.toString("utf8");
    assert.match(text, /^Date: .+\r\nTo: bob@example\.test\r\nFrom: x@y\.test\r\nSubject: test .+\r\nMessage-Id: <.+>\r\nX-Mailer: swaks v\S+ jetmore\.org\/john\/code\/swaks\/\r\n\r\nThis is a test mailing\r\n/);
    assert.ok(text.endsWith("\r\n"));
  });

  test("--pipeline: MAIL, RCPT, DATA go out before their replies, all accepted", async () => {
    const out = await swaks(p.mx, "--to", "bob@example.test", "--from", "x@y.test", "--pipeline", "--helo", "pipe.test");
    const lines = out.stdout.split("\n");
    const idx = (re: RegExp) => lines.findIndex((l) => re.test(l));
    assert.ok(idx(/^ -> DATA$/) < idx(/^<- {2}250 2\.1\.0 Ok$/), out.stdout);
    assert.ok(idx(/^<- {2}250 2\.1\.5 Ok$/) < idx(/^<- {2}354 /));
    const m = await queued(out);
    assert.equal(m.envelope.client.helo, "pipe.test");
  });

  test("--data from a file: the stored body is exactly the data with CRLF line ends", async () => {
    // swaks sends the data, then "\r\n.\r\n" (so a final newline in the file would become an empty line).
    const data = "From: x@y.test\nTo: bob@example.test\nSubject: exact\n\nline one\n.dot line\n..two dots\n\ttab line";
    const file = join(tmp, "data.eml");
    await writeFile(file, data);
    const m = await queued(await swaks(p.mx, "--to", "bob@example.test", "--from", "x@y.test", "--data", file));
    assert.equal(splitReceived(m.body).rest.toString("utf8"), (data + "\n").replace(/\n/g, "\r\n"));
  });

  test("relay attempt on mx: 554 5.7.1, exit 24, nothing stored", async () => {
    const before = (await spoolMessages(p)).length;
    const out = await swaks(p.mx, "--to", "x@foreign.test", "--from", "x@y.test");
    assert.equal(out.code, 24, out.stdout);
    assert.match(out.stdout, /^<\*\* 554 5\.7\.1 <x@foreign\.test>: Relay access denied$/m);
    assert.equal((await spoolMessages(p)).length, before);
  });

  test("--tls --auth PLAIN on submission: 235, 250, ESMTPSA", async () => {
    const out = await swaks(p.submission, "--to", "friend@foreign.test", "--from", ALICE.address, "--tls", ...auth("PLAIN"), "--helo", "swaks.test");
    assert.match(out.stdout, /^<- {2}220 2\.0\.0 Ready to start TLS$/m);
    assert.match(out.stdout, /^<~ {2}235 2\.7\.0 Authentication successful$/m);
    const m = await queued(out);
    assert.equal(m.envelope.client.authUser, ALICE.address);
    assert.equal(m.envelope.client.protocol, "ESMTPSA");
    assert.deepEqual(m.envelope.recipients, [{ address: "friend@foreign.test" }]);
    assert.match(splitReceived(m.body).received, /^Received: from swaks\.test \(\[127\.0\.0\.1\]\)\r\n\t\(using TLSv1\.[23] with cipher \S+\)\r\n\tby mx\.example\.test \(Petrel\) with ESMTPSA id /);
  });

  test("--tls --auth LOGIN on submission: 334 prompts, then 235", async () => {
    const out = await swaks(p.submission, "--to", "bob@example.test", "--from", ALICE.address, "--tls", ...auth("LOGIN"));
    assert.match(out.stdout, /^<~ {2}334 VXNlcm5hbWU6$/m); // "Username:"
    assert.match(out.stdout, /^<~ {2}334 UGFzc3dvcmQ6$/m); // "Password:"
    assert.match(out.stdout, /^<~ {2}235 2\.7\.0 Authentication successful$/m);
    await queued(out);
  });

  test("--tlsc (implicit TLS) on submissions with AUTH PLAIN", async () => {
    const out = await swaks(p.submissions, "--to", "bob@example.test", "--from", ALICE.address, "--tlsc", ...auth("PLAIN"));
    assert.doesNotMatch(out.stdout, /STARTTLS/);
    const m = await queued(out);
    assert.equal(m.envelope.client.role, "submissions");
    assert.equal(m.envelope.client.protocol, "ESMTPSA");
  });

  test("wrong password: 535 5.7.8, exit 28", async () => {
    const out = await swaks(p.submission, "--to", "bob@example.test", "--from", ALICE.address, "--tls",
      "--auth", "PLAIN", "--auth-user", ALICE.address, "--auth-password", "not the password");
    assert.equal(out.code, 28, out.stdout);
    assert.match(out.stdout, /^<~\* 535 5\.7\.8 Authentication credentials invalid$/m);
  });

  test("submission without TLS: swaks cannot AUTH (not advertised before STARTTLS)", async () => {
    const out = await swaks(p.submission, "--to", "bob@example.test", "--from", ALICE.address, ...auth("PLAIN"));
    assert.equal(out.code, 28, out.stdout);
    assert.doesNotMatch(out.stdout, /250-AUTH/);
  });
});
