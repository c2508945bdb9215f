/**
 * Carrying one message to some of its recipients at one server, over SMTP
 * or LMTP — the part the remote and the LMTP agents share:
 *
 * - a session from the connection cache (RSET before reuse) or a new one;
 * - the agent's checks on the session before anything is sent (`prepare`:
 *   SMTPUTF8, SIZE, REQUIRETLS, AUTH);
 * - transactions of at most the server's RFC 9422 RCPTMAX recipients, and a
 *   new session before its MAILMAX would be passed;
 * - a reused session that the server ends (421 or a close) before it said
 *   anything about this transaction: the transaction goes again at once on
 *   a fresh session and counts as nothing;
 * - NOTIFY, ORCPT, RET and ENVID passed on when the server offers DSN
 *   (RFC 3461 §4), and the success outcome saying who reports it (outcome.ts);
 * - every reply and failure mapped to outcomes by outcome-policy.ts.
 */
import type { ConnectionCache } from "../client/connection-cache.ts";
import { SmtpClientError, type MailParams, type SmtpConnection, type TransactionRecipient } from "../client/smtp-connection.ts";
import type { DeliveryOutcome, DeliveryRequest, SuccessReport } from "../queue/ports.ts";
import { hasNonAscii } from "./dsn-fields.ts";
import { endedReusedSession, messageOutcome, recipientOutcome, trouble, type Peer, type Trouble } from "./outcome-policy.ts";

/** The agent's verdict on a ready session, before any transaction. */
export type Preflight =
  | { readonly proceed: true; readonly refused?: ReadonlyMap<string, DeliveryOutcome> }
  | { readonly proceed: false; readonly outcome: DeliveryOutcome; readonly nextHost: boolean };

export interface TransferTarget extends Peer {
  /** Connection-cache key: everything the session was opened with. */
  readonly key: string;
  open(): Promise<SmtpConnection>;
  /** What a success is when the server does not offer DSN: "relayed" (an SMTP next hop) or "final" (LMTP: the mailbox). */
  readonly withoutDsn: "relayed" | "final";
  prepare(session: SmtpConnection): Promise<Preflight>;
}

export interface TransferResult {
  /** Recipients decided here. */
  readonly outcomes: Map<string, DeliveryOutcome>;
  /** When set, the other recipients were not decided: the outcome they get if no other host takes them. */
  readonly undecided?: DeliveryOutcome;
}

export async function transfer(cache: ConnectionCache, target: TransferTarget, request: DeliveryRequest, recipients: readonly string[]): Promise<TransferResult> {
  const outcomes = new Map<string, DeliveryOutcome>();
  let todo = [...recipients];
  const end = (t: Trouble): TransferResult => {
    if (t.nextHost) return { outcomes, undecided: t.outcome };
    for (const r of todo) outcomes.set(r, t.outcome);
    return { outcomes };
  };
  let session: SmtpConnection | undefined;
  while (todo.length > 0) {
    if (!session) {
      session = await cache.take(target.key);
      if (!session) {
        try {
          session = await target.open();
        } catch (err) {
          return end(trouble(err, target, request.queueId));
        }
      }
      const verdict = await target.prepare(session);
      if (!verdict.proceed) {
        await cache.release(target.key, session);
        return end({ ...verdict, outcome: carried(verdict.outcome, session) });
      }
      for (const [r, o] of verdict.refused ?? []) outcomes.set(r, carried(o, session));
      todo = todo.filter((r) => !outcomes.has(r));
      if (todo.length === 0) break;
    }
    const { limits } = session.capabilities;
    if (limits.mailMax !== undefined && session.transactions >= limits.mailMax) {
      // RFC 9422: this session has carried all the transactions the server allows.
      void session.quit();
      session = undefined;
      continue;
    }
    const batch = todo.slice(0, limits.rcptMax ?? todo.length);
    const reused = session.transactions > 0;
    const success: SuccessReport = session.capabilities.dsn ? "passed" : target.withoutDsn;
    const on = session;
    try {
      const result = await session.send({
        mailFrom: request.envelope.mailFrom,
        mailParams: mailParams(request),
        recipients: batch.map((address) => dsnParameters(request, address)),
        message: () => request.body(),
      });
      for (const r of result.recipients) outcomes.set(r.address, carried(recipientOutcome(r, success, target), on));
      todo = todo.slice(batch.length);
    } catch (err) {
      // A refused sender leaves the session fit for the next message; anything else ended it.
      if (session.usable) await cache.release(target.key, session);
      else session.close();
      session = undefined;
      if (reused && endedReusedSession(err)) continue;
      // LMTP: recipients whose reply after the end of data came before the failure are decided (RFC 2033 §4.2).
      for (const d of err instanceof SmtpClientError ? err.decided ?? [] : []) outcomes.set(d.address, carried(messageOutcome(d.reply, success, target), on));
      todo = todo.filter((r) => !outcomes.has(r));
      const t = trouble(err, target, request.queueId);
      return end({ ...t, outcome: carried(t.outcome, on) });
    }
  }
  if (session) await cache.release(target.key, session);
  return { outcomes };
}

/** The outcome with the session it was decided on: the server's address and the TLS version (the message trace shows them). */
function carried(outcome: DeliveryOutcome, session: SmtpConnection): DeliveryOutcome {
  const tls = session.tls?.version;
  return { ...outcome, remoteAddress: session.remote.address, ...(tls ? { tls } : {}) };
}

/** RFC 6531: SMTPUTF8 when the message was received with it or an address needs it (sent only to a server that offers it). */
export function needsSmtpUtf8(request: DeliveryRequest): boolean {
  const env = request.envelope;
  return env.smtputf8 || hasNonAscii(env.mailFrom) || request.recipients.some(hasNonAscii);
}

function mailParams(request: DeliveryRequest): MailParams {
  const env = request.envelope;
  return {
    ...(env.size !== undefined ? { size: env.size } : {}),
    ...(env.body ? { body: env.body } : {}),
    ...(needsSmtpUtf8(request) ? { smtputf8: true } : {}),
    ...(env.ret ? { ret: env.ret } : {}),
    ...(env.envid ? { envid: env.envid } : {}),
    ...(env.requireTls ? { requireTls: true } : {}),
  };
}

/**
 * NOTIFY and ORCPT of the envelope recipient this address was received as
 * (an alias or sub-address target carries its original's); the client sends
 * them only to a server that offers DSN. Without an ORCPT, a target that
 * differs from what was received gets one naming the received address
 * (RFC 3461 §4.2 lets a relay add it, with exactly that address), so the
 * next hop's report names what the sender wrote.
 */
function dsnParameters(request: DeliveryRequest, address: string): TransactionRecipient {
  const original = request.originalRecipients?.get(address) ?? address;
  const r = request.envelope.recipients.find((x) => x.address === original);
  const orcpt = r?.orcpt ?? (original !== address ? `${hasNonAscii(original) ? "utf-8" : "rfc822"};${original}` : undefined);
  return { address, ...(r?.notify ? { notify: r.notify } : {}), ...(orcpt ? { orcpt } : {}) };
}
