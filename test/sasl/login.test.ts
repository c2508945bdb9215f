import { test } from "node:test";
import assert from "node:assert/strict";
import { startExchange } from "../../src/sasl/mechanisms.ts";
import { testCredentials } from "./fixtures.ts";

const creds = () => testCredentials([{ name: "alice", password: "pw" }]);

test("LOGIN full flow: Username:, Password:, success", async () => {
  const ex = startExchange("LOGIN", creds());
  assert.deepEqual(await ex.step(null), { kind: "challenge", data: Buffer.from("Username:") });
  assert.deepEqual(await ex.step(Buffer.from("alice")), { kind: "challenge", data: Buffer.from("Password:") });
  assert.deepEqual(await ex.step(Buffer.from("pw")), { kind: "success", user: "alice" });
  assert.deepEqual(await ex.step(Buffer.from("pw")), { kind: "failure", reason: "malformed" });
});

test("LOGIN with the user name as initial response skips the first prompt", async () => {
  const ex = startExchange("LOGIN", creds());
  assert.deepEqual(await ex.step(Buffer.from("alice")), { kind: "challenge", data: Buffer.from("Password:") });
  assert.deepEqual(await ex.step(Buffer.from("pw")), { kind: "success", user: "alice" });
});

test("LOGIN wrong password fails with credentials", async () => {
  const ex = startExchange("LOGIN", creds());
  await ex.step(null);
  await ex.step(Buffer.from("alice"));
  assert.deepEqual(await ex.step(Buffer.from("nope")), { kind: "failure", reason: "credentials" });
});

test("LOGIN empty user name or password is malformed", async () => {
  const a = startExchange("LOGIN", creds());
  await a.step(null);
  assert.deepEqual(await a.step(Buffer.alloc(0)), { kind: "failure", reason: "malformed" });
  const b = startExchange("LOGIN", creds());
  await b.step(null);
  await b.step(Buffer.from("alice"));
  assert.deepEqual(await b.step(Buffer.alloc(0)), { kind: "failure", reason: "malformed" });
});

test("LOGIN invalid UTF-8 is malformed", async () => {
  const ex = startExchange("LOGIN", creds());
  await ex.step(null);
  assert.deepEqual(await ex.step(Buffer.from([0xc3, 0x28])), { kind: "failure", reason: "malformed" });
});
