/**
 * What a new session (or a failed attempt at one) tells TLS reporting (RFC 8460 §4.3): the
 * remote agent calls these when it opens a session to a host whose plan names a policy
 * (tls-requirements.ts). Only the negotiation is judged — a server that refuses the mail
 * afterwards had a successful TLS session. Attempts that never reached TLS (the host did not
 * answer) are not TLS sessions and are not counted.
 */
import { SmtpClientError, type SmtpConnection } from "../client/smtp-connection.ts";
import type { FailureDetail, ResultType, TlsSessionResult } from "../tls-rpt/session-result.ts";
import type { HostPlan } from "./tls-requirements.ts";

const NOT_TRUSTED = new Set([
  "DEPTH_ZERO_SELF_SIGNED_CERT", "SELF_SIGNED_CERT_IN_CHAIN", "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT", "UNABLE_TO_GET_ISSUER_CERT_LOCALLY", "CERT_UNTRUSTED", "CERT_REJECTED", "INVALID_CA",
]);

/** The result type of a certificate check that failed, by Node's (OpenSSL's) error code. */
export function certificateResult(code: string | undefined): ResultType {
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID") return "certificate-host-mismatch";
  if (code === "CERT_HAS_EXPIRED" || code === "CERT_NOT_YET_VALID") return "certificate-expired";
  if (code !== undefined && NOT_TRUSTED.has(code)) return "certificate-not-trusted";
  return "validation-failure";
}

interface Where {
  readonly host: string;
  readonly address: string;
}

function detail(resultType: ResultType, where: Where, more: Partial<FailureDetail> = {}): FailureDetail {
  return { resultType, receivingMxHostname: where.host, receivingIp: where.address, ...more };
}

/** A session that opened: met the plan's policy, or (testing, unusable TLSA, no policy) fell short of it. */
export function openedReport(plan: HostPlan, session: SmtpConnection, where: Where): TlsSessionResult | undefined {
  if (!plan.report) return undefined;
  const policy = plan.report;
  const sending = session.localAddress ? { sendingMtaIp: session.localAddress } : {};
  const fail = (resultType: ResultType, code?: string): TlsSessionResult =>
    ({ policy, failure: detail(resultType, where, { ...sending, ...(code ? { failureReasonCode: code } : {}) }) });
  if (plan.standingFailure) return fail(plan.standingFailure.resultType);
  const tls = session.tls;
  if (tls === null) return fail("starttls-not-supported");
  if (plan.testing) {
    if (!plan.testing.mxMatches) return fail("validation-failure", "mx-not-in-policy");
    if (!tls.authorized) return fail(certificateResult(tls.authorizationError), tls.authorizationError);
  }
  return { policy };
}

/** An attempt that failed during STARTTLS or the TLS handshake. */
export function failedReport(plan: HostPlan, err: unknown, where: Where): TlsSessionResult | undefined {
  if (!plan.report || !(err instanceof SmtpClientError) || err.kind !== "tls") return undefined;
  const policy = plan.report;
  if (plan.standingFailure) return { policy, failure: detail(plan.standingFailure.resultType, where) };
  if (err.daneFailure) return { policy, failure: detail(err.daneFailure, where, { failureReasonCode: err.code }) };
  // STARTTLS not offered, or refused with a reply: the TLS negotiation never began.
  if (err.phase === "STARTTLS" && err.code === undefined) return { policy, failure: detail("starttls-not-supported", where) };
  return { policy, failure: detail(certificateResult(err.code), where, err.code ? { failureReasonCode: err.code } : {}) };
}
