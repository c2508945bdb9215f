import type { Now } from "../mail/clock.ts";
import type { Logger } from "pino";
import { reply, type Reply } from "../smtp/reply.ts";
import type { Envelope, Mailbox } from "../mail/envelope.ts";
import type { MailParameters, RcptParameters } from "../smtp/mail-parameters.ts";
import { formatMailbox } from "../smtp/address.ts";
import { HeaderSection } from "../smtp/header-section.ts";
import { messageId, protocolKeyword, receivedHeader, rfc5322Date } from "../smtp/trace-headers.ts";
import type { MessageSink, SessionEvent, SessionHandler, SessionState, Transaction } from "../smtp/session-handler.ts";
import { recipientDecision, resolvePostmaster, senderDecision } from "../policy/relay.ts";
import type { ListenerRole } from "../mail/envelope.ts";
import type { Spool, SpoolWriter } from "../spool/spool.ts";
import { SpoolError } from "../spool/spool.ts";
import type { Accounts } from "../accounts/account-store.ts";
import type { RecipientDirectory } from "../policy/relay.ts";
import { isSaslMechanismName, startExchange } from "../sasl/mechanisms.ts";
import type { SaslExchange } from "../sasl/exchange.ts";
import type { ClientLimits } from "./client-limits.ts";

/**
 * The server side of the engine's SessionHandler for one connection: asks
 * `policy/` for decisions, streams accepted messages into the spool with the
 * trace fields an MTA adds, and writes the log lines that carry the queue id.
 */

export interface MessageHandlerContext {
  readonly role: ListenerRole;
  readonly hostname: string;
  readonly primaryDomain: string;
  readonly spool: Spool;
  readonly accounts: Accounts & RecipientDirectory;
  readonly clientLimits: ClientLimits;
  readonly headerSizeLimit: number;
  /** A message with this many Received: fields, ours included, is a mail loop (delivery.maxReceived). */
  readonly maxReceived: number;
  readonly authFailuresPerConnection: number;
  readonly senderMustMatchLogin: boolean;
  readonly log: Logger;
  readonly client: { readonly address: string; readonly port: number };
  readonly clock: Now;
  /** Told about each message once it is durably in the spool (the queue manager listens). */
  readonly onMessage?: (id: string) => void;
}

/** Body bytes are gathered up to this size before a write to the spool. */
const WRITE_BATCH = 64 * 1024;

export class MessageHandler implements SessionHandler {
  private readonly ctx: MessageHandlerContext;
  private authFailures = 0;

  constructor(ctx: MessageHandlerContext) {
    this.ctx = ctx;
  }

  mail(state: SessionState, from: Mailbox | null, _params: MailParameters): Reply | undefined {
    const refusal = senderDecision(
      from, state.authUser, (u, a) => this.ctx.accounts.mayUseSender(u, a), this.ctx.senderMustMatchLogin && this.ctx.role !== "mx",
    );
    if (refusal) this.ctx.log.info({ from: from ? formatMailbox(from) : "<>", user: state.authUser, reply: refusal.lines[0] }, "sender refused");
    return refusal;
  }

  async rcpt(state: SessionState, tx: Transaction, to: Mailbox, _params: RcptParameters): Promise<Reply | undefined> {
    const rcpt = resolvePostmaster(to, this.ctx.primaryDomain);
    let refusal: Reply | undefined;
    try {
      refusal = await recipientDecision(rcpt, state.authUser, this.ctx.accounts);
    } catch (err) {
      this.ctx.log.error({ err }, "recipient lookup failed");
      return reply(451, "4.3.0", "Error: temporary lookup failure, try again later");
    }
    if (refusal) {
      this.ctx.log.info({ from: tx.mailFrom ? formatMailbox(tx.mailFrom) : "<>", to: formatMailbox(rcpt), reply: refusal.lines[0] }, "recipient refused");
    }
    return refusal;
  }

