/**
 * What a reply or a failure of the SMTP/LMTP client means for the
 * recipients, in one place for the remote and the LMTP agents (Postfix's
 * smtp_trouble.c is the model):
 *
 * - A reply decides: 2xx delivered, 4xx deferred, 5xx failed, with the
 *   server's own reply as the diagnostic (a DSN's "Diagnostic-Code: smtp;
 *   550 5.1.1 …", RFC 3464 §2.3.6) and its enhanced code, or X.0.0 when it
 *   gave none (RFC 3463).
 * - Trouble with a host (it cannot be reached, it refuses the session, its
 *   TLS or our AUTH fails, it drops or stalls the conversation, it refuses
 *   the sender for now) leaves the recipients not yet decided free to go to
 *   the next MX host (`nextHost`), with the outcome they get if none is
 *   left: 4.4.1 when no connection could be made, 4.4.2 when it was lost or
 *   timed out, 4.7.x for TLS and AUTH, or the server's reply.
 * - A permanent refusal of the sender (5xx to MAIL) would be the same at
 *   every MX: it decides every recipient at once.
 * - The queued message could not be read: 4.3.0, the conversation
 *   abandoned without the final dot.
 */
import { replyText, type Reply } from "../smtp/reply.ts";
import { SmtpClientError, networkStatus, type RecipientResult } from "../client/smtp-connection.ts";
import type { DeliveryOutcome, SuccessReport } from "../queue/ports.ts";

/** Whom the outcomes name: `where` in diagnostics ("mx.b.test[192.0.2.1]"), `remoteMta` as a DSN's Remote-MTA. */
export interface Peer {
  readonly where: string;
  readonly remoteMta: string;
}

export interface Trouble {
  readonly outcome: DeliveryOutcome;
  /** The trouble is this host's: undecided recipients may be tried at the next one. */
  readonly nextHost: boolean;
}

export function deferred(enhanced: string, diagnostic: string, remoteMta?: string): DeliveryOutcome {
  return { status: "deferred", enhanced, diagnostic, ...(remoteMta ? { remoteMta } : {}) };
}

export function failed(enhanced: string, diagnostic: string, remoteMta?: string): DeliveryOutcome {
  return { status: "failed", enhanced, diagnostic, ...(remoteMta ? { remoteMta } : {}) };
}

/** A reply that refuses: 5xx failed, 4xx deferred, anything else unexpected (deferred 4.5.0). */
export function replyOutcome(r: Reply, remoteMta: string): DeliveryOutcome {
  const text = replyText(r);
  if (r.code >= 500 && r.code < 600) return failed(r.status?.startsWith("5.") ? r.status : "5.0.0", text, remoteMta);
  if (r.code >= 400 && r.code < 500) return deferred(r.status?.startsWith("4.") ? r.status : "4.0.0", text, remoteMta);
  return deferred("4.5.0", `${text}: unexpected reply`, remoteMta);
}

/**
 * The outcome of an accepted recipient from the reply that decided the
 * message for it (`final`). `success` says who reports a success (outcome.ts).
 */
export function messageOutcome(final: Reply | undefined, success: SuccessReport, peer: Peer): DeliveryOutcome {
  if (final === undefined) return deferred("4.5.0", `${peer.where} accepted the recipient but gave no reply for the message`, peer.remoteMta);
  if (final.code < 200 || final.code >= 300) return replyOutcome(final, peer.remoteMta);
  return { status: "delivered", dsn: success, detail: replyText(final), remoteMta: peer.remoteMta };
}

/** A recipient's outcome from its RCPT reply, then from the reply that decided the message. */
export function recipientOutcome(r: RecipientResult, success: SuccessReport, peer: Peer): DeliveryOutcome {
  return r.reply.code >= 200 && r.reply.code < 300 ? messageOutcome(r.final, success, peer) : replyOutcome(r.reply, peer.remoteMta);
}

const DOING: Readonly<Record<string, string>> = {
  greeting: "waiting for the greeting",
  EHLO: "sending EHLO", LHLO: "sending LHLO", HELO: "sending HELO",
  STARTTLS: "starting TLS", TLS: "starting TLS",
  AUTH: "authenticating",
  MAIL: "sending MAIL FROM", RCPT: "sending RCPT TO", DATA: "sending the message",
  RSET: "sending RSET", NOOP: "sending NOOP", QUIT: "sending QUIT", idle: "idle",
};

/** What `err` (thrown by the client while carrying `queueId`) means for the recipients not yet decided. */
export function trouble(err: unknown, peer: Peer, queueId: string): Trouble {
  if (!(err instanceof SmtpClientError)) {
    // The client passes through only failures of the message stream: the spool could not be read.
    const why = err instanceof Error ? err.message : String(err);
    return { outcome: deferred("4.3.0", `cannot read queued message ${queueId}: ${why}`), nextHost: false };
  }
  const { where, remoteMta } = peer;
  switch (err.kind) {
    case "auth":
      // Our credentials for a relay are wrong: keep the mail until they are fixed (as Postfix does).
      return { outcome: deferred("4.7.0", `authentication to ${where} failed: ${err.reply ? replyText(err.reply) : err.message}`, remoteMta), nextHost: true };
    case "reply": {
      const o = replyOutcome(err.reply!, remoteMta);
      // A permanent refusal of the sender applies at every MX host.
      return { outcome: o, nextHost: !(err.phase === "MAIL" && o.status === "failed") };
    }
    case "tls":
      if (err.reply) return { outcome: replyOutcome(err.reply, remoteMta), nextHost: true };
      // RFC 3463 X.7.5: cryptographic failure.
      return { outcome: deferred("4.7.5", `connect to ${where}: TLS failed: ${err.message}`), nextHost: true };
    case "connect":
    case "timeout": {
      const doing = DOING[err.phase] ?? err.phase;
      if (err.phase === "connect") {
        return { outcome: deferred("4.4.1", `connect to ${where}: ${err.kind === "timeout" ? "timed out" : err.code ?? err.message}`), nextHost: true };
      }
      const text = err.kind === "timeout" ? `conversation with ${where} timed out while ${doing}` : `lost connection with ${where} while ${doing}`;
      return { outcome: deferred(networkStatus(err) ?? "4.4.2", text, remoteMta), nextHost: true };
    }
    case "protocol":
      // RFC 3463 X.5.0: other or undefined protocol status.
      return { outcome: deferred("4.5.0", `${where}: ${err.message}`, remoteMta), nextHost: true };
  }
}

/**
 * The server ended a session that had already carried a transaction (a 421,
 * or a close, before it said anything about this one): RFC 9422 MAILMAX or
 * an idle limit, not a verdict on the message — it goes again at once on a
 * fresh session.
 */
export function endedReusedSession(err: unknown): boolean {
  if (!(err instanceof SmtpClientError) || err.decided) return false;
  if (err.kind === "reply") return err.reply?.code === 421 && (err.phase === "MAIL" || err.phase === "RSET" || err.phase === "idle");
  return err.kind === "connect" && (err.phase === "MAIL" || err.phase === "RSET" || err.phase === "idle");
}

/** The same outcome for every recipient (a problem before any of them could be tried). */
export function sameOutcome(recipients: readonly string[], outcome: DeliveryOutcome): Map<string, DeliveryOutcome> {
  return new Map(recipients.map((r) => [r, outcome]));
}
