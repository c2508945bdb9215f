import { test } from "node:test";
import assert from "node:assert/strict";
import { ScramSha256Client } from "../../src/client/scram-client.ts";
import { startExchange } from "../../src/sasl/mechanisms.ts";
import { deriveScramVerifier } from "../../src/sasl/scram.ts";

// RFC 7677 §3.
const CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO";
const SERVER_FIRST = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const CLIENT_FINAL = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const SERVER_FINAL = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

test("client reproduces the RFC 7677 §3 test vector exactly", () => {
  const c = new ScramSha256Client("user", "pencil", CLIENT_NONCE);
  assert.equal(c.clientFirst().toString(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
  assert.equal(c.clientFinal(Buffer.from(SERVER_FIRST)).toString(), CLIENT_FINAL);
  assert.equal(c.verifyServerFinal(Buffer.from(SERVER_FINAL)), true);
});

test("client rejects a wrong server signature and server errors", () => {
  const c = new ScramSha256Client("user", "pencil", CLIENT_NONCE);
  c.clientFirst();
  c.clientFinal(Buffer.from(SERVER_FIRST));
  assert.equal(c.verifyServerFinal(Buffer.from("v=" + Buffer.alloc(32).toString("base64"))), false);
  assert.equal(c.verifyServerFinal(Buffer.from("e=invalid-proof")), false);
  assert.equal(c.verifyServerFinal(Buffer.from("")), false);
});

test("client refuses to verify before the exchange", () => {
  const c = new ScramSha256Client("user", "pencil", CLIENT_NONCE);
  assert.equal(c.verifyServerFinal(Buffer.from(SERVER_FINAL)), false);
  assert.throws(() => c.clientFinal(Buffer.from(SERVER_FIRST)));
});

test("client rejects bad server-first messages", () => {
  for (const bad of [
    "r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
    `r=${CLIENT_NONCE},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096`, // no server part
    `r=${CLIENT_NONCE}x,s=***,i=4096`,
    `r=${CLIENT_NONCE}x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0`,
    `r=${CLIENT_NONCE}x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=99999999`,
    `m=x,r=${CLIENT_NONCE}x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096`,
    `r=${CLIENT_NONCE}x,i=4096`,
  ]) {
    const c = new ScramSha256Client("user", "pencil", CLIENT_NONCE);
    c.clientFirst();
    assert.throws(() => c.clientFinal(Buffer.from(bad)), Error, bad);
  }
});

test("client with a random nonce authenticates against the server mechanism", async () => {
  const v = deriveScramVerifier("pässwörd", Buffer.from("saltsaltsaltsalt"), 4096);
  const ex = startExchange("SCRAM-SHA-256", {
    verifyPlain: async () => null,
    scramVerifier: async (id) => (id === "bob" ? { user: "bob", ...v } : null),
  });
  const c = new ScramSha256Client("bob", "pa\u0308sswo\u0308rd"); // decomposed: SASLprep makes it match
  const serverFirst = await ex.step(c.clientFirst());
  assert.equal(serverFirst.kind, "challenge");
  const done = await ex.step(c.clientFinal((serverFirst as { data: Buffer }).data));
  assert.equal(done.kind, "success");
  assert.ok(done.kind === "success" && done.data && c.verifyServerFinal(done.data));
});

test("client rejects prohibited characters in user or password", () => {
  assert.throws(() => new ScramSha256Client("bob", "pw\u0000"));
  assert.throws(() => new ScramSha256Client("", "pw"));
  assert.throws(() => new ScramSha256Client("bob", "pw", "bad,nonce"));
});
