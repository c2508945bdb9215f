/**
 * DMARC: does the domain in From (the author domain) stand behind the message — did SPF or DKIM
 * pass for a domain aligned with it — and what does the domain ask a receiver to do when not?
 *
 * mailauth implements RFC 9989, which obsoletes RFC 7489: the policy record and the
 * organizational domain are found by the DNS Tree Walk (_dmarc at the author domain, then its
 * parents, at most 8 queries) instead of the Public Suffix List, so relaxed alignment needs no
 * list that goes stale; p=, sp= and np= (non-existent subdomains) apply; t=y asks for the policy
 * one level lower. RFC 9989 leaves pct= out, but records still carry it: a record with pct
 * below 100 (RFC 7489 §6.6.4: the policy is applied to that share of failing mail, the next
 * lower one to the rest) is applied here one level lower too, like t=y — never harsher than the
 * domain owner asked under either RFC.
 */
import { evaluateDmarc } from "mailauth/lib/dmarc/index.js";
import { formatAuthHeaderRow } from "mailauth/lib/tools.js";
import type { ARCResult, DNSResolver } from "mailauth";
import type { DkimSignatureResult } from "./dkim-verify.ts";
import type { MailauthResolver } from "./dns-resolver.ts";
import type { SpfOutcome } from "./spf.ts";

export type DmarcResult = "pass" | "fail" | "none" | "temperror" | "permerror";
export type DmarcPolicy = "none" | "quarantine" | "reject";

export interface DmarcRecord {
  readonly p: DmarcPolicy;
  readonly sp: DmarcPolicy;
  readonly np?: DmarcPolicy;
  /** 100 when absent. */
  readonly pct: number;
  readonly testing: boolean;
  readonly adkim: "r" | "s";
  readonly aspf: "r" | "s";
  /** The record as published. */
  readonly text: string;
}

export interface DmarcOutcome {
  readonly result: DmarcResult;
  /** The domain of the From address. */
  readonly authorDomain?: string;
  /** Where the record applied was published (the author domain or a parent). */
  readonly policyDomain?: string;
  readonly record?: DmarcRecord;
  /**
   * What the domain asks for a message that fails: the record's p/sp/np for the author
   * domain, one level lower for t=y or pct below 100. "none" when there is no record.
   */
  readonly policy: DmarcPolicy;
  /** The aligned identifiers that passed. */
  readonly aligned: { readonly spf?: string; readonly dkim?: string };
  /** Why DMARC could not be evaluated, or the DNS failure. */
  readonly reason?: string;
  /** The Authentication-Results resinfo ("dmarc=pass header.from=…", RFC 8601 §2.7.2 + policy.dmarc). */
  readonly authResults: string;
}

export interface DmarcInput {
  /** DkimVerification.authors and .fromFields. */
  readonly authors: readonly string[];
  readonly fromFields: number;
  /** The SPF outcome of the MAIL FROM identity (the HELO one for a null reverse-path). */
  readonly spf?: SpfOutcome;
  readonly dkim: readonly DkimSignatureResult[];
  /** ARC validation, reported in the comment (for local policy on forwarded mail). */
  readonly arc?: { readonly result: string };
}

const LOWER: Record<DmarcPolicy, DmarcPolicy> = { reject: "quarantine", quarantine: "none", none: "none" };

const REASONS: Record<string, string> = {
  "no-author-domain": "no author domain in From",
  "multiple-author-domains": "From names more than one domain",
  "invalid-author-domain": "a From address has no usable domain",
  "multiple-from-fields": "more than one From field",
};

export async function checkDmarc(input: DmarcInput, resolver: MailauthResolver): Promise<DmarcOutcome> {
  const { response, reason } = await evaluateDmarc({
    headerFrom: [...input.authors],
    fromFields: input.fromFields,
    spfDomains: input.spf?.result === "pass" ? [input.spf.domain] : [],
    dkimDomains: input.dkim.filter((s) => s.result === "pass").map((s) => ({ domain: s.domain })),
    ...(input.arc ? { arcResult: { status: { result: input.arc.result } } as ARCResult } : {}),
    resolver: resolver as DNSResolver,
    strict: true,
  });
  if (response === false) {
    const why = REASONS[reason ?? "no-author-domain"] ?? reason ?? "not evaluated";
    const result: DmarcResult = reason === "no-author-domain" ? "none" : "permerror";
    return { result, policy: "none", aligned: {}, reason: why, authResults: formatAuthHeaderRow("dmarc", { result, comment: why }, { strict: true }) };
  }
  const result = response.status.result as DmarcResult;
  const authorDomain = response.status.header?.from;
  const base = {
    result,
    ...(authorDomain ? { authorDomain } : {}),
    // Absent when there was no record to align with.
    aligned: {
      ...(response.alignment?.spf.result ? { spf: response.alignment.spf.result } : {}),
      ...(response.alignment?.dkim.result ? { dkim: response.alignment.dkim.result } : {}),
    },
  };
  if (response.rr === undefined || result === "none" || result === "temperror") {
    return {
      ...base,
      policy: "none",
      ...(response.error ? { reason: response.error } : {}),
      authResults: response.info,
    };
  }
  const record = readRecord(response.rr, response.p, response.sp, response.np, response.testMode);
  const partial = record.pct < 100 && !record.testing;
  const policy = partial ? LOWER[response.policy as DmarcPolicy] : (response.policy as DmarcPolicy);
  const status = { ...response.status, ...(response.status.policy ? { policy: { dmarc: policy } } : {}) };
  if (partial) status.comment = `${status.comment ?? ""} pct=${record.pct}`.trim();
  return {
    ...base,
    ...(response.policyDomain ? { policyDomain: response.policyDomain } : {}),
    record,
    policy,
    authResults: formatAuthHeaderRow("dmarc", status, { strict: true }),
  };
}

function readRecord(text: string, p: string, sp: string, np: string | undefined, testing: boolean): DmarcRecord {
  const tag = (name: string) => new RegExp(`(?:^|;)\\s*${name}\\s*=\\s*([^;\\s]*)`, "i").exec(text)?.[1]?.toLowerCase();
  const pctText = tag("pct");
  const pct = pctText !== undefined && /^\d{1,3}$/.test(pctText) ? Math.min(100, Number(pctText)) : 100;
  return {
    p: p as DmarcPolicy,
    sp: sp as DmarcPolicy,
    ...(np ? { np: np as DmarcPolicy } : {}),
    pct,
    testing,
    adkim: tag("adkim") === "s" ? "s" : "r",
    aspf: tag("aspf") === "s" ? "s" : "r",
    text,
  };
}
