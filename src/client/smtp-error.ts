/**
 * What can go wrong when Petrel talks SMTP to another server, as one error
 * type with a `kind` a caller can act on:
 *
 * - "connect": the TCP connection could not be made (refused, no route,
 *   unknown name — `code` is the errno), or it was dropped later (`phase`
 *   then names the command in progress).
 * - "timeout": no answer within the RFC 5321 §4.5.3.2 time for `phase`.
 * - "tls": STARTTLS required but not offered, or the TLS handshake or
 *   certificate check failed (`code` is Node's, e.g. ERR_TLS_CERT_ALTNAME_INVALID).
 * - "protocol": the server broke the protocol (malformed reply, …).
 * - "reply": the server refused with `reply` (greeting, EHLO, MAIL, a 421, …).
 * - "auth": authentication failed (`reply`, e.g. 535) or was impossible.
 */
import { replyText, type Reply } from "../smtp/reply.ts";
import type { DaneFailure } from "./dane.ts";

export type SmtpClientErrorKind = "connect" | "timeout" | "tls" | "protocol" | "reply" | "auth";

export interface SmtpClientErrorDetails {
  reply?: Reply;
  code?: string;
  host?: string;
  port?: number;
  timeoutMs?: number;
  cause?: unknown;
  /** Recipients refused when none was accepted (thrown by the `send()` API). */
  rejected?: { address: string; reply: Reply }[];
  /** LMTP: recipients whose reply after the end of data came before the failure (RFC 2033 §4.2: they are decided). */
  decided?: readonly { address: string; reply: Reply }[];
  /** Why DANE authentication failed, as a TLS-RPT result type (RFC 8460 §4.3). */
  daneFailure?: DaneFailure;
}

export class SmtpClientError extends Error {
  override name = "SmtpClientError";
  readonly kind: SmtpClientErrorKind;
  /** "connect", "greeting", "EHLO", "HELO", "STARTTLS", "TLS", "AUTH", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT". */
  readonly phase: string;
  readonly reply?: Reply;
  /** errno or TLS error code, when there was one. */
  readonly code?: string;
  readonly host?: string;
  readonly port?: number;
  readonly timeoutMs?: number;
  readonly rejected?: { address: string; reply: Reply }[];
  readonly decided?: readonly { address: string; reply: Reply }[];
  readonly daneFailure?: DaneFailure;
  readonly #what: string;
  readonly #details: SmtpClientErrorDetails;

  constructor(kind: SmtpClientErrorKind, phase: string, message: string, details: SmtpClientErrorDetails = {}) {
    const full = details.reply ? `${message}: ${replyText(details.reply)}` : message;
    super(full, details.cause === undefined ? undefined : { cause: details.cause });
    this.#what = message;
    this.#details = details;
    this.kind = kind;
    this.phase = phase;
    if (details.reply) this.reply = details.reply;
    if (details.code) this.code = details.code;
    if (details.host !== undefined) this.host = details.host;
    if (details.port !== undefined) this.port = details.port;
    if (details.timeoutMs !== undefined) this.timeoutMs = details.timeoutMs;
    if (details.rejected) this.rejected = details.rejected;
    if (details.decided) this.decided = details.decided;
    if (details.daneFailure) this.daneFailure = details.daneFailure;
  }

  /** The same failure, knowing which recipients were decided before it. */
  withDecided(decided: readonly { address: string; reply: Reply }[]): SmtpClientError {
    return new SmtpClientError(this.kind, this.phase, this.#what, { ...this.#details, decided });
  }
}

/**
 * The RFC 3463 status a delivery agent should record for a network failure:
 * "4.4.1" (no answer from host: refused, unreachable, connect timeout) or
 * "4.4.2" (bad connection: dropped or timed out once the conversation had
 * started). Undefined for other errors (their reply says it).
 */
export function networkStatus(err: SmtpClientError): "4.4.1" | "4.4.2" | undefined {
  if (err.kind !== "connect" && err.kind !== "timeout") return undefined;
  return err.phase === "connect" ? "4.4.1" : "4.4.2";
}
