import { test } from "node:test";
import assert from "node:assert/strict";
import { startExchange } from "../../src/sasl/mechanisms.ts";
import type { SaslStep } from "../../src/sasl/exchange.ts";
import { escapeSaslName, unescapeSaslName } from "../../src/sasl/scram.ts";
import { ScramSha256Client } from "../../src/client/scram-client.ts";
import { testCredentials } from "./fixtures.ts";
import { hmacSha256, scramSaltedPassword, sha256 } from "../../src/sasl/scram.ts";

const creds = () =>
  testCredentials([
    { name: "alice", password: "correct horse" },
    { name: "user", password: "pencil", salt: Buffer.from("W22ZaJ0SNY7soEsUEjb6gQ==", "base64"), iterations: 4096 },
    { name: "a,b=c", password: "pw" },
  ]);

function data(step: SaslStep): Buffer {
  assert.equal(step.kind, "challenge", JSON.stringify(step));
  return (step as { data: Buffer }).data;
}

test("SCRAM-SHA-256 end to end with the client, no initial response", async () => {
  const ex = startExchange("SCRAM-SHA-256", creds());
  const client = new ScramSha256Client("alice", "correct horse");
  assert.equal(data(await ex.step(null)).length, 0);
  const serverFirst = data(await ex.step(client.clientFirst()));
  const result = await ex.step(client.clientFinal(serverFirst));
  assert.equal(result.kind, "success");
  assert.equal(result.kind === "success" && result.user, "alice");
  assert.ok(result.kind === "success" && result.data && client.verifyServerFinal(result.data));
  assert.deepEqual(await ex.step(Buffer.from("")), { kind: "failure", reason: "malformed" });
});