  async openMessage(state: SessionState, tx: Transaction): Promise<MessageSink | Reply> {
    let writer: SpoolWriter;
    try {
      writer = await this.ctx.spool.create();
    } catch (err) {
      this.ctx.log.error({ err }, "spool create failed");
      return storageFailure;
    }
    const esmtp = state.esmtp;
    const protocol = protocolKeyword({ esmtp, tls: state.tls !== null, authenticated: state.authUser !== null, smtputf8: tx.mailParams.smtputf8 });
    const recipients = tx.recipients.map((r) => resolvePostmaster(r.mailbox, this.ctx.primaryDomain));
    const received = receivedHeader({
      helo: state.helo ?? "unknown",
      clientAddress: this.ctx.client.address,
      by: this.ctx.hostname,
      protocol,
      queueId: writer.id,
      tls: state.tls ?? undefined,
      recipient: recipients.length === 1 ? formatMailbox(recipients[0]) : undefined,
      date: new Date(this.ctx.clock.now()),
    });
    const submission = this.ctx.role !== "mx";
    const header = new HeaderSection({
      sizeLimit: this.ctx.headerSizeLimit,
      // RFC 6409 §8.2, §8.3: a submission server may add a missing Message-ID and Date.
      additions: submission ? (fields) => this.submissionAdditions(fields, writer.id) : undefined,
    });
    const envelopeOf = (size: number): Envelope => ({
      size,
      mailFrom: tx.mailFrom ? formatMailbox(tx.mailFrom) : "",
      recipients: tx.recipients.map((r, i) => ({
        address: formatMailbox(recipients[i]),
        ...(r.params.notify ? { notify: r.params.notify } : {}),
        ...(r.params.orcpt ? { orcpt: r.params.orcpt } : {}),
      })),
      ...(tx.mailParams.size !== undefined ? { declaredSize: tx.mailParams.size } : {}),
      ...(tx.mailParams.body ? { body: tx.mailParams.body } : {}),
      smtputf8: tx.mailParams.smtputf8,
      ...(tx.mailParams.ret ? { ret: tx.mailParams.ret } : {}),
      ...(tx.mailParams.envid ? { envid: tx.mailParams.envid } : {}),
      requireTls: tx.mailParams.requireTls,
      client: {
        address: this.ctx.client.address,
        port: this.ctx.client.port,
        helo: state.helo ?? "",
        protocol,
        ...(state.tls ? { tls: state.tls } : {}),
        ...(state.authUser ? { authUser: state.authUser } : {}),
        role: this.ctx.role,
      },
      receivedAt: this.ctx.clock.now(),
      hopCount: hopCount(header),
    });
    return new SpoolSink(writer, header, Buffer.from(received, "utf8"), envelopeOf, this.ctx.maxReceived, this.ctx.log, this.ctx.onMessage);
  }

  startAuth(_state: SessionState, mechanism: string): SaslExchange | undefined {
    if (!isSaslMechanismName(mechanism)) return undefined;
    const exchange = startExchange(mechanism, this.ctx.accounts);
    return {
      step: async (response) => {
        try {
          return await exchange.step(response);
        } catch (err) {
          this.ctx.log.error({ err }, "authentication backend failed");
          return { kind: "failure", reason: "malformed" };
        }
      },
    };
  }

  authFailed(_state: SessionState): boolean {
    this.authFailures++;
    const banned = this.ctx.clientLimits.authFailed(this.ctx.client.address);
    this.ctx.log.warn({ failures: this.authFailures, banned }, "authentication failed");
    return banned || this.authFailures >= this.ctx.authFailuresPerConnection;
  }

  event(name: SessionEvent, detail?: Record<string, unknown>): void {
    switch (name) {
      case "auth-success":
        this.ctx.log.info(detail, "authenticated");
        break;
      case "pipelining-violation":
      case "protocol-error":
      case "line-too-long":
      case "message-refused":
        this.ctx.log.info(detail, name);
        break;
      case "tls-requested":
        this.ctx.log.debug(detail, "STARTTLS");
        break;
      default:
        break;
    }
  }

  private submissionAdditions(fields: ReadonlyMap<string, number>, queueId: string): string {
    let extra = "";
    if (!fields.has("message-id")) extra += `Message-ID: ${messageId(queueId, this.ctx.hostname)}\r\n`;
    if (!fields.has("date")) extra += `Date: ${rfc5322Date(new Date(this.ctx.clock.now()))}\r\n`;
    return extra;
  }
}

const storageFailure = reply(451, "4.3.0", "Error: queue file write error, try again later");

