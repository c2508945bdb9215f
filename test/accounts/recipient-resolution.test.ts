import { test } from "node:test";
import assert from "node:assert/strict";
import {
  aliasProblems,
  isMailbox,
  MAX_ALIAS_DEPTH,
  ownsAddress,
  resolveRecipient,
  resolveRecipientDetailed,
  subaddressBase,
} from "../../src/accounts/recipient-resolution.ts";
import { splitAddress } from "../../src/mail/address.ts";
import type { AccountSnapshot } from "../../src/accounts/recipient-resolution.ts";

function snap(opts: { domains: string[]; users?: string[]; aliases?: Record<string, string[]> }): AccountSnapshot {
  return {
    domains: new Set(opts.domains),
    users: new Map((opts.users ?? []).map((u) => [u.toLowerCase(), u])),
    aliases: new Map(Object.entries(opts.aliases ?? {}).map(([k, v]) => [k.toLowerCase(), v])),
  };
}

const mailbox = (address: string) => ({ type: "mailbox", address });
const forward = (address: string) => ({ type: "forward", address });

const base = snap({ domains: ["example.org", "example.net"], users: ["alice@example.org", "Bob@example.org", "carol@example.net"] });

test("splitAddress normalises the domain and keeps the local part", () => {
  assert.deepEqual(splitAddress("Alice@EXAMPLE.org."), { local: "Alice", domain: "example.org" });
  assert.deepEqual(splitAddress("x@[192.0.2.1]"), { local: "x", domain: "[192.0.2.1]" });
  assert.deepEqual(splitAddress("postmaster"), { local: "postmaster", domain: "" });
  assert.deepEqual(splitAddress("u@bücher.example"), { local: "u", domain: "xn--bcher-kva.example" });
});

test("subaddressBase: first separator character, never at position 0", () => {
  assert.equal(subaddressBase("alice+tag", "+"), "alice");
  assert.equal(subaddressBase("alice+a+b", "+"), "alice");
  assert.equal(subaddressBase("alice-tag+x", "+-"), "alice");
  assert.equal(subaddressBase("alice-tag", "+"), undefined);
  assert.equal(subaddressBase("+tag", "+"), undefined);
  assert.equal(subaddressBase("alice+tag", ""), undefined);
});

test("a domain that is not ours is not-local, whatever the case; address literals are never local", () => {
  assert.deepEqual(resolveRecipient(base, "x@other.org"), { kind: "not-local" });
  assert.deepEqual(resolveRecipient(base, "x@[192.0.2.1]"), { kind: "not-local" });
  assert.deepEqual(resolveRecipient(base, "alice@sub.example.org"), { kind: "not-local" });
});

test("users: domain and local part compare case-insensitively; the canonical address comes back", () => {
  assert.deepEqual(resolveRecipient(base, "ALICE@Example.ORG"), { kind: "local", targets: [mailbox("alice@example.org")] });
  assert.deepEqual(resolveRecipient(base, "bob@example.org"), { kind: "local", targets: [mailbox("Bob@example.org")] });
  assert.deepEqual(resolveRecipient(base, "alice@example.org."), { kind: "local", targets: [mailbox("alice@example.org")] });
});

test("an unknown user in a local domain is unknown (→ 550 5.1.1)", () => {
  const r = resolveRecipient(base, "nobody@example.org");
  assert.equal(r.kind, "unknown");
  assert.deepEqual(r, { kind: "unknown", reason: "no such user here" });
  // The user exists, but in the other local domain.
  assert.equal(resolveRecipient(base, "alice@example.net").kind, "unknown");
});

