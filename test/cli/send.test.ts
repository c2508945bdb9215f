import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { ALICE, startPetrel, type TestPetrel } from "../e2e/petrel.ts";
import { messageById, queuedId, splitReceived } from "../e2e/interop-helpers.ts";
import { sendCommand } from "../../src/cli/send.ts";
import { closedPort } from "../client/fake-smtp.ts";

let p: TestPetrel;
let dir: string;
let passwordFile: string;
let wrongFile: string;
let caFile: string;

before(async () => {
  p = await startPetrel();
  dir = await mkdtemp(join(tmpdir(), "petrel-send-cli-"));
  passwordFile = join(dir, "pw");
  wrongFile = join(dir, "wrong");
  await writeFile(passwordFile, ALICE.password + "\n");
  await writeFile(wrongFile, "not the password\n");
  caFile = join(p.dataDir, "tls", "self-signed.crt");
});
after(async () => {
  await p?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const stdin = Object.assign(Readable.from([]), { isTTY: false });
  const code = await sendCommand(args, { stdin, stdout: { write: (s: string) => (out += s) }, stderr: { write: (s: string) => (err += s) }, env });
  return { code, out, err };
}

const MSG = ["--from", ALICE.address, "--to", "bob@example.test", "--subject", "Grüße"];

describe("petrel send", { timeout: 20_000 }, () => {
  test("submits over STARTTLS with AUTH (password file), verified with --ca; prints the queue id; Bcc hidden", async () => {
    const textFile = join(dir, "body.txt");
    await writeFile(textFile, "Hallo\n.dot line\n");
    const attach = join(dir, "notes.txt");
    await writeFile(attach, "attached bytes");
    const r = await run(["--server", `127.0.0.1:${p.submission}`, "--ca", caFile, "--user", ALICE.address, "--password-file", passwordFile,
      ...MSG, "--bcc", "hidden@example.test", "--text-file", textFile, "--attach", attach, "--helo", "cli.test"]);
    assert.equal(r.err, "");
    assert.equal(r.code, 0);
    assert.match(r.out, /^Sent: 250 2\.0\.0 Ok: queued as \S+\n$/);
    const m = await messageById(p, queuedId(r.out));
    assert.deepEqual(m.envelope.recipients.map((x) => x.address), ["bob@example.test", "hidden@example.test"]);
    assert.equal(m.envelope.client.helo, "cli.test");
    assert.equal(m.envelope.client.authUser, ALICE.address);
    const body = splitReceived(m.body).rest.toString();
    assert.ok(!body.includes("hidden@example.test"));
    assert.match(body, /^Subject: =\?UTF-8\?/m);
    assert.match(body, /filename=notes\.txt/);
    assert.ok(body.includes(".dot line"));
  });

  test("implicit TLS on the submissions port with --insecure and the password from PETREL_PASSWORD", async () => {
    const r = await run(["--server", `127.0.0.1:${p.submissions}`, "--tls", "implicit", "--insecure", "--user", ALICE.address, ...MSG, "--text", "hi"], { PETREL_PASSWORD: ALICE.password });
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^Sent: 250 /);
  });

  test("some recipients refused: still sent to the others, each refusal printed, exit 1", async () => {
    const r = await run(["--server", `127.0.0.1:${p.mx}`, "--tls", "none", "--from", "x@remote.test", "--to", "bob@example.test", "--to", "y@other.org", "--text", "hi"]);
    assert.equal(r.code, 1);
    assert.match(r.out, /^Sent: 250 /);
    assert.match(r.err, /^Not sent to y@other\.org: 554 5\.7\.1 .*Relay access denied/m);
  });

  test("wrong password: explained, with the server's reply", async () => {
    const r = await run(["--server", `127.0.0.1:${p.submission}`, "--insecure", "--user", ALICE.address, "--password-file", wrongFile, ...MSG]);
    assert.equal(r.code, 1);
    assert.match(r.err, /The server refused the user name or password \(535 5\.7\.8 [^)]*\): check them; some providers need an app password\./);
  });

  test("connection refused on a closed port", async () => {
    const port = await closedPort();
    const r = await run(["--server", `127.0.0.1:${port}`, ...MSG]);
    assert.equal(r.code, 1);
    assert.equal(r.err, `petrel send: Nothing is listening on 127.0.0.1 port ${port}: the host or port is wrong, or the server is down.\n`);
  });

  test("relay denied on the mx port without authentication", async () => {
    const r = await run(["--server", `127.0.0.1:${p.mx}`, "--tls", "none", "--from", "x@remote.test", "--to", "y@other.org", "--text", "hi"]);
    assert.equal(r.code, 1);
    assert.match(r.err, /will not relay to that domain without authentication.*The server said: "554 5\.7\.1 .*Relay access denied"/);
  });

  test("unknown (self-signed) certificate without --insecure: says so and mentions --insecure for testing", async () => {
    const r = await run(["--server", `127.0.0.1:${p.submission}`, "--user", ALICE.address, "--password-file", passwordFile, ...MSG]);
    assert.equal(r.code, 1);
    assert.match(r.err, /certificate is self-signed .*not trusted\. \(--insecure skips this check: use it only for testing/);
  });

  test("AUTH on a plain connection (--tls none): the server offers none; advice to use TLS", async () => {
    const r = await run(["--server", `127.0.0.1:${p.submission}`, "--tls", "none", "--user", ALICE.address, "--password-file", passwordFile, ...MSG]);
    assert.equal(r.code, 1);
    assert.equal(r.err, "petrel send: The server does not offer authentication on this connection; use --tls starttls or port 587/465.\n");
  });

  test("without login on submission: 530 authentication required", async () => {
    const r = await run(["--server", `127.0.0.1:${p.submission}`, "--insecure", ...MSG, "--to", "x@other.org"]);
    assert.equal(r.code, 1);
    assert.match(r.err, /requires authentication.*"530 5\.7\.0/);
  });

  test("usage errors exit 2; no password source without a terminal is a usage error; --help", async () => {
    assert.equal((await run(["--from", "a@b.test", "--to", "c@d.test"])).code, 2);
    assert.equal((await run(["--server", "x", "--to", "c@d.test"])).code, 2);
    assert.equal((await run(["--server", "x", "--from", "a@b.test"])).code, 2);
    assert.equal((await run(["--server", "x", ...MSG, "--tls", "maybe"])).code, 2);
    assert.equal((await run(["--server", "x", ...MSG, "--password", "secret"])).code, 2, "no --password option");
    const noPw = await run(["--server", `127.0.0.1:${p.submission}`, "--user", ALICE.address, ...MSG]);
    assert.equal(noPw.code, 2);
    assert.match(noPw.err, /--password-file FILE or set PETREL_PASSWORD/);
    const help = await run(["--help"]);
    assert.equal(help.code, 0);
    assert.match(help.out, /^Usage: petrel send/);
  });

  test("a missing file is named", async () => {
    const r = await run(["--server", `127.0.0.1:${p.mx}`, ...MSG, "--attach", join(dir, "nope.pdf")]);
    assert.equal(r.code, 1);
    assert.equal(r.err, `petrel send: The file ${join(dir, "nope.pdf")} does not exist.\n`);
  });
});
