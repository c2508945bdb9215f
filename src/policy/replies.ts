import { reply, type Reply } from "../smtp/reply.ts";
import type { CheckResult, Verdict } from "./check.ts";

/**
 * How checks say no. The peer sees a clear, generic text with the right
 * RFC 3463 enhanced code; the details go to the log (`reason`), never to
 * the peer. The runner's own replies (a check that failed or timed out) are
 * here too.
 */

/** Refuse permanently: `code` 5xx, `status` "5.x.y". */
export function reject(code: number, status: string, text: string, reason?: string): CheckResult {
  return { verdict: { action: "reject", reply: reply(code, status, text) }, ...(reason !== undefined ? { reason } : {}) };
}

/** Refuse for now: `code` 4xx, `status` "4.x.y". */
export function tempfail(code: number, status: string, text: string, reason?: string): CheckResult {
  return { verdict: { action: "tempfail", reply: reply(code, status, text) }, ...(reason !== undefined ? { reason } : {}) };
}

/** A check threw, timed out or answered with a malformed verdict: the client tries again later (never a crash, never a lost message). */
export const checkFailed = reply(451, "4.3.0", "Error: temporary failure, try again later");
/** The same, where it replaces the greeting (RFC 5321 §3.8: 421 closes the connection). */
export const checkFailedAtConnect = reply(421, "4.3.0", "Error: temporary failure, try again later");

/**
 * A refusal verdict whose reply fits it: reject is 5xx with a 5.x.y code,
 * tempfail 4xx with 4.x.y (RFC 3463 §2: the class matches the reply's first
 * digit). Anything else is a defect in the check, answered as a failure.
 */
export function isWellFormed(v: Verdict): boolean {
  if (v.action === "reject") return v.reply.code >= 500 && v.reply.code < 600 && v.reply.status?.startsWith("5.") === true;
  if (v.action === "tempfail") return v.reply.code >= 400 && v.reply.code < 500 && v.reply.status?.startsWith("4.") === true;
  return true;
}

/**
 * A refusal at connect replaces the greeting, where RFC 5321 §3.1 allows
 * only 554 (and §3.8 421): other codes of the same class are mapped to them.
 */
export function atConnect(r: Reply): Reply {
  if (r.code === 421 || r.code === 554) return r;
  return { ...r, code: r.code >= 500 ? 554 : 421 };
}
