/**
 * What TLS reporting (RFC 8460) is told about each TLS session Petrel opens to deliver mail:
 * the policy that applied — an MTA-STS policy of the recipient domain, the TLSA records of the
 * MX host (whose TLSA base domain is then the policy domain), or none — and, when the session
 * failed that policy, why, in the words of the result types of RFC 8460 §4.3 (the IANA
 * "STARTTLS Validation Result Types" registry). The remote agent produces these; the daily
 * report counts them (aggregate.ts).
 */

export const RESULT_TYPES = [
  // Negotiation failures (RFC 8460 §4.3.1)
  "starttls-not-supported", "certificate-host-mismatch", "certificate-expired", "certificate-not-trusted", "validation-failure",
  // Policy failures: DANE (§4.3.2.1) and MTA-STS (§4.3.2.2)
  "tlsa-invalid", "dnssec-invalid", "dane-required", "sts-policy-fetch-error", "sts-policy-invalid", "sts-webpki-invalid",
] as const;

export type ResultType = (typeof RESULT_TYPES)[number];

/** The policy a session was held to (RFC 8460 §4.4 "policy"). */
export type ReportedPolicy =
  /** `lines`: the policy text line by line (empty when it could not be fetched); `mxHost`: its mx patterns. */
  | { readonly type: "sts"; readonly domain: string; readonly lines: readonly string[]; readonly mxHost: readonly string[] }
  /** `domain`: the TLSA base domain (the MX host); `lines`: the records in presentation form. */
  | { readonly type: "tlsa"; readonly domain: string; readonly lines: readonly string[] }
  | { readonly type: "no-policy-found"; readonly domain: string };

/** RFC 8460 §4.4 "failure-details", before counting. */
export interface FailureDetail {
  readonly resultType: ResultType;
  readonly sendingMtaIp?: string;
  readonly receivingMxHostname?: string;
  readonly receivingIp?: string;
  /** A short machine-readable reason beyond the result type (RFC 8460 §4.4 "failure-reason-code"). */
  readonly failureReasonCode?: string;
}

export interface TlsSessionResult {
  readonly policy: ReportedPolicy;
  /** Absent: the session met the policy. */
  readonly failure?: FailureDetail;
}

export interface TlsSessionRecorder {
  record(result: TlsSessionResult): void;
}
