import type { Reply } from "../smtp/reply.ts";
import type { ArcSealRequest, CheckResult, HeaderEdit, HeaderField, HeaderFields, Verdict } from "./check.ts";
import { authenticationResults, forgedResults } from "./authentication-results.ts";

/**
 * Many checks' results as one decision about a message. Verdicts rank
 * reject > tempfail > discard > quarantine > accept, and among equals the
 * first in check order wins (its reply is the one the client sees);
 * everything else adds up in check order: header fields, header edits,
 * recipient changes, and the Authentication-Results fragments, which become
 * one field (RFC 8601) on top of the message.
 */

/** The SMTP stages, and the end of data; names for the log. */
export type Stage = "connect" | "helo" | "auth" | "mail" | "rcpt" | "data" | "end-of-data" | "close";

/** A check's result at one stage. */
export interface StageResult {
  readonly check: string;
  readonly stage: Stage;
  readonly result: CheckResult;
}

/** What happens to the message once all content is in. */
export type MessageDecision =
  | { readonly action: "refuse"; readonly reply: Reply; readonly by: StageResult }
  | { readonly action: "discard"; readonly reason: string }
  | { readonly action: "accept"; readonly decided: Decided };

/** What an accepted message carries into the spool beside its body. */
export interface Decided {
  /** Header fields for the top of the message, in order (the Authentication-Results field first). */
  readonly prepend: readonly HeaderField[];
  /** Changes to the header section as stored. */
  readonly headerEdits: readonly HeaderEdit[];
  readonly recipients: { readonly add: readonly string[]; readonly remove: readonly string[] };
  /** Quarantine: put it on hold, for these reasons. */
  readonly hold?: string;
  /** Local delivery into this Maildir++ folder. */
  readonly folder?: string;
  /** An ARC set to add (a check asked), with the Authentication-Results value it records. */
  readonly arcSeal?: ArcSealRequest & { readonly authResults: string };
  /** What each check that said something found, in check order (the message trace shows them). */
  readonly findings?: readonly Finding[];
}

/** One check's word on an accepted message: its verdict short of refusal, and why. */
export interface Finding {
  readonly check: string;
  readonly stage: Stage;
  readonly verdict: string;
  readonly reason?: string;
}

const RANK: Record<Verdict["action"], number> = { accept: 0, quarantine: 1, discard: 2, tempfail: 3, reject: 4 };

/** The gravest verdict among `results` and the result that gave it (the first of equals). */
export function gravest(results: readonly StageResult[]): StageResult | undefined {
  let found: StageResult | undefined;
  for (const r of results) {
    const action = r.result.verdict?.action ?? "accept";
    if (RANK[action] > RANK[found?.result.verdict?.action ?? "accept"]) found = r;
  }
  return found;
}

export function decide(results: readonly StageResult[], authservId: string, header: HeaderFields): MessageDecision {
  const top = gravest(results);
  const verdict = top?.result.verdict;
  if (verdict?.action === "reject" || verdict?.action === "tempfail") return { action: "refuse", reply: verdict.reply, by: top! };
  if (verdict?.action === "discard") return { action: "discard", reason: reasons(results, "discard") };
  const fragments: string[] = [];
  const prepend: HeaderField[] = [];
  const headerEdits: HeaderEdit[] = forgedResults(authservId, header);
  const add: string[] = [];
  const remove: string[] = [];
  let folder: string | undefined;
  let seal: ArcSealRequest | undefined;
  const findings: Finding[] = [];
  for (const { check, stage, result } of results) {
    if (result.verdict || result.reason) findings.push({ check, stage, verdict: result.verdict?.action ?? "accept", ...(result.reason ? { reason: result.reason } : {}) });
    if (result.authResults) fragments.push(...result.authResults);
    if (result.headers) prepend.push(...result.headers);
    if (result.headerEdits) headerEdits.push(...result.headerEdits);
    if (result.recipients?.add) add.push(...result.recipients.add);
    if (result.recipients?.remove) remove.push(...result.recipients.remove);
    folder ??= result.folder;
    seal ??= result.arcSeal;
  }
  const ar = authenticationResults(authservId, fragments);
  if (ar) prepend.unshift(ar);
  const hold = verdict?.action === "quarantine" ? reasons(results, "quarantine") : undefined;
  // RFC 8617 §4.1.1: the set records the results this server wrote; without any there is nothing to seal.
  const arcSeal = seal && ar ? { ...seal, authResults: ar.value } : undefined;
  return {
    action: "accept",
    decided: {
      prepend, headerEdits, recipients: { add, remove },
      ...(hold !== undefined ? { hold } : {}), ...(folder !== undefined ? { folder } : {}), ...(arcSeal ? { arcSeal } : {}),
      ...(findings.length > 0 ? { findings } : {}),
    },
  };
}

/** "spam: score 12; dmarc: p=quarantine" — every check that chose this action, with its reason. */
function reasons(results: readonly StageResult[], action: "discard" | "quarantine"): string {
  const out: string[] = [];
  for (const r of results) {
    const v = r.result.verdict;
    if (v?.action === action) out.push(`${r.check}: ${v.reason}`);
  }
  return out.join("; ");
}
