/**
 * The streaming property: signing and verifying a 25 MiB message keeps memory flat — no chunk is
 * retained, only hash state and the header section. Memory is read after a forced GC, with
 * every chunk freshly allocated, so a retained body would show as ~25 MiB of array buffers.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { DkimSigner } from "../../src/mailauth/dkim-sign.ts";
import { DkimMessageVerifier } from "../../src/mailauth/dkim-verify.ts";
import { keyZone, dkimpyVerify, testDns, testKey } from "./helpers.ts";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

const SIZE = 25 * 1024 * 1024;
const CHUNK = 64 * 1024;
const HEADER = "From: alice@a.test\r\nTo: bob@b.test\r\nSubject: big\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\nMessage-ID: <big@a.test>\r\n\r\n";
const LINE = "0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 abcdefghij\r\n";

/** The message in fresh chunks (none shared, so keeping one keeps its memory). */
function* chunks(header = HEADER): Generator<Buffer> {
  yield Buffer.from(header);
  const block = LINE.repeat(Math.ceil(CHUNK / LINE.length)).slice(0, CHUNK - (CHUNK % LINE.length));
  for (let sent = 0; sent < SIZE; sent += block.length) yield Buffer.from(block);
}

function memory(): number {
  // Twice: array buffers freed by one collection are released by the next.
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

const MiB = 1024 * 1024;

test("the measurement sees a retained body", () => {
  const before = memory();
  const kept: Buffer[] = [];
  for (const c of chunks()) kept.push(c);
  const growth = memory() - before;
  assert.ok(growth > 20 * MiB, `retaining the chunks grows memory by ${(growth / MiB).toFixed(1)} MiB`);
  assert.ok(kept.length > 0);
});

test("signing a 25 MiB message: memory stays flat, and dkimpy verifies the signature over the whole body", async (t) => {
  const key = testKey("a.test", "big", "ed25519");
  const signer = new DkimSigner([key]);
  const before = memory();
  let peak = 0;
  let n = 0;
  for (const c of chunks()) {
    await signer.write(c);
    if (++n % 100 === 0) peak = Math.max(peak, memory() - before);
  }
  peak = Math.max(peak, memory() - before);
  const fields = await signer.end();
  t.diagnostic(`signer: peak memory growth ${(peak / MiB).toFixed(2)} MiB over ${n} chunks`);
  assert.ok(peak < 4 * MiB, `peak growth ${(peak / MiB).toFixed(2)} MiB`);
  assert.deepEqual(await dkimpyVerify(Buffer.concat([Buffer.from(fields), ...chunks()]), [key]), [{ pass: true }]);
});

test("verifying a 25 MiB message with two signatures: memory stays flat", async (t) => {
  const rsa = testKey("a.test", "rsa", "rsa");
  const ed = testKey("a.test", "ed", "ed25519");
  const signer = new DkimSigner([rsa, ed]);
  for (const c of chunks()) await signer.write(c);
  const fields = await signer.end();

  const { mailauth } = await testDns(t, keyZone([rsa, ed]));
  const verifier = new DkimMessageVerifier({ resolver: mailauth });
  const before = memory();
  let peak = 0;
  let n = 0;
  for (const c of chunks(fields + HEADER)) {
    await verifier.write(c);
    if (++n % 100 === 0) peak = Math.max(peak, memory() - before);
  }
  const r = await verifier.end();
  peak = Math.max(peak, memory() - before);
  t.diagnostic(`verifier: peak memory growth ${(peak / MiB).toFixed(2)} MiB over ${n} chunks`);
  assert.deepEqual(r.signatures.map((s) => s.result), ["pass", "pass"]);
  assert.ok(peak < 4 * MiB, `peak growth ${(peak / MiB).toFixed(2)} MiB`);
});

test("a header section that never ends is not buffered past the limit", async (t) => {
  const { mailauth } = await testDns(t, {});
  const verifier = new DkimMessageVerifier({ resolver: mailauth, maxHeaderBytes: 64 * 1024 });
  const before = memory();
  const line = "X-Filler: " + "x".repeat(900) + "\r\n";
  for (let i = 0; i < 10_000; i++) await verifier.write(Buffer.from(line));
  const growth = memory() - before;
  const r = await verifier.end();
  assert.deepEqual(r.authResults, ["dkim=permerror (header section too large to verify)"]);
  assert.ok(growth < 2 * MiB, `growth ${(growth / MiB).toFixed(2)} MiB for 9 MB of header`);
  const signer = new DkimSigner([testKey("a.test", "s", "ed25519")], { maxHeaderBytes: 64 * 1024 });
  for (let i = 0; i < 100; i++) await signer.write(Buffer.from(line));
  await assert.rejects(signer.end(), /header section larger than 65536 octets/);
});

test("an unsigned message costs its header section: without a signature, an ARC set or a seal to hash for, the body is not read", async (t) => {
  const { mailauth } = await testDns(t, {});
  const timed = async (sealBodyHash: boolean) => {
    const verifier = new DkimMessageVerifier({ resolver: mailauth, sealBodyHash });
    let waited = 0;
    const started = performance.now();
    for (const c of chunks()) {
      const pending = verifier.write(c);
      if (pending) {
        waited++;
        await pending;
      }
    }
    const r = await verifier.end();
    assert.deepEqual(r.authResults, ["dkim=none"]);
    return { waited, ms: performance.now() - started, bodyHash: r.bodyHash };
  };
  const skipped = await timed(false);
  // The header section's chunk is taken; every body chunk passes by with nothing to wait for.
  assert.equal(skipped.waited, 1);
  assert.equal(skipped.bodyHash, "");
  const sealed = await timed(true);
  assert.ok(sealed.waited > 400, `${sealed.waited} chunks hashed for the seal`);
  assert.match(sealed.bodyHash, /^[A-Za-z0-9+/]{43}=$/);
  t.diagnostic(`25 MiB unsigned: ${skipped.ms.toFixed(0)} ms without a seal to hash for, ${sealed.ms.toFixed(0)} ms with (relaxed/sha256 over the body)`);
});
