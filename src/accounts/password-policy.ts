/**
 * What Petrel accepts as a new password for an account that logs in over SMTP
 * AUTH on a server facing the internet (NIST SP 800-63B §5.1.1.2: a minimum
 * length, and no value known to be commonly used or derived from the account).
 * The same rules apply to `petrel user add`, `user passwd` and
 * `hash-password`; a refusal says why.
 *
 * - At least `minLength` characters (12 by default; `passwords.minLength`).
 * - Not the account's address, nor its local part (any case).
 * - Not one character repeated.
 * - Not one of the most common passwords (common-passwords.txt; any case,
 *   spaces ignored).
 */
import { readFileSync } from "node:fs";
import { splitAddress } from "../mail/address.ts";

export interface PasswordPolicy {
  readonly minLength: number;
}

export type PasswordCheck = { readonly ok: true } | { readonly ok: false; readonly reason: string };

let common: Set<string> | undefined;

/** The shipped list, normalised the way candidates are. */
function commonPasswords(): Set<string> {
  common ??= new Set(
    readFileSync(new URL("./common-passwords.txt", import.meta.url), "utf8")
      .split("\n")
      .filter((l) => l !== "" && !l.startsWith("#"))
      .map(normalize),
  );
  return common;
}

function normalize(password: string): string {
  return password.toLowerCase().replace(/\s+/g, "");
}

/** Whether `password` may be set for `address` (when known); the reason when not. */
export function checkPassword(password: string, policy: PasswordPolicy, address?: string): PasswordCheck {
  const length = [...password].length;
  if (length < policy.minLength) {
    return { ok: false, reason: `it has ${length} character${length === 1 ? "" : "s"}; at least ${policy.minLength} are required (passwords.minLength)` };
  }
  if (address !== undefined) {
    const lower = password.toLowerCase();
    const addr = address.trim().toLowerCase();
    if (lower === addr) return { ok: false, reason: "it is the account's address" };
    if (lower === splitAddress(addr).local) return { ok: false, reason: "it is the local part of the account's address" };
  }
  if (new Set(password).size === 1) return { ok: false, reason: "it is one character repeated" };
  if (commonPasswords().has(normalize(password))) return { ok: false, reason: "it is one of the most common passwords, the first ones an attacker tries" };
  return { ok: true };
}