test("sub-addressing: user+tag → user; with a list of separators; off when empty", () => {
  assert.deepEqual(resolveRecipient(base, "alice+lists@example.org"), { kind: "local", targets: [mailbox("alice@example.org")] });
  assert.deepEqual(resolveRecipient(base, "Alice+A+B@example.org"), { kind: "local", targets: [mailbox("alice@example.org")] });
  assert.equal(resolveRecipient(base, "alice-lists@example.org").kind, "unknown");
  assert.deepEqual(resolveRecipient(base, "alice-lists@example.org", { separators: "+-" }), { kind: "local", targets: [mailbox("alice@example.org")] });
  assert.equal(resolveRecipient(base, "alice+lists@example.org", { separators: "" }).kind, "unknown");
  assert.equal(resolveRecipient(base, "+lists@example.org").kind, "unknown");
});

test("sub-addressing: user+tag that is itself a user or alias is taken as is", () => {
  const s = snap({
    domains: ["example.org"],
    users: ["alice@example.org", "alice+work@example.org"],
    aliases: { "alice+news@example.org": ["news@elsewhere.net"] },
  });
  assert.deepEqual(resolveRecipient(s, "alice+work@example.org"), { kind: "local", targets: [mailbox("alice+work@example.org")] });
  assert.deepEqual(resolveRecipient(s, "alice+news@example.org"), { kind: "local", targets: [forward("news@elsewhere.net")] });
  assert.deepEqual(resolveRecipient(s, "alice+other@example.org"), { kind: "local", targets: [mailbox("alice@example.org")] });
});

test("sub-addressing reaches an alias too", () => {
  const s = snap({ domains: ["example.org"], users: ["alice@example.org"], aliases: { "sales@example.org": ["alice@example.org"] } });
  assert.deepEqual(resolveRecipient(s, "sales+web@example.org"), { kind: "local", targets: [mailbox("alice@example.org")] });
});

test("aliases: several targets, local users, external forwards, nested aliases", () => {
  const s = snap({
    domains: ["example.org", "example.net"],
    users: ["alice@example.org", "bob@example.org", "carol@example.net"],
    aliases: {
      "team@example.org": ["alice@example.org", "bob@example.org", "ops@example.org"],
      "ops@example.org": ["carol@example.net", "pager@Provider.COM"],
    },
  });
  assert.deepEqual(resolveRecipient(s, "Team@example.org"), {
    kind: "local",
    targets: [mailbox("alice@example.org"), mailbox("bob@example.org"), mailbox("carol@example.net"), forward("pager@provider.com")],
  });
});

test("alias targets are de-duplicated (case-insensitively)", () => {
  const s = snap({
    domains: ["example.org"],
    users: ["alice@example.org"],
    aliases: {
      "a@example.org": ["alice@example.org", "b@example.org", "ALICE@example.org", "x@ext.net", "X@EXT.net"],
      "b@example.org": ["alice+tag@example.org", "x@ext.net"],
    },
  });
  assert.deepEqual(resolveRecipient(s, "a@example.org"), { kind: "local", targets: [mailbox("alice@example.org"), forward("x@ext.net")] });
});

test("an alias wins over a user of the same address; alias to itself keeps a copy", () => {
  const s = snap({
    domains: ["example.org"],
    users: ["alice@example.org", "bob@example.org"],
    aliases: { "alice@example.org": ["alice@example.org", "alice@gmail.example"], "bob@example.org": ["carol@ext.net"] },
  });
  assert.deepEqual(resolveRecipient(s, "alice@example.org"), { kind: "local", targets: [mailbox("alice@example.org"), forward("alice@gmail.example")] });
  assert.deepEqual(resolveRecipient(s, "bob@example.org"), { kind: "local", targets: [forward("carol@ext.net")] });
});