/** Received: fields the stored message carries: the client's (counted as they stream past) and ours. */
function hopCount(header: HeaderSection): number {
  return (header.fields.get("received") ?? 0) + 1;
}

/**
 * A message on its way into the spool: the Received field first, then the
 * content as the header watcher passes it, in batches; committed only at
 * the end, and only then is the 250 given.
 *
 * Mail loops are stopped where mail enters (RFC 5321 §6.3, as Postfix checks
 * hopcount_limit when mail is received): once the header section carries
 * `maxReceived` Received: fields counting ours, nothing more is stored and
 * the end of data is refused with 554 5.4.6 — the client keeps the message
 * and reports it, so nothing bounces back and forth and no one here
 * sends a bounce (no backscatter).
 */
class SpoolSink implements MessageSink {
  private readonly writer: SpoolWriter;
  private readonly header: HeaderSection;
  private readonly envelopeOf: (size: number) => Envelope;
  private readonly maxReceived: number;
  private readonly log: Logger;
  private batch: Buffer[] = [];
  private batched = 0;
  private size = 0;
  private failed: unknown = null;
  private readonly onCommitted: ((id: string) => void) | undefined;

  constructor(writer: SpoolWriter, header: HeaderSection, received: Buffer, envelopeOf: (size: number) => Envelope, maxReceived: number, log: Logger, onCommitted?: (id: string) => void) {
    this.onCommitted = onCommitted;
    this.writer = writer;
    this.header = header;
    this.envelopeOf = envelopeOf;
    this.maxReceived = maxReceived;
    this.log = log;
    this.add(received);
  }

  private get looping(): boolean {
    return hopCount(this.header) >= this.maxReceived;
  }

  async write(chunk: Buffer): Promise<void> {
    if (this.failed || this.header.tooLarge) return;
    const parts = this.header.feed(chunk);
    // A loop: the rest is only counted (the reply says how many), never stored.
    if (this.looping) return;
    for (const part of parts) this.add(part);
    if (this.batched >= WRITE_BATCH) await this.flush();
  }

  async end(): Promise<Reply> {
    for (const part of this.header.finish()) this.add(part);
    if (this.header.tooLarge) {
      await this.abort();
      return reply(552, "5.3.4", "Error: message header section too large");
    }
    if (this.looping) {
      const hops = hopCount(this.header);
      await this.abort();
      const envelope = this.envelopeOf(this.size);
      this.log.info({ from: envelope.mailFrom || "<>", to: envelope.recipients.map((r) => r.address), hops, limit: this.maxReceived }, "mail loop refused");
      return reply(554, "5.4.6", `Error: mail forwarding loop: too many hops (${hops} Received: fields, limit ${this.maxReceived})`);
    }
    await this.flush();
    if (this.failed) return this.storageError(this.failed);
    const envelope = this.envelopeOf(this.size);
    try {
      await this.writer.commit(envelope);
    } catch (err) {
      return this.storageError(err);
    }
    this.log.info({
      queueId: this.writer.id,
      from: envelope.mailFrom || "<>",
      to: envelope.recipients.map((r) => r.address),
      size: this.size,
      user: envelope.client.authUser,
    }, "message accepted");
    this.onCommitted?.(this.writer.id);
    return reply(250, "2.0.0", `Ok: queued as ${this.writer.id}`);
  }

  async abort(): Promise<void> {
    this.batch = [];
    this.batched = 0;
    await this.writer.abort();
  }

  private add(b: Buffer): void {
    if (b.length === 0) return;
    this.batch.push(b);
    this.batched += b.length;
    this.size += b.length;
  }

  private async flush(): Promise<void> {
    if (this.batched === 0 || this.failed) return;
    const data = this.batch.length === 1 ? this.batch[0] : Buffer.concat(this.batch, this.batched);
    this.batch = [];
    this.batched = 0;
    try {
      await this.writer.write(data);
    } catch (err) {
      this.failed = err;
    }
  }

  private async storageError(err: unknown): Promise<Reply> {
    this.log.error({ queueId: this.writer.id, err: err instanceof SpoolError ? { message: err.message, code: err.code } : err }, "message not stored");
    await this.writer.abort().catch(() => {});
    return storageFailure;
  }
}
