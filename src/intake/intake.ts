import type { Logger } from "pino";
import type { Now } from "../mail/clock.ts";
import type { ClientInfo, Envelope, MailParameters, Recipient } from "../mail/envelope.ts";
import { formatField, type ReceivedField } from "../mail/header-field.ts";
import { HeaderSection } from "../smtp/header-section.ts";
import { messageId, receivedHeader, rfc5322Date } from "../smtp/trace-headers.ts";
import { SpoolError, type QueueId, type Spool, type SpoolWriter } from "../spool/spool.ts";
import { storedSize } from "../spool/stored-message.ts";
import type { LocalMessage } from "../queue/ports.ts";
import type { InflowGate } from "../queue/inflow.ts";
import type { Decided } from "../policy/merge.ts";
import { changeRecipients } from "./recipients.ts";
import type { MessageSigner } from "./message-signer.ts";
import type { RelaxedBodyHash } from "../mailauth/body-hash.ts";
import { noEvents, type EventSink } from "../events/petrel-event.ts";

/**
 * The one way into the spool (Postfix's cleanup): mail received over SMTP,
 * and messages Petrel composes itself (DSNs), enter here. Only this code
 * builds an `Envelope`, adds the trace fields (our Received:, and on
 * submission a missing Message-ID: and Date:), writes the spool, stores the
 * header fields decided at the end of data with the envelope, and tells the
 * queue — once the message is on stable storage, never before.
 */

export interface IntakeOptions {
  readonly spool: Spool;
  /** Our host name: the Received: field's "by", the Message-ID's domain. */
  readonly hostname: string;
  /** Where "<Postmaster>" and recipients added without a domain go (RFC 5321 §4.1.1.3). */
  readonly primaryDomain: string;
  /** Largest header section accepted (limits.headerSize). */
  readonly headerSizeLimit: number;
  readonly clock: Now;
  readonly log: Logger;
  /** Told the queue id of each message once it is durably in the spool (the queue manager listens). */
  readonly onCommitted?: (id: QueueId) => void;
  /** DKIM signatures and ARC sets on the messages that get them (message-signer.ts); none without. */
  readonly signer?: MessageSigner;
  /** Told each message accepted, and how long its commit took (the message trace, metrics). */
  readonly events?: EventSink;
  /** Paces new messages while the queue falls behind (queue/inflow.ts); received mail waits for it at MAIL. */
  readonly inflow?: InflowGate;
}

/** What the intake needs to know about a message received over SMTP to build its envelope. */
export interface MessageOrigin {
  /** The reverse-path; "" is the null sender. */
  readonly mailFrom: string;
  readonly recipients: readonly Recipient[];
  readonly params: MailParameters;
  readonly client: ClientInfo;
  /** Add a missing Message-ID: and Date: (RFC 6409 §8.2, §8.3: a submission server may). */
  readonly submission: boolean;
}

/** Body bytes are gathered up to this size before a write to the spool. */
const WRITE_BATCH = 64 * 1024;

export class Intake {
  private readonly options: IntakeOptions;

  constructor(options: IntakeOptions) {
    this.options = options;
  }

  get spool(): Spool {
    return this.options.spool;
  }

  /** The pacing of received mail, when the queue asks for it (Postfix in_flow_delay). */
  get inflow(): InflowGate | undefined {
    return this.options.inflow;
  }

  /**
   * Start a message received over SMTP: the spool entry is opened (the queue
   * id is known from now on) and the Received: field written first.
   * `observe` gets the content as it streams to the spool, Received: field
   * first; a promise it returns holds the stream. Rejects with SpoolError.
   */
  async begin(origin: MessageOrigin, observe?: (chunk: Buffer) => void | Promise<void>): Promise<IntakeMessage> {
    const message = await this.open(origin);
    await message.start(observe);
    return message;
  }

  /**
   * Open the spool entry only: the queue id is known (filters are told it at
   * DATA, as Postfix gives milters the `i` macro) and nothing is written
   * until `IntakeMessage.start`. Rejects with SpoolError.
   */
  async open(origin: MessageOrigin): Promise<IntakeMessage> {
    return new IntakeMessage(this.options, await this.options.spool.create(), origin);
  }

  /**
   * A message Petrel composed (a DSN): stored as it is, from the local
   * system, and handed to the queue. Resolves with its queue id once it is
   * on stable storage.
   */
  async submit(m: LocalMessage): Promise<QueueId> {
    const { spool, hostname, clock, log, onCommitted, signer } = this.options;
    const content = signer ? await signer.signComposed(m.content) : m.content;
    const writer = await spool.create();
    const envelope: Envelope = {
      mailFrom: m.mailFrom,
      recipients: m.recipients.map((address) => ({ address })),
      size: content.length,
      ...(m.needs8bit ? { body: "8BITMIME" as const } : {}),
      smtputf8: m.smtputf8,
      requireTls: false,
      client: { address: "127.0.0.1", port: 0, helo: hostname, protocol: "local", role: "local" },
      receivedAt: clock.now(),
    };
    const events = this.options.events ?? noEvents;
    try {
      await writer.write(content);
      const started = clock.now();
      await writer.commit(envelope);
      events.emit({ type: "spool-commit", durationMs: clock.now() - started });
    } catch (err) {
      await writer.abort().catch(() => {});
      throw err;
    }
    log.info({ queueId: writer.id, from: m.mailFrom || "<>", to: m.recipients, size: content.length, origin: "local" }, "message accepted");
    events.emit({
      type: "accepted", queueId: writer.id, origin: "local", from: m.mailFrom, to: m.recipients, size: content.length,
      client: { address: "127.0.0.1", helo: hostname, role: "local" },
    });
    onCommitted?.(writer.id);
    return writer.id;
  }
}