test("alias loops are detected; a loop through a user ends at that user's mailbox", () => {
  const loop = snap({
    domains: ["example.org"],
    users: ["alice@example.org"],
    aliases: {
      "a@example.org": ["b@example.org"],
      "b@example.org": ["a@example.org"],
      "c@example.org": ["d@example.org", "alice@example.org"],
      "d@example.org": ["c@example.org"],
    },
  });
  const r = resolveRecipientDetailed(loop, "a@example.org");
  assert.equal(r.resolution.kind, "unknown");
  assert.match((r.resolution as { reason: string }).reason, /alias loop: a@example.org → b@example.org → a@example.org/);
  // The loop part is dropped; the rest is delivered.
  assert.deepEqual(resolveRecipient(loop, "c@example.org"), { kind: "local", targets: [mailbox("alice@example.org")] });

  const viaUser = snap({
    domains: ["example.org"],
    users: ["alice@example.org"],
    aliases: { "alice@example.org": ["list@example.org"], "list@example.org": ["alice@example.org", "x@ext.net"] },
  });
  assert.deepEqual(resolveRecipient(viaUser, "alice@example.org"), { kind: "local", targets: [mailbox("alice@example.org"), forward("x@ext.net")] });
  // From the other end the cycle list → alice → list is met (and reported, so writers refuse to
  // create it), yet delivery still ends at alice's mailbox.
  assert.deepEqual(resolveRecipient(viaUser, "list@example.org"), { kind: "local", targets: [mailbox("alice@example.org"), forward("x@ext.net")] });
  assert.deepEqual(aliasProblems(viaUser).map((p) => p.text), ["alias loop: list@example.org → alice@example.org → list@example.org"]);
  const selfCopy = snap({ domains: ["example.org"], users: ["alice@example.org"], aliases: { "alice@example.org": ["alice@example.org", "x@ext.net"] } });
  assert.deepEqual(aliasProblems(selfCopy), []);
  assert.deepEqual(aliasProblems(loop).map((p) => p.kind), ["loop", "loop", "loop", "loop"]);
});

test(`alias nesting is bounded at ${MAX_ALIAS_DEPTH}`, () => {
  const chain = (n: number) => {
    const aliases: Record<string, string[]> = {};
    for (let i = 1; i < n; i++) aliases[`a${i}@example.org`] = [`a${i + 1}@example.org`];
    aliases[`a${n}@example.org`] = ["alice@example.org"];
    return snap({ domains: ["example.org"], users: ["alice@example.org"], aliases });
  };
  assert.deepEqual(resolveRecipient(chain(MAX_ALIAS_DEPTH), "a1@example.org"), { kind: "local", targets: [mailbox("alice@example.org")] });
  const deep = resolveRecipient(chain(MAX_ALIAS_DEPTH + 1), "a1@example.org");
  assert.equal(deep.kind, "unknown");
  assert.match((deep as { reason: string }).reason, /deeper than 10/);
  assert.equal(aliasProblems(chain(MAX_ALIAS_DEPTH + 1))[0].kind, "depth");
});

test("catch-all @domain is used only when nothing else matches", () => {
  const s = snap({
    domains: ["example.org"],
    users: ["alice@example.org", "admin@example.org"],
    aliases: { "@example.org": ["admin@example.org"], "sales@example.org": ["alice@example.org"] },
  });
  assert.deepEqual(resolveRecipient(s, "alice@example.org"), { kind: "local", targets: [mailbox("alice@example.org")] });
  assert.deepEqual(resolveRecipient(s, "alice+x@example.org"), { kind: "local", targets: [mailbox("alice@example.org")] });
  assert.deepEqual(resolveRecipient(s, "sales@example.org"), { kind: "local", targets: [mailbox("alice@example.org")] });
  assert.deepEqual(resolveRecipient(s, "random@example.org"), { kind: "local", targets: [mailbox("admin@example.org")] });
  const d = resolveRecipientDetailed(s, "random@example.org");
  assert.equal(d.usedCatchAll, true);
  // An alias target that is nobody falls to the catch-all as well; a catch-all to itself is a loop.
  const loop = snap({ domains: ["example.org"], aliases: { "@example.org": ["nobody@example.org"] } });
  assert.equal(resolveRecipient(loop, "x@example.org").kind, "unknown");
  assert.equal(aliasProblems(loop)[0].kind, "loop");
});

test("catch-all may forward outside", () => {
  const s = snap({ domains: ["example.org"], aliases: { "@example.org": ["owner@ext.net"] } });
  assert.deepEqual(resolveRecipient(s, "anything@example.org"), { kind: "local", targets: [forward("owner@ext.net")] });
});

