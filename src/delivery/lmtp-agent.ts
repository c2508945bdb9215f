/**
 * The LMTP delivery agent (RFC 2033): hands a message to a local mail store
 * (Dovecot, Cyrus, ...) over TCP or a UNIX-domain socket, through the one
 * client (client/smtp-connection.ts with protocol "lmtp"):
 *
 *   LHLO → MAIL FROM (SIZE, BODY, SMTPUTF8, RET, ENVID only when advertised)
 *   → RCPT TO per recipient, each with its own reply → DATA and the
 *   dot-stuffed body → after the final dot, ONE reply per accepted
 *   recipient, in RCPT order (RFC 2033 §4.2).
 *
 * Each recipient's outcome follows its own reply (delivery/outcome-policy.ts).
 * Trouble with the connection defers every recipient still open: 4.4.1 when
 * it cannot be made, 4.4.2 when it is lost or times out. A server without
 * SMTPUTF8 refuses only the recipients whose address needs it (5.6.7): the
 * store keeps the message as it is, so the others can have it.
 *
 * An LMTP server is the final delivery point: a success is "final" (we send
 * the success DSN) unless the server offers DSN, in which case NOTIFY and
 * ORCPT are passed on and the report is its to send ("passed").
 */
import type { DeliveryAgent, DeliveryOutcome, DeliveryOutcomes, DeliveryRequest } from "../queue/ports.ts";
import { SmtpConnection, type Timeouts } from "../client/smtp-connection.ts";
import { ConnectionCache, type CacheTimer } from "../client/connection-cache.ts";
import { hasNonAscii } from "./dsn-fields.ts";
import { failed } from "./outcome-policy.ts";
import { transfer, type Preflight, type TransferTarget } from "./transfer.ts";

export type LmtpTarget = { readonly host: string; readonly port: number } | { readonly path: string };

export interface LmtpAgentOptions {
  /** Where the LMTP server listens: TCP host and port, or a UNIX socket path. */
  readonly target: LmtpTarget;
  /** Our name for LHLO. */
  readonly lhloName: string;
  /** Per-stage limits (ms); RFC 5321 §4.5.3.2's by default. */
  readonly timeouts?: Partial<Timeouts>;
  /** Keep an idle session this long for the next delivery (ms); default 0: QUIT after each. */
  readonly reuseMs?: number;
  /** Schedules the end of idle sessions (default: real timers). */
  readonly timer?: CacheTimer;
}

export class LmtpAgent implements DeliveryAgent {
  private readonly options: LmtpAgentOptions;
  private readonly where: string;
  private readonly cache: ConnectionCache;

  constructor(options: LmtpAgentOptions) {
    this.options = options;
    const t = options.target;
    this.where = "path" in t ? t.path : `[${t.host}]:${t.port}`;
    this.cache = new ConnectionCache({ idleMs: options.reuseMs ?? 0, ...(options.timer ? { timer: options.timer } : {}) });
  }

  async deliver(request: DeliveryRequest): Promise<DeliveryOutcomes> {
    if (request.recipients.length === 0) return new Map();
    const result = await transfer(this.cache, this.lmtpTarget(request), request, request.recipients);
    const outcomes = result.outcomes;
    // One server: trouble that would let the others try another host decides them here.
    if (result.undecided) for (const r of request.recipients) if (!outcomes.has(r)) outcomes.set(r, result.undecided);
    return outcomes;
  }

  /** QUIT every cached session (shutdown). */
  close(): Promise<void> {
    return this.cache.close();
  }

  private lmtpTarget(request: DeliveryRequest): TransferTarget {
    const t = this.options.target;
    const where = this.where;
    return {
      key: `lmtp|${where}`,
      where,
      remoteMta: where,
      withoutDsn: "final",
      open: () => SmtpConnection.connect({
        ...("path" in t ? { host: t.path, port: 0, path: t.path } : { host: t.host, port: t.port }),
        protocol: "lmtp",
        tls: "none",
        verifyCertificate: false,
        heloName: this.options.lhloName,
        ...(this.options.timeouts ? { timeouts: this.options.timeouts } : {}),
      }),
      prepare: async (session): Promise<Preflight> => {
        if (session.capabilities.smtputf8) return { proceed: true };
        // RFC 6531 §3.2: without SMTPUTF8 an address that needs it cannot be given to the server.
        if (hasNonAscii(request.envelope.mailFrom)) {
          return { proceed: false, nextHost: false, outcome: failed("5.6.7", `${where} does not support SMTPUTF8, needed for the sender ${request.envelope.mailFrom}`, where) };
        }
        const refused = new Map<string, DeliveryOutcome>();
        for (const r of request.recipients) {
          if (hasNonAscii(r)) refused.set(r, failed("5.6.7", `${where} does not support SMTPUTF8, needed for the recipient ${r}`, where));
        }
        return { proceed: true, refused };
      },
    };
  }
}