/**
 * A message on its way into the spool: the Received field first, then the
 * content as the header watcher passes it, in batches; committed only at
 * the end — and only then may the 250 be given.
 */
export class IntakeMessage {
  private readonly options: IntakeOptions;
  private readonly writer: SpoolWriter;
  private readonly origin: MessageOrigin;
  private observe: ((chunk: Buffer) => void | Promise<void>) | undefined;
  private readonly header: HeaderSection;
  private readonly received: ReceivedField;
  /** Hashed as it streams, when the message is to be DKIM-signed. */
  private readonly bodyHash: RelaxedBodyHash | undefined;
  private batch: Buffer[] = [];
  private batched = 0;
  private size = 0;
  private failed: unknown = null;

  constructor(options: IntakeOptions, writer: SpoolWriter, origin: MessageOrigin) {
    this.options = options;
    this.writer = writer;
    this.origin = origin;
    this.bodyHash = options.signer?.bodyHashFor(origin.client);
    const c = origin.client;
    const text = receivedHeader({
      helo: c.helo || "unknown",
      clientAddress: c.address,
      ...(c.hostname ? { clientHostname: c.hostname } : {}),
      by: options.hostname,
      protocol: c.protocol,
      queueId: writer.id,
      tls: c.tls,
      recipient: origin.recipients.length === 1 ? origin.recipients[0].address : undefined,
      date: new Date(options.clock.now()),
    });
    const raw = Buffer.from(text, "utf8");
    this.received = { name: "Received", value: text.slice("Received: ".length, -2), raw };
    this.header = new HeaderSection({
      sizeLimit: options.headerSizeLimit,
      collect: true,
      // RFC 6409 §8.2, §8.3: a submission server may add a missing Message-ID and Date.
      additions: origin.submission ? (fields) => this.submissionAdditions(fields) : undefined,
    });
  }

  get id(): QueueId {
    return this.writer.id;
  }

  /**
   * Writes our Received: field. `observe` gets the content as it streams to
   * the spool, Received: field first; a promise it returns holds the stream.
   * On failure the spool entry is given up and the SpoolError rethrown.
   */
  async start(observe?: (chunk: Buffer) => void | Promise<void>): Promise<void> {
    this.observe = this.bodyHash ? withHash(this.bodyHash, observe) : observe;
    try {
      await this.emit(this.received.raw);
    } catch (err) {
      await this.writer.abort().catch(() => {});
      throw err;
    }
  }

  /** Content (CRLF line ends, unstuffed). Returns a promise only when it has to wait (a spool write, an observer). */
  write(chunk: Buffer): void | Promise<void> {
    if (this.failed !== null || this.header.tooLarge) return;
    // Past the header section (nearly every chunk) the watcher is not asked: no array per chunk.
    const waiting = this.header.ended ? this.emit(chunk) : this.emitAll(this.header.feed(chunk), 0);
    if (this.batched >= WRITE_BATCH) return waiting ? waiting.then(() => this.flush()) : this.flush();
    return waiting;
  }

  /**
   * All content is in: the header section as stored (our Received: field
   * first), or null when it is over the size limit (552; nothing is stored).
   */
  async end(): Promise<ReceivedField[] | null> {
    if (!this.header.tooLarge && this.failed === null) {
      await this.emitAll(this.header.finish(), 0);
    }
    if (this.header.tooLarge) return null;
    return [this.received, ...this.header.collected];
  }