test("postmaster@<any local domain> always resolves: alias, else user, else the postmaster mailbox", () => {
  assert.deepEqual(resolveRecipient(base, "postmaster@example.org"), { kind: "local", targets: [mailbox("postmaster@example.org")] });
  assert.deepEqual(resolveRecipient(base, "PostMaster@EXAMPLE.NET"), { kind: "local", targets: [mailbox("postmaster@example.net")] });
  assert.deepEqual(resolveRecipient(base, "postmaster+x@example.org"), { kind: "local", targets: [mailbox("postmaster@example.org")] });
  const withAlias = snap({
    domains: ["example.org", "example.net"],
    users: ["alice@example.org", "postmaster@example.net"],
    aliases: { "postmaster@example.org": ["alice@example.org"], "@example.org": ["catch@ext.net"], "@example.net": ["catch@ext.net"] },
  });
  assert.deepEqual(resolveRecipient(withAlias, "postmaster@example.org"), { kind: "local", targets: [mailbox("alice@example.org")] });
  // A user postmaster beats the catch-all; so does the implicit postmaster mailbox.
  assert.deepEqual(resolveRecipient(withAlias, "postmaster@example.net"), { kind: "local", targets: [mailbox("postmaster@example.net")] });
  const catchOnly = snap({ domains: ["example.org"], aliases: { "@example.org": ["catch@ext.net"] } });
  assert.deepEqual(resolveRecipient(catchOnly, "postmaster@example.org"), { kind: "local", targets: [mailbox("postmaster@example.org")] });
  // Not postmaster of a foreign domain.
  assert.deepEqual(resolveRecipient(base, "postmaster@other.org"), { kind: "not-local" });
});

test("postmaster alias whose targets are all gone falls back to the postmaster mailbox", () => {
  const s = snap({ domains: ["example.org"], aliases: { "postmaster@example.org": ["gone@example.org"] } });
  assert.deepEqual(resolveRecipient(s, "postmaster@example.org"), { kind: "local", targets: [mailbox("postmaster@example.org")] });
});

test('"<Postmaster>" without a domain is the primary domain\'s postmaster; an alias may point to postmaster', () => {
  assert.deepEqual(resolveRecipient(base, "Postmaster"), { kind: "local", targets: [mailbox("postmaster@example.org")] });
  const s = snap({ domains: ["example.org"], aliases: { "abuse@example.org": ["postmaster@example.org"] } });
  assert.deepEqual(resolveRecipient(s, "abuse@example.org"), { kind: "local", targets: [mailbox("postmaster@example.org")] });
  assert.deepEqual(resolveRecipient(snap({ domains: [] }), "postmaster"), { kind: "not-local" });
});

test("the postmaster setting receives postmaster@ and abuse@ of every local domain; an alias or user of that name there still wins", () => {
  const s = snap({
    domains: ["example.org", "example.net", "example.com"],
    users: ["alice@example.org", "abuse@example.com"],
    aliases: { "postmaster@example.net": ["carol@ext.test"], "@example.org": ["catch@ext.test"] },
  });
  const o = { postmaster: "alice@example.org" };
  for (const a of ["postmaster@example.org", "abuse@example.org", "postmaster@example.com", "abuse@example.net", "Postmaster", "postmaster+x@example.com"]) {
    assert.deepEqual(resolveRecipient(s, a, o), { kind: "local", targets: [mailbox("alice@example.org")] }, a);
  }
  assert.deepEqual(resolveRecipient(s, "postmaster@example.net", o), { kind: "local", targets: [forward("carol@ext.test")] }, "the domain's alias");
  assert.deepEqual(resolveRecipient(s, "abuse@example.com", o), { kind: "local", targets: [mailbox("abuse@example.com")] }, "the domain's user");
  // Any address, also outside our domains; an alias as the setting is expanded.
  assert.deepEqual(resolveRecipient(s, "postmaster@example.com", { postmaster: "ops@ext.test" }), { kind: "local", targets: [forward("ops@ext.test")] });
  // Unset: postmaster@ keeps its own mailbox, abuse@ is nobody (or the catch-all).
  assert.deepEqual(resolveRecipient(s, "abuse@example.net"), { kind: "unknown", reason: "no such user here" });
  assert.deepEqual(resolveRecipient(s, "abuse@example.org"), { kind: "local", targets: [forward("catch@ext.test")] });
  assert.deepEqual(resolveRecipient(s, "postmaster@example.com"), { kind: "local", targets: [mailbox("postmaster@example.com")] });
});

