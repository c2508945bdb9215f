import { test } from "node:test";
import assert from "node:assert/strict";
import { startExchange } from "../../src/sasl/mechanisms.ts";
import { parsePlainMessage } from "../../src/sasl/plain.ts";
import { testCredentials } from "./fixtures.ts";

const creds = () => testCredentials([{ name: "alice", password: "s3cret ünïcode" }]);
const msg = (s: string) => Buffer.from(s, "utf8");

test("PLAIN with initial response succeeds", async () => {
  const ex = startExchange("PLAIN", creds());
  assert.deepEqual(await ex.step(msg("\0alice\0s3cret ünïcode")), { kind: "success", user: "alice" });
});

test("PLAIN without initial response sends an empty challenge first", async () => {
  const ex = startExchange("PLAIN", creds());
  const first = await ex.step(null);
  assert.equal(first.kind, "challenge");
  assert.equal(first.kind === "challenge" && first.data.length, 0);
  assert.deepEqual(await ex.step(msg("\0alice\0s3cret ünïcode")), { kind: "success", user: "alice" });
});

test("PLAIN with an empty initial response (AUTH PLAIN =) also challenges", async () => {
  const ex = startExchange("PLAIN", creds());
  const first = await ex.step(Buffer.alloc(0));
  assert.equal(first.kind, "challenge");
  assert.deepEqual(await ex.step(msg("alice\0alice\0s3cret ünïcode")), { kind: "success", user: "alice" });
});

test("PLAIN: an empty answer to the challenge is malformed", async () => {
  const ex = startExchange("PLAIN", creds());
  await ex.step(null);
  assert.deepEqual(await ex.step(Buffer.alloc(0)), { kind: "failure", reason: "malformed" });
});

test("PLAIN wrong password and unknown user fail with credentials", async () => {
  assert.deepEqual(await startExchange("PLAIN", creds()).step(msg("\0alice\0wrong")), { kind: "failure", reason: "credentials" });
  assert.deepEqual(await startExchange("PLAIN", creds()).step(msg("\0bob\0s3cret ünïcode")), { kind: "failure", reason: "credentials" });
});

test("PLAIN authzid equal to authcid (or the canonical user) is accepted", async () => {
  assert.deepEqual(await startExchange("PLAIN", creds()).step(msg("alice\0alice\0s3cret ünïcode")), { kind: "success", user: "alice" });
  assert.deepEqual(await startExchange("PLAIN", creds()).step(msg("alice\0ALICE\0s3cret ünïcode")), { kind: "success", user: "alice" });
});

test("PLAIN authzid naming another user fails with authzid", async () => {
  assert.deepEqual(await startExchange("PLAIN", creds()).step(msg("bob\0alice\0s3cret ünïcode")), { kind: "failure", reason: "authzid" });
});

test("PLAIN malformed messages", async () => {
  for (const bad of [
    Buffer.from("alice"),
    Buffer.from("\0alice"),
    Buffer.from("\0\0pw"),
    Buffer.from("\0alice\0"),
    Buffer.from("\0alice\0pw\0extra"),
    Buffer.from([0, 0x61, 0, 0xff, 0xfe]), // invalid UTF-8 password
    Buffer.from(`\0${"a".repeat(256)}\0pw`),
  ]) {
    assert.deepEqual(await startExchange("PLAIN", creds()).step(bad), { kind: "failure", reason: "malformed" }, JSON.stringify(bad.toString()));
  }
});

test("PLAIN exchange is over after one answer", async () => {
  const ex = startExchange("PLAIN", creds());
  await ex.step(msg("\0alice\0s3cret ünïcode"));
  assert.deepEqual(await ex.step(msg("\0alice\0s3cret ünïcode")), { kind: "failure", reason: "malformed" });
});

test("parsePlainMessage splits the three fields", () => {
  assert.deepEqual(parsePlainMessage(msg("z\0c\0p")), { authzid: "z", authcid: "c", password: "p" });
  assert.equal(parsePlainMessage(msg("z\0c")), null);
});
