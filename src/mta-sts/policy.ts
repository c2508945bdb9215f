/**
 * An MTA-STS policy (RFC 8461 §3.2) as Petrel publishes it for its domains,
 * and the id of its `_mta-sts` TXT record (§3.1).
 *
 * The policy text is a list of "key: value" lines, each ended by CRLF:
 *
 *   version: STSv1
 *   mode: enforce
 *   mx: mail.example.com
 *   max_age: 604800
 *
 * The id changes whenever the text does (it is derived from it), so senders
 * that cached an older policy fetch the new one (§3.1: "id" MUST change when
 * the policy changes).
 */
import { createHash } from "node:crypto";
import type { Config } from "../config/schema.ts";

export type MtaStsMode = "enforce" | "testing" | "none";

export interface MtaStsPolicy {
  readonly mode: MtaStsMode;
  /** MX host patterns: host names, or "*.example.com" for any one label. */
  readonly mx: readonly string[];
  /** Seconds senders may cache the policy (§3.2: at most 31557600). */
  readonly maxAgeSeconds: number;
}

/** The well-known path (§3.2) under https://mta-sts.<domain>/. */
export const POLICY_PATH = "/.well-known/mta-sts.txt";

/** The host name senders fetch the policy of `domain` from (§3.2). */
export function policyHost(domain: string): string {
  return `mta-sts.${domain}`;
}

export function formatPolicy(p: MtaStsPolicy): string {
  const lines = ["version: STSv1", `mode: ${p.mode}`, ...p.mx.map((m) => `mx: ${m}`), `max_age: ${p.maxAgeSeconds}`];
  return lines.map((l) => `${l}\r\n`).join("");
}

/** §3.1: id is 1–32 letters and digits; here the first 20 hex digits of the text's SHA-256. */
export function policyId(text: string): string {
  return createHash("sha256").update(text).digest("hex").slice(0, 20);
}

/** The `_mta-sts.<domain>` TXT record's value (§3.1). */
export function policyRecord(text: string): string {
  return `v=STSv1; id=${policyId(text)};`;
}

/** The policy the configuration asks Petrel to host, or null when `mtaSts` is not set. */
export function configuredPolicy(config: Config): MtaStsPolicy | null {
  const m = config.mtaSts;
  if (!m) return null;
  return { mode: m.mode, mx: m.mx.length > 0 ? m.mx : [config.hostname], maxAgeSeconds: Math.floor(m.maxAge / 1000) };
}
