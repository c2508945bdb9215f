/**
 * RFC 4954 §4 on a real server with limits.commandLine at its minimum (512):
 * AUTH command lines with initial responses longer than that are read (up to
 * 12288 octets) from real clients — Python's smtplib, and a raw socket doing
 * PLAIN and SCRAM-SHA-256 with a long client nonce.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { hashPassword, scramVerifier } from "../../src/accounts/password.ts";
import { ScramSha256Client } from "../../src/client/scram-client.ts";
import { aliceUser, startPetrel, type TestPetrel } from "./petrel.ts";
import { LineClient, runPy, type PyStep } from "./interop-helpers.ts";

const USER = "longpass@example.test";
/** Long enough that "AUTH PLAIN <base64>" is well over 512 octets, within PLAIN's 1024-octet password limit. */
const PASSWORD = "tE7#".repeat(150);

let p: TestPetrel;

before(async () => {
  p = await startPetrel({
    limits: { commandLine: 512, shutdownGrace: 2 },
    users: [await aliceUser(), { address: USER, password: await hashPassword(PASSWORD), scram: scramVerifier(PASSWORD, 4096) }],
  });
});
after(async () => {
  await p?.stop();
});

const plainResponse = Buffer.from(`\0${USER}\0${PASSWORD}`).toString("base64");

describe("AUTH initial responses longer than limits.commandLine", { timeout: 30_000 }, () => {
  test("smtplib's login (AUTH PLAIN with its initial response on the command line) → 235", async () => {
    assert.ok(`AUTH PLAIN ${plainResponse}\r\n`.length > 512);
    const steps: PyStep[] = [
      { op: "connect", port: p.submissions, ssl: true, helo_name: "client.test" },
      { op: "ehlo", name: "client.test" },
      { op: "login", user: USER, password: PASSWORD, mechanism: "PLAIN" },
      { op: "quit" },
    ];
    const r = await runPy(steps);
    assert.deepEqual(r[2], { ok: true, value: [235, "2.7.0 Authentication successful"] }, JSON.stringify(r));
  });

  test("raw socket: AUTH PLAIN with an 800-octet initial response → 235; a 600-octet NOOP → 500 5.5.6", async () => {
    const c = await LineClient.connect(p.submissions, { tls: true });
    try {
      assert.equal((await c.read()).code, 220);
      assert.equal((await c.cmd("EHLO raw.test")).code, 250);
      assert.equal((await c.cmd(`NOOP ${"x".repeat(600)}`)).lines[0], "500 5.5.6 Error: command line too long");
      const r = await c.cmd(`AUTH PLAIN ${plainResponse}`);
      assert.equal(r.lines[0], "235 2.7.0 Authentication successful");
      assert.equal((await c.cmd("QUIT")).code, 221);
    } finally {
      c.destroy();
    }
  });

  test("raw socket: AUTH SCRAM-SHA-256 with a 700-character client nonce in the initial response → 334 v=…, 235", async () => {
    const scram = new ScramSha256Client(USER, PASSWORD, "n".repeat(700));
    const first = scram.clientFirst().toString("base64");
    assert.ok(first.length > 512);
    const c = await LineClient.connect(p.submissions, { tls: true });
    try {
      await c.read();
      await c.cmd("EHLO raw.test");
      const serverFirst = await c.cmd(`AUTH SCRAM-SHA-256 ${first}`);
      assert.equal(serverFirst.code, 334, serverFirst.lines.join("|"));
      const final = scram.clientFinal(Buffer.from(serverFirst.lines[0].slice(4), "base64"));
      const serverFinal = await c.cmd(final.toString("base64"));
      assert.equal(serverFinal.code, 334);
      assert.equal(scram.verifyServerFinal(Buffer.from(serverFinal.lines[0].slice(4), "base64")), true);
      assert.equal((await c.cmd("")).lines[0], "235 2.7.0 Authentication successful");
    } finally {
      c.destroy();
    }
  });

  test("raw socket: an AUTH line over 12288 octets → 500 5.5.6, and the session goes on", async () => {
    const c = await LineClient.connect(p.submissions, { tls: true });
    try {
      await c.read();
      await c.cmd("EHLO raw.test");
      assert.equal((await c.cmd(`AUTH PLAIN ${"A".repeat(12288)}`)).lines[0], "500 5.5.6 Error: command line too long");
      assert.equal((await c.cmd(`AUTH PLAIN ${plainResponse}`)).code, 235);
    } finally {
      c.destroy();
    }
  });
});
