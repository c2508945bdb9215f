/**
 * The `petrel` command as a person runs it: configuration errors stop
 * start-up with exit code 78 and a message naming key, value and what is
 * allowed; the start-up summary; hash-password; a port already in use.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as net from "node:net";
import { join } from "node:path";
import { verifyPassword } from "../../src/accounts/password.ts";
import {
  SmtpClient, runPetrel, servePetrel, stopPetrel, tempDir, writeConfig, type PetrelProcess,
} from "./fixtures/robust-helpers.ts";

async function serveFails(config: string, name = "bad.yaml"): Promise<{ code: number | null; stderr: string; stdout: string; path: string }> {
  const { dir, cleanup } = await tempDir();
  try {
    const path = join(dir, name);
    const { writeFile } = await import("node:fs/promises");
    await writeFile(path, config);
    const p = runPetrel(["serve", "--config", path], { cwd: dir });
    const exit = await p.exited;
    return { code: exit.code, stderr: p.stderr(), stdout: p.stdout(), path };
  } finally {
    await cleanup();
  }
}

test("an unknown key: exit 78, the key is named and the right one suggested, nothing started", async () => {
  const r = await serveFails("hostname: mx.example.test\nlimts:\n  messageSize: 10MB\n");
  assert.equal(r.code, 78);
  assert.match(r.stderr, /nothing was started/);
  assert.match(r.stderr, /bad\.yaml:2:1: .*limts/);
  assert.match(r.stderr, /unknown key 'limts'/);
  assert.match(r.stderr, /did you mean 'limits'\?/);
  assert.doesNotMatch(r.stdout, /listening/);
});

test("a nested unknown key names its full path and suggests the sibling", async () => {
  const r = await serveFails("limits:\n  mesageSize: 10MB\n");
  assert.equal(r.code, 78);
  assert.match(r.stderr, /limits\.mesageSize/);
  assert.match(r.stderr, /did you mean 'messageSize'\?/);
});

test("bad values: exit 78, each line names key, value and what is allowed", async () => {
  const r = await serveFails([
    "limits:",
    "  messageSize: lots",
    "listeners:",
    "  - address: 127.0.0.1",
    "    port: 0",
    "    role: smtp",
    "tls:",
    "  minVersion: TLSv1.1",
    "",
  ].join("\n"));
  assert.equal(r.code, 78);
  const lines = r.stderr.split("\n");
  const size = lines.find((l) => l.includes("limits.messageSize"));
  assert.ok(size, r.stderr);
  assert.match(size, /bad\.yaml:2:\d+: limits\.messageSize: got "lots"; expected a size such as .*"25MiB"/);
  const role = lines.find((l) => l.includes("listeners[0].role"));
  assert.ok(role, r.stderr);
  assert.match(role, /got "smtp"; expected one of "mx", "submission", "submissions"/);
  const tls = lines.find((l) => l.includes("tls.minVersion"));
  assert.ok(tls, r.stderr);
  assert.match(tls, /got "TLSv1\.1"; expected "TLSv1\.2" or "TLSv1\.3"/);
});

test("a plaintext password in users: refused, and the password is not echoed", async () => {
  const r = await serveFails("users:\n  - address: bob@localhost\n    password: hunter2-plaintext\n");
  assert.equal(r.code, 78);
  assert.match(r.stderr, /users\[0\]\.password/);
  assert.match(r.stderr, /hash-password/);
  assert.doesNotMatch(r.stderr + r.stdout, /hunter2-plaintext/);
});

test("YAML syntax error and a missing file: exit 78 with the place named", async () => {
  const r = await serveFails("limits:\n  messageSize: [1, 2\n");
  assert.equal(r.code, 78);
  assert.match(r.stderr, /YAML syntax error/);
  const missing = runPetrel(["serve", "--config", "/nonexistent/petrel-robust.yaml"]);
  const exit = await missing.exited;
  assert.equal(exit.code, 78);
  assert.match(missing.stderr(), /\/nonexistent\/petrel-robust\.yaml.*no such file/);
});

test("the default configuration (with port-0 listeners): the summary lists every listener and a swaks line", { timeout: 20_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  let p: PetrelProcess | null = null;
  try {
    const config = await writeConfig(dir, {
      listeners: [
        { address: "127.0.0.1", port: 0, role: "mx" },
        { address: "127.0.0.1", port: 0, role: "submission" },
        { address: "127.0.0.1", port: 0, role: "submissions" },
      ],
    });
    p = await servePetrel(config, 3);
    const mx = p.port("mx");
    // The summary is written after the listeners are up; wait for its last line.
    for (let i = 0; i < 200 && !/Stop with/.test(p.stderr()); i++) await new Promise((r) => setTimeout(r, 10));
    const err = p.stderr();
    assert.match(err, /Petrel is running as localhost; data in .*data/);
    assert.match(err, new RegExp(`listening on 127\\.0\\.0\\.1:${mx} +incoming mail`));
    assert.match(err, new RegExp(`listening on 127\\.0\\.0\\.1:${p.port("submission")} +submission, STARTTLS`));
    assert.match(err, new RegExp(`listening on 127\\.0\\.0\\.1:${p.port("submissions")} +submission, implicit TLS`));
    assert.match(err, new RegExp(`swaks --server 127\\.0\\.0\\.1:${mx} --to postmaster@localhost`));
    // dataDir "./data" is relative to the config file, and it works: the greeting and a message.
    const c = await SmtpClient.connect(mx);
    assert.match(c.greeting!.text, /^220 localhost /);
    await c.ehlo();
    assert.match((await c.send("a@example.org", ["postmaster@localhost"], "Subject: hi\r\n\r\nhello\r\n")).text, /^250 .*queued as/);
    await c.quit();
    const exit = await stopPetrel(p);
    p = null;
    assert.equal(exit.code, 0);
  } finally {
    if (p) {
      p.kill("SIGKILL");
      await p.exited;
    }
    await cleanup();
  }
});

test("a listener port already in use: exit 71 naming the address and port", { timeout: 20_000 }, async () => {
  const blocker = net.createServer();
  await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
  const port = (blocker.address() as net.AddressInfo).port;
  const { dir, cleanup } = await tempDir();
  try {
    const config = await writeConfig(dir, { dataDir: join(dir, "data"), listeners: [{ address: "127.0.0.1", port, role: "mx" }] });
    const p = runPetrel(["serve", "--config", config]);
    const exit = await p.exited;
    assert.equal(exit.code, 71, p.stderr());
    assert.match(p.stderr(), new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}.*already in use`));
  } finally {
    await new Promise((r) => blocker.close(r));
    await cleanup();
  }
});

test("hash-password: a password on stdin gives a $scrypt$ hash and a SCRAM line; the password is not printed", async () => {
  const password = "Tr0ub4dor&3-robust";
  const p = runPetrel(["hash-password"], { stdin: `${password}\n` });
  const exit = await p.exited;
  assert.equal(exit.code, 0, p.stderr());
  const out = p.stdout();
  const hash = /password: "(\$scrypt\$[^"]+)"/.exec(out)?.[1];
  assert.ok(hash, out);
  assert.match(out, /scram: "SCRAM-SHA-256\$\d+:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+"/);
  assert.ok(!out.includes(password) && !p.stderr().includes(password), "the password never appears in the output");
  assert.equal(await verifyPassword(password, hash), true, "the hash verifies the password");
  assert.equal(await verifyPassword("something else", hash), false);
});

test("hash-password: an empty password is refused", async () => {
  const p = runPetrel(["hash-password"], { stdin: "\n" });
  const exit = await p.exited;
  assert.notEqual(exit.code, 0);
  assert.match(p.stderr(), /empty password/);
  assert.doesNotMatch(p.stdout(), /scrypt/);
});

test("hash-password applies the password policy: too short, the address given, a common password — exit 1 with the reason, no hash", async () => {
  const cases: Array<[string[], string, RegExp]> = [
    [["hash-password"], "x", /password refused: it has 1 character; at least 12 are required/],
    [["hash-password", "al.longername@example.org"], "AL.LONGERNAME", /password refused: it is the local part of the account's address/],
    [["hash-password"], "password1234", /password refused: it is one of the most common passwords/],
  ];
  for (const [args, password, why] of cases) {
    const p = runPetrel(args, { stdin: `${password}\n` });
    const exit = await p.exited;
    assert.equal(exit.code, 1, p.stderr());
    assert.match(p.stderr(), why);
    assert.doesNotMatch(p.stdout(), /scrypt/);
  }
  const { dir, cleanup } = await tempDir();
  try {
    const config = await writeConfig(dir, { passwords: { minLength: 24 } });
    const p = runPetrel(["hash-password", "--config", config], { stdin: "Tr0ub4dor&3-robust\n" });
    assert.equal((await p.exited).code, 1);
    assert.match(p.stderr(), /it has 18 characters; at least 24 are required \(passwords\.minLength\)/);
  } finally {
    await cleanup();
  }
});
