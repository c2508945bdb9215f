import type { Logger } from "pino";
import type { ClientInfo, Mailbox, MailParameters, RcptParameters, Recipient } from "../mail/envelope.ts";
import { formatMailbox } from "../smtp/address.ts";
import { reply, replyText, type Reply } from "../smtp/reply.ts";
import { protocolKeyword } from "../smtp/trace-headers.ts";
import type { MessageSink, SessionEvent, SessionHandler, SessionState, Transaction } from "../smtp/session-handler.ts";
import { isSaslMechanismName, startExchange } from "../sasl/mechanisms.ts";
import type { SaslCredentials, SaslExchange } from "../sasl/exchange.ts";
import { SpoolError } from "../spool/spool.ts";
import type { Awaitable, ClientFacts, SessionFacts } from "../policy/check.ts";
import type { PolicyPipeline, PolicySession } from "../policy/pipeline.ts";
import type { PolicyMessage } from "../policy/message-policy.ts";
import type { Intake, IntakeMessage } from "./intake.ts";
import { resolvePostmaster } from "./recipients.ts";
import { noEvents, type EventSink } from "../events/petrel-event.ts";

/**
 * Mail received over SMTP, one connection at a time: the engine's
 * SessionHandler (the decisions go-smtp's Session makes), answered by asking
 * the policy session at every stage and streaming each accepted message
 * into the intake. The factory is what the server is given (go-smtp's
 * Backend): it opens the checks for a new client and may refuse it before
 * the greeting.
 */

export interface ReceptionOptions {
  readonly pipeline: PolicyPipeline;
  readonly intake: Intake;
  /** Who may log in (SASL), asked by the AUTH exchanges. */
  readonly credentials: SaslCredentials;
  /** Where "<Postmaster>" goes (RFC 5321 §4.1.1.3). */
  readonly primaryDomain: string;
  /** Told failed logins and messages refused by the engine or the spool (checks' refusals come from the pipeline). */
  readonly events?: EventSink;
}

export class SmtpReceptionFactory {
  private options: ReceptionOptions;

  constructor(options: ReceptionOptions) {
    this.options = options;
  }

  /** A new client: its session handler, or the reply that refuses it instead of the greeting. */
  async open(client: ClientFacts, log: Logger): Promise<SessionHandler | Reply> {
    const policy = await this.options.pipeline.open(client, log);
    const refusal = await policy.connect();
    if (refusal) {
      await policy.close();
      return refusal;
    }
    return new SmtpReception(this.options, policy, log);
  }

  /** New connections are served through `pipeline` (a reload); those in progress keep the one they opened with. */
  usePipeline(pipeline: PolicyPipeline): void {
    this.options = { ...this.options, pipeline };
  }
}

const storageFailure = reply(451, "4.3.0", "Error: queue file write error, try again later");
const gone = reply(421, "4.4.2", "Error: connection closed");

export class SmtpReception implements SessionHandler {
  private readonly options: ReceptionOptions;
  private readonly policy: PolicySession;
  private readonly client: ClientFacts;
  private readonly log: Logger;
  private mechanism = "";
  private authFailures = 0;
  private closed = false;

  constructor(options: ReceptionOptions, policy: PolicySession, log: Logger) {
    this.options = options;
    this.policy = policy;
    this.client = policy.client;
    this.log = log;
  }

  helo(state: SessionState, name: string): Awaitable<Reply | undefined> {
    return this.policy.helo(this.facts(state), name);
  }

  mail(state: SessionState, from: Mailbox | null, params: MailParameters): Awaitable<Reply | undefined> {
    // Postfix's in_flow_delay: while the queue falls behind, a new message waits (up to queue.inflowDelay) before MAIL is answered.
    const paced = this.options.intake.inflow?.take();
    // A client that left while it waited is not asked about any more (its checks are closed).
    if (paced !== undefined) return paced.then(() => (this.closed ? gone : this.policy.mail(this.facts(state), from, params)));
    return this.policy.mail(this.facts(state), from, params);
  }

  rcpt(state: SessionState, tx: Transaction, to: Mailbox, params: RcptParameters): Awaitable<Reply | undefined> {
    return this.policy.rcpt(this.facts(state), tx, resolvePostmaster(to, this.options.primaryDomain), params);
  }

  async openMessage(state: SessionState, tx: Transaction): Promise<MessageSink | Reply> {
    const recipients: Recipient[] = tx.recipients.map((r) => ({
      address: formatMailbox(resolvePostmaster(r.mailbox, this.options.primaryDomain)),
      ...(r.params.notify ? { notify: r.params.notify } : {}),
      ...(r.params.orcpt ? { orcpt: r.params.orcpt } : {}),
    }));
    const client: ClientInfo = {
      address: this.client.address,
      port: this.client.port,
      helo: state.helo ?? "",
      protocol: protocolKeyword({ esmtp: state.esmtp, tls: state.tls !== null, authenticated: state.authUser !== null, smtputf8: tx.mailParams.smtputf8 }),
      ...(state.tls ? { tls: state.tls } : {}),
      ...(state.authUser ? { authUser: state.authUser } : {}),
      role: this.client.role,
    };
    let message: IntakeMessage;
    try {
      message = await this.options.intake.open({
        mailFrom: tx.mailFrom ? formatMailbox(tx.mailFrom) : "",
        recipients,
        params: tx.mailParams,
        client,
        submission: this.client.role !== "mx",
      });
    } catch (err) {
      this.log.error({ err: describe(err) }, "spool create failed");
      this.refusedHere("spool", "data", "spool create failed", storageFailure);
      return storageFailure;
    }
    // The queue id is known before the checks are asked (a milter's `i` macro).
    const checks = await this.policy.data(this.facts(state), { ...tx, queueId: message.id });
    try {
      await message.start(checks.observe);
    } catch (err) {
      checks.abort();
      this.log.error({ err: describe(err) }, "spool create failed");
      this.refusedHere("spool", "data", "spool create failed", storageFailure);
      return storageFailure;
    }
    return new ReceivedMessage(message, checks, this.log, (check, reason, r) => this.refusedHere(check, "end-of-data", reason, r, message.id));
  }