  /**
   * Make the message durable with what was decided at the end of data, then
   * tell the queue. Resolves with the envelope stored, or null when every
   * recipient was removed (nothing to deliver, nothing stored). Rejects
   * with SpoolError when the message could not be stored.
   */
  async commit(decided: Decided, header: readonly ReceivedField[]): Promise<Envelope | null> {
    const { log, primaryDomain, onCommitted } = this.options;
    await this.flush();
    if (this.failed !== null) throw toError(this.failed);
    const origin = this.origin;
    const changed = changeRecipients(origin.recipients, decided.recipients.add, decided.recipients.remove, primaryDomain);
    if (changed.invalid.length > 0) log.warn({ queueId: this.id, invalid: changed.invalid }, "recipients a check added are no addresses; ignored");
    if (changed.added.length > 0 || changed.removed.length > 0) log.info({ queueId: this.id, added: changed.added, removed: changed.removed }, "recipients changed by a check");
    if (changed.recipients.length === 0) {
      await this.abort();
      log.info({ queueId: this.id, from: origin.mailFrom || "<>" }, "message discarded: a check removed every recipient");
      return null;
    }
    const decidedFields = decided.prepend.map((f) => formatField(f) ?? "").join("");
    const signed = this.options.signer ? await this.options.signer.fields(this.id, header, decided, decidedFields, this.bodyHash) : "";
    const prepend = signed + decidedFields;
    const edits = decided.headerEdits;
    const p = origin.params;
    const envelope: Envelope = {
      size: storedSize(this.size, prepend, edits, header),
      mailFrom: origin.mailFrom,
      recipients: changed.recipients,
      ...(p.size !== undefined ? { declaredSize: p.size } : {}),
      ...(p.body ? { body: p.body } : {}),
      smtputf8: p.smtputf8,
      ...(p.ret ? { ret: p.ret } : {}),
      ...(p.envid ? { envid: p.envid } : {}),
      requireTls: p.requireTls,
      client: origin.client,
      receivedAt: this.options.clock.now(),
      hopCount: (this.header.fields.get("received") ?? 0) + 1,
      ...(prepend !== "" ? { prepend } : {}),
      ...(edits.length > 0 ? { headerEdits: edits } : {}),
      ...(decided.hold !== undefined ? { hold: decided.hold } : {}),
      ...(decided.folder !== undefined ? { folder: decided.folder } : {}),
    };
    const events = this.options.events ?? noEvents;
    const started = this.options.clock.now();
    await this.writer.commit(envelope);
    events.emit({ type: "spool-commit", durationMs: this.options.clock.now() - started });
    log.info({
      queueId: this.id,
      from: envelope.mailFrom || "<>",
      to: envelope.recipients.map((r) => r.address),
      size: envelope.size,
      user: envelope.client.authUser,
      ...(envelope.hold !== undefined ? { held: envelope.hold } : {}),
      ...(envelope.folder !== undefined ? { folder: envelope.folder } : {}),
    }, "message accepted");
    const c = envelope.client;
    const ar = decided.prepend.find((f) => f.name.toLowerCase() === "authentication-results");
    events.emit({
      type: "accepted", queueId: this.id, origin: "smtp", from: envelope.mailFrom, to: envelope.recipients.map((r) => r.address), size: envelope.size ?? 0,
      client: {
        address: c.address, helo: c.helo, role: c.role, ...(c.tls ? { tls: c.tls.version, cipher: c.tls.cipher } : {}), ...(c.authUser ? { authUser: c.authUser } : {}),
      },
      ...(ar ? { authResults: ar.value.trim() } : {}),
      ...(decided.findings ? { findings: decided.findings } : {}),
      ...(envelope.hold !== undefined ? { held: envelope.hold } : {}),
      ...(envelope.folder !== undefined ? { folder: envelope.folder } : {}),
    });
    onCommitted?.(this.id);
    return envelope;
  }

  /** Discard everything written; safe at any time, more than once. */
  async abort(): Promise<void> {
    this.bodyHash?.abort();
    this.batch = [];
    this.batched = 0;
    await this.writer.abort();
  }

  private emit(b: Buffer): void | Promise<void> {
    if (b.length === 0) return;
    this.batch.push(b);
    this.batched += b.length;
    this.size += b.length;
    return this.observe?.(b);
  }

  /** Each part in turn; an observer's promise is waited for before the next part (back-pressure). */
  private emitAll(parts: readonly Buffer[], from: number): void | Promise<void> {
    for (let i = from; i < parts.length; i++) {
      const waiting = this.emit(parts[i]);
      if (waiting) return waiting.then(() => this.emitAll(parts, i + 1));
    }
  }

  private async flush(): Promise<void> {
    if (this.batched === 0 || this.failed !== null) return;
    const data = this.batch.length === 1 ? this.batch[0] : Buffer.concat(this.batch, this.batched);
    this.batch = [];
    this.batched = 0;
    try {
      await this.writer.write(data);
    } catch (err) {
      this.failed = err;
    }
  }

  private submissionAdditions(fields: ReadonlyMap<string, number>): string {
    let extra = "";
    if (!fields.has("message-id")) extra += `Message-ID: ${messageId(this.writer.id, this.options.hostname)}\r\n`;
    if (!fields.has("date")) extra += `Date: ${rfc5322Date(new Date(this.options.clock.now()))}\r\n`;
    return extra;
  }
}

/** The content to the body hash as well as to the checks' observer; both may hold the stream. */
function withHash(hash: RelaxedBodyHash, observe?: (chunk: Buffer) => void | Promise<void>): (chunk: Buffer) => void | Promise<void> {
  return (chunk) => {
    const a = hash.write(chunk);
    const b = observe?.(chunk);
    return a && b ? Promise.all([a, b]).then(() => undefined) : (a ?? b);
  };
}

function toError(err: unknown): Error {
  return err instanceof Error ? err : new SpoolError(String(err));
}
