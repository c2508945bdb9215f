import { test } from "node:test";
import assert from "node:assert/strict";
import { checkPassword } from "../../src/accounts/password-policy.ts";

const policy = { minLength: 12 };

test("length is counted in characters (not bytes), against passwords.minLength", () => {
  assert.deepEqual(checkPassword("x", policy), { ok: false, reason: "it has 1 character; at least 12 are required (passwords.minLength)" });
  assert.equal(checkPassword("elevenchars", policy).ok, false);
  assert.equal(checkPassword("ünïcødé-pässwört", policy).ok, true);
  assert.equal(checkPassword("ääääää-öööö", policy).ok, false, "11 characters, 21 bytes");
  assert.equal(checkPassword("a fine passphrase", { minLength: 20 }).ok, false);
});

test("the address or its local part is refused, in any case", () => {
  const address = "Postmaster.Team@Example.com";
  assert.deepEqual(checkPassword("postmaster.team@example.com", policy, address), { ok: false, reason: "it is the account's address" });
  assert.deepEqual(checkPassword("POSTMASTER.TEAM", policy, address), { ok: false, reason: "it is the local part of the account's address" });
  assert.equal(checkPassword("postmaster.team!", policy, address).ok, true);
  assert.equal(checkPassword("postmaster.team", policy).ok, true, "no address given: not compared");
});

test("one character repeated, and the most common passwords (any case, spaces ignored), are refused", () => {
  assert.deepEqual(checkPassword("!!!!!!!!!!!!", policy), { ok: false, reason: "it is one character repeated" });
  for (const common of ["123456789012", "qwertyuiop123", "Password123!", "passwordpassword", "CorrectHorseBatteryStaple", "correct horse battery staple", "1qaz2wsx3edc"]) {
    const r = checkPassword(common, policy);
    assert.deepEqual(r, { ok: false, reason: "it is one of the most common passwords, the first ones an attacker tries" }, common);
  }
  assert.equal(checkPassword("iloveyou", { minLength: 8 }).ok, false, "in the list once the minimum allows its length");
  assert.equal(checkPassword("tangerine-otter-41", policy).ok, true);
});