test("a postmaster setting that leads back to postmaster@ or to nobody falls back to the postmaster mailbox; abuse@ then is unknown", () => {
  const s = snap({ domains: ["example.org"] });
  assert.deepEqual(resolveRecipient(s, "postmaster@example.org", { postmaster: "postmaster@example.org" }), { kind: "local", targets: [mailbox("postmaster@example.org")] });
  assert.deepEqual(resolveRecipient(s, "abuse@example.org", { postmaster: "postmaster@example.org" }), { kind: "local", targets: [mailbox("postmaster@example.org")] });
  assert.deepEqual(resolveRecipient(s, "postmaster@example.org", { postmaster: "gone@example.org" }), { kind: "local", targets: [mailbox("postmaster@example.org")] });
  assert.equal(resolveRecipient(s, "abuse@example.org", { postmaster: "gone@example.org" }).kind, "unknown");
});

test("isMailbox: users and postmaster@ of local domains, nothing else", () => {
  const s = snap({ domains: ["example.org"], users: ["Alice@example.org"], aliases: { "team@example.org": ["alice@example.org"] } });
  assert.equal(isMailbox(s, "alice@EXAMPLE.org"), true);
  assert.equal(isMailbox(s, "postmaster@example.org"), true);
  assert.equal(isMailbox(s, "team@example.org"), false, "an alias is no mailbox");
  assert.equal(isMailbox(s, "gone@example.org"), false);
  assert.equal(isMailbox(s, "alice@example.net"), false, "not a local domain");
});

test("an alias whose local targets all vanished is unknown, with the reason", () => {
  const s = snap({ domains: ["example.org"], aliases: { "old@example.org": ["gone@example.org"] } });
  const r = resolveRecipient(s, "old@example.org");
  assert.equal(r.kind, "unknown");
  assert.match((r as { reason: string }).reason, /gone@example.org is no user or alias/);
});

test("ownsAddress: own address, own sub-addresses, extra addresses, aliases reaching the user; never a catch-all", () => {
  const s = snap({
    domains: ["example.org"],
    users: ["alice@example.org", "bob@example.org", "alice+work@example.org"],
    aliases: {
      "sales@example.org": ["alice@example.org", "x@ext.net"],
      "bobs@example.org": ["bob@example.org"],
      "@example.org": ["alice@example.org"],
    },
  });
  const owns = (a: string, extra: string[] = []) => ownsAddress(s, "alice@example.org", a, extra);
  assert.equal(owns("alice@example.org"), true);
  assert.equal(owns("ALICE@Example.org"), true);
  assert.equal(owns("alice+lists@example.org"), true);
  assert.equal(owns("alice+work@example.org"), false, "alice+work is another user");
  assert.equal(owns("alice-lists@example.org"), false);
  assert.equal(ownsAddress(s, "alice@example.org", "alice-lists@example.org", [], { separators: "+-" }), true);
  assert.equal(owns("sales@example.org"), true);
  assert.equal(owns("sales+web@example.org"), true);
  assert.equal(owns("bobs@example.org"), false);
  assert.equal(owns("bob@example.org"), false);
  assert.equal(owns("random@example.org"), false, "catch-all does not grant");
  assert.equal(owns("alice@other.org"), false);
  assert.equal(owns("me@other.org", ["Me@Other.org"]), true);
});