  startAuth(_state: SessionState, mechanism: string): SaslExchange | undefined {
    if (!isSaslMechanismName(mechanism)) return undefined;
    this.mechanism = mechanism;
    const exchange = startExchange(mechanism, this.options.credentials);
    return {
      step: async (response) => {
        try {
          return await exchange.step(response);
        } catch (err) {
          this.log.error({ err }, "authentication backend failed");
          return { kind: "failure", reason: "malformed" };
        }
      },
    };
  }

  authenticated(state: SessionState, user: string): Awaitable<Reply | undefined> {
    return this.policy.auth(this.facts(state), this.mechanism, user);
  }

  async authFailed(state: SessionState): Promise<boolean> {
    this.authFailures++;
    this.log.warn({ failures: this.authFailures, mechanism: this.mechanism }, "authentication failed");
    this.events.emit({ type: "auth-failure", role: this.client.role, client: this.client.address, mechanism: this.mechanism });
    // A check that refuses after a failed AUTH ends the session (421).
    return (await this.policy.auth(this.facts(state), this.mechanism, null)) !== undefined;
  }

  reset(): void {
    this.policy.reset();
  }

  close(): Promise<void> {
    this.closed = true;
    return this.policy.close();
  }

  event(name: SessionEvent, detail?: Record<string, unknown>): void {
    switch (name) {
      case "auth-success":
        this.log.info(detail, "authenticated");
        break;
      case "message-refused":
        this.log.info(detail, name);
        this.refusedHere("smtp", "data", String(detail?.reason ?? "refused"), undefined);
        break;
      case "pipelining-violation":
      case "protocol-error":
      case "line-too-long":
        this.log.info(detail, name);
        break;
      case "tls-requested":
        this.log.debug(detail, "STARTTLS");
        break;
      default:
        break;
    }
  }

  private get events(): EventSink {
    return this.options.events ?? noEvents;
  }

  /** A refusal that is not a check's: the engine's (size, bare newline) or the spool's. */
  private refusedHere(check: string, stage: string, reason: string, r: Reply | undefined, queueId?: string): void {
    this.events.emit({
      type: "rejected", check, stage, reason, reply: r ? replyText(r) : reason,
      client: this.client.address, role: this.client.role, ...(queueId ? { queueId } : {}),
    });
  }

  private facts(state: SessionState): SessionFacts {
    return { client: this.client, helo: state.helo, esmtp: state.esmtp, tls: state.tls, authUser: state.authUser };
  }
}

/**
 * A message streaming in: its content goes to the intake (and, through it,
 * to the checks that observe it); at the end the checks decide, and the
 * intake stores it with what they decided — and only then is the 250 given.
 */
class ReceivedMessage implements MessageSink {
  private readonly message: IntakeMessage;
  private readonly checks: PolicyMessage;
  private readonly log: Logger;
  private readonly refused: (check: string, reason: string, r: Reply) => void;
  readonly write: (chunk: Buffer) => void | Promise<void>;

  constructor(message: IntakeMessage, checks: PolicyMessage, log: Logger, refused: (check: string, reason: string, r: Reply) => void) {
    this.message = message;
    this.checks = checks;
    this.log = log;
    this.refused = refused;
    this.write = (chunk) => message.write(chunk);
  }

  async end(): Promise<Reply> {
    const { message, checks } = this;
    const header = await message.end();
    if (header === null) {
      await this.abort();
      const tooLarge = reply(552, "5.3.4", "Error: message header section too large");
      this.refused("smtp", "header section too large", tooLarge);
      return tooLarge;
    }
    const decision = await checks.endOfData(header);
    if (decision.action === "refuse") {
      await message.abort();
      return decision.reply;
    }
    if (decision.action === "discard") {
      // Postfix's DISCARD: the client is told it was taken; nothing is stored (the log says why).
      await message.abort();
      return queued(message.id);
    }
    try {
      await message.commit(decision.decided, header);
    } catch (err) {
      this.log.error({ queueId: message.id, err: describe(err) }, "message not stored");
      await message.abort().catch(() => {});
      this.refused("spool", "message not stored", storageFailure);
      return storageFailure;
    }
    return queued(message.id);
  }

  async abort(): Promise<void> {
    this.checks.abort();
    await this.message.abort();
  }
}

function queued(id: string): Reply {
  return reply(250, "2.0.0", `Ok: queued as ${id}`);
}

function describe(err: unknown): unknown {
  return err instanceof SpoolError ? { message: err.message, code: err.code } : err;
}