test("SCRAM-SHA-256 with initial response, RFC 7677 §3 vector reproduced by the server", async () => {
  const ex = startExchange("SCRAM-SHA-256", creds(), { nonce: () => "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0" });
  const serverFirst = data(await ex.step(Buffer.from("n,,n=user,r=rOprNGfwEbeRWgbNEkqO")));
  assert.equal(serverFirst.toString(), "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
  const result = await ex.step(
    Buffer.from("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="),
  );
  assert.deepEqual(result, { kind: "success", user: "user", data: Buffer.from("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=") });
});

test("SCRAM-SHA-256 wrong password fails with credentials", async () => {
  const ex = startExchange("SCRAM-SHA-256", creds());
  const client = new ScramSha256Client("alice", "wrong horse");
  const serverFirst = data(await ex.step(client.clientFirst()));
  assert.deepEqual(await ex.step(client.clientFinal(serverFirst)), { kind: "failure", reason: "credentials" });
});

test("SCRAM-SHA-256 unknown user: same shape of server-first, stable salt, failure at the end", async () => {
  const shape = (b: Buffer) => b.toString().replace(/^r=[^,]+,s=([A-Za-z0-9+/=]+),i=(\d+)$/, (_m, s: string, i: string) => `s:${Buffer.from(s, "base64").length},i:${i}`);
  const known = startExchange("SCRAM-SHA-256", creds(), { nonce: () => "SERVERNONCE" });
  const knownFirst = data(await known.step(new ScramSha256Client("alice", "x", "abc").clientFirst()));

  const run = async () => {
    const ex = startExchange("SCRAM-SHA-256", creds(), { nonce: () => "SERVERNONCE" });
    const client = new ScramSha256Client("mallory", "x", "abc");
    const first = data(await ex.step(client.clientFirst()));
    return { ex, client, first };
  };
  const a = await run();
  const b = await run();
  assert.equal(shape(a.first), shape(knownFirst).replace(/i:\d+/, "i:10000"));
  assert.match(shape(a.first), /^s:16,i:10000$/);
  assert.deepEqual(a.first, b.first, "salt for an unknown user is deterministic");
  assert.deepEqual(await a.ex.step(a.client.clientFinal(a.first)), { kind: "failure", reason: "credentials" });
  const other = startExchange("SCRAM-SHA-256", creds(), { nonce: () => "SERVERNONCE" });
  const otherFirst = data(await other.step(new ScramSha256Client("eve", "x", "abc").clientFirst()));
  assert.notDeepEqual(otherFirst, a.first, "different unknown users get different salts");
});

test("SCRAM-SHA-256 tampered nonce in client-final is malformed", async () => {
  const ex = startExchange("SCRAM-SHA-256", creds());
  const client = new ScramSha256Client("alice", "correct horse");
  const serverFirst = data(await ex.step(client.clientFirst()));
  const final = client.clientFinal(serverFirst).toString().replace(/,r=([^,]+)/, ",r=$1X");
  assert.deepEqual(await ex.step(Buffer.from(final)), { kind: "failure", reason: "malformed" });
});

test("SCRAM-SHA-256 tampered proof fails with credentials", async () => {
  const ex = startExchange("SCRAM-SHA-256", creds());
  const client = new ScramSha256Client("alice", "correct horse");
  const serverFirst = data(await ex.step(client.clientFirst()));
  const text = client.clientFinal(serverFirst).toString();
  const proof = Buffer.from(text.slice(text.indexOf(",p=") + 3), "base64");
  proof[0] ^= 1;
  const tampered = `${text.slice(0, text.indexOf(",p=") + 3)}${proof.toString("base64")}`;
  assert.deepEqual(await ex.step(Buffer.from(tampered)), { kind: "failure", reason: "credentials" });
});

test("SCRAM-SHA-256 channel binding p= is refused; y,, is accepted", async () => {
  const p = startExchange("SCRAM-SHA-256", creds());
  assert.deepEqual(await p.step(Buffer.from("p=tls-exporter,,n=alice,r=abc")), { kind: "failure", reason: "malformed" });

  const y = startExchange("SCRAM-SHA-256", creds(), { nonce: () => "S" });
  const client = new ScramSha256Client("alice", "correct horse", "abc");
  const first = Buffer.from("y" + client.clientFirst().toString().slice(1));
  const serverFirst = data(await y.step(first));
  // The client's final says c=biws ("n,,"), which does not match the "y,," header sent: refused.
  assert.deepEqual(await y.step(client.clientFinal(serverFirst)), { kind: "failure", reason: "malformed" });
});

test("SCRAM-SHA-256 y,, with a matching c=eSws succeeds; c=biws after y,, is refused", async () => {
  const clientFinalFor = (serverFirst: string, cb: string) => {
    const salted = scramSaltedPassword("pencil", Buffer.from("W22ZaJ0SNY7soEsUEjb6gQ==", "base64"), 4096);
    const clientKey = hmacSha256(salted, "Client Key");
    const nonce = serverFirst.slice(2, serverFirst.indexOf(","));
    const withoutProof = `c=${cb},r=${nonce}`;
    const sig = hmacSha256(sha256(clientKey), `n=user,r=cnonce,${serverFirst},${withoutProof}`);
    const proof = Buffer.from(clientKey.map((b, i) => b ^ sig[i]));
    return Buffer.from(`${withoutProof},p=${proof.toString("base64")}`);
  };
  assert.equal(Buffer.from("y,,").toString("base64"), "eSws");
  const ok = startExchange("SCRAM-SHA-256", creds());
  const sf = data(await ok.step(Buffer.from("y,,n=user,r=cnonce"))).toString();
  assert.equal((await ok.step(clientFinalFor(sf, "eSws"))).kind, "success");

  const bad = startExchange("SCRAM-SHA-256", creds());
  const sf2 = data(await bad.step(Buffer.from("y,,n=user,r=cnonce"))).toString();
  assert.deepEqual(await bad.step(clientFinalFor(sf2, "biws")), { kind: "failure", reason: "malformed" });
});

test("SCRAM-SHA-256 authzid: equal to the user accepted, other refused", async () => {
  const ok = startExchange("SCRAM-SHA-256", creds());
  const step = await ok.step(Buffer.from("n,a=alice,n=alice,r=abc"));
  assert.equal(step.kind, "challenge");
  const bad = startExchange("SCRAM-SHA-256", creds());
  assert.deepEqual(await bad.step(Buffer.from("n,a=bob,n=alice,r=abc")), { kind: "failure", reason: "authzid" });
});

test("SCRAM-SHA-256 escaped user names (=2C, =3D)", async () => {
  const ex = startExchange("SCRAM-SHA-256", creds());
  const client = new ScramSha256Client("a,b=c", "pw");
  const first = client.clientFirst();
  assert.match(first.toString(), /^n,,n=a=2Cb=3Dc,r=/);
  const serverFirst = data(await ex.step(first));
  const result = await ex.step(client.clientFinal(serverFirst));
  assert.equal(result.kind === "success" && result.user, "a,b=c");
  assert.equal(escapeSaslName("a,b=c"), "a=2Cb=3Dc");
  assert.equal(unescapeSaslName("a=2Cb=3Dc"), "a,b=c");
  assert.equal(unescapeSaslName("a=2Xb"), null);
});

test("SCRAM-SHA-256 malformed client-first messages", async () => {
  for (const bad of [
    "",
    "n,,",
    "x,,n=alice,r=abc",
    "n,,n=alice",
    "n,,r=abc,n=alice",
    "n,,m=ext,n=alice,r=abc",
    "n,,n=al=ice,r=abc",
    "n,,n=,r=abc",
    "n,,n=alice,r=",
    "n,b=x,n=alice,r=abc",
    "n,,n=alice,r=ab\x7fc",
  ]) {
    const ex = startExchange("SCRAM-SHA-256", creds());
    if (bad === "") {
      assert.equal((await ex.step(Buffer.from(bad))).kind, "challenge");
      assert.deepEqual(await ex.step(Buffer.from(bad)), { kind: "failure", reason: "malformed" });
      continue;
    }
    assert.deepEqual(await ex.step(Buffer.from(bad)), { kind: "failure", reason: "malformed" }, bad);
  }
  const ex = startExchange("SCRAM-SHA-256", creds());
  assert.deepEqual(await ex.step(Buffer.from([0x6e, 0x2c, 0x2c, 0x6e, 0x3d, 0xff, 0x2c, 0x72, 0x3d, 0x61])), { kind: "failure", reason: "malformed" });
});

test("SCRAM-SHA-256 malformed client-final messages", async () => {
  const finals = (nonce: string) => [
    `r=${nonce},p=AAAA`,
    `c=biws,r=${nonce}`,
    `c=biws,r=${nonce},p=not-base64!`,
    `c=biws,r=${nonce},p=AAAA`, // proof too short
    `c=bixh,r=${nonce},p=${Buffer.alloc(32).toString("base64")}`, // "n,a" ≠ "n,,"
    `c=biws,m=x,r=${nonce},p=${Buffer.alloc(32).toString("base64")}`,
  ];
  for (let i = 0; i < finals("").length; i++) {
    const ex = startExchange("SCRAM-SHA-256", creds(), { nonce: () => "SN" });
    await ex.step(Buffer.from("n,,n=alice,r=abc"));
    const f = finals("abcSN")[i];
    assert.deepEqual(await ex.step(Buffer.from(f)), { kind: "failure", reason: "malformed" }, f);
  }
});
