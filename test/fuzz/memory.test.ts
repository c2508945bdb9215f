/** Bounded memory (property 7): endless input without LF, deterministic and fuzzed. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { floodWithoutLf } from "./properties.ts";
import type { EngineConfig } from "./arbitraries.ts";
import { sample } from "./sample.ts";

const cfg: EngineConfig = {
  bareNewline: "normalize", tls: "implicit", requireAuth: false, authMechanisms: ["PLAIN"],
  limits: { messageSize: 1_000_000, recipients: 10, messagesPerConnection: 10, commandLine: 2048, softErrors: 10, hardErrors: 20 },
  errorDelay: false,
  handler: { async: false, refuseMail: false, refuseSomeRcpt: false, openFails: false, end: "ok", authSuccessData: false, disconnectOnAuthFailure: false },
};
const TEN_MB = 10 * 1024 * 1024;
const CHUNK = 64 * 1024;

for (const state of ["fresh", "ehlo", "auth"] as const) {
  test(`10 MB without LF in 64 KiB chunks (${state}): closed with 421 4.7.0, never more than the line limit + one chunk held`, async () => {
    const r = await floodWithoutLf(cfg, state, CHUNK, TEN_MB, 0x61);
    assert.equal(r.problem, null);
    assert.equal(r.closed, true);
    assert.equal(r.replies.at(-1), "421 4.7.0");
    assert.ok(r.sent < 2 * 1024 * 1024, `closed only after ${r.sent} octets`);
    assert.ok(r.maxQueued <= r.bound, `held ${r.maxQueued} > ${r.bound}`);
  });
}

for (const state of ["data", "bdat"] as const) {
  test(`10 MB without LF in 64 KiB chunks (${state}): streamed, never more than one chunk held`, async () => {
    const r = await floodWithoutLf(cfg, state, CHUNK, TEN_MB, 0x61);
    assert.equal(r.problem, null);
    assert.equal(r.sent, TEN_MB);
    assert.ok(r.maxQueued <= CHUNK, `held ${r.maxQueued}`);
    if (state === "bdat") assert.equal(r.replies.at(-1), "552 5.3.4");
  });
}

test("a line shorter than one chunk is held, and only it", async () => {
  const r = await floodWithoutLf({ ...cfg, limits: { ...cfg.limits, commandLine: 4096 } }, "ehlo", 1000, TEN_MB, 0x61);
  assert.equal(r.closed, true);
  assert.ok(r.maxQueued > 0 && r.maxQueued <= 4096 + 1000, `held ${r.maxQueued}`);
});

sample(["bounded-memory"]);
