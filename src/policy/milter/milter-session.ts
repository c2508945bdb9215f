import { isIPv4, isIPv6 } from "node:net";
import type {
  AuthOutcome, CheckResult, CheckSession, ClientFacts, MessageCheck, SessionFacts, TransactionFacts,
} from "../check.ts";
import type { Mailbox, MailParameters, RcptParameters } from "../../mail/envelope.ts";
import { formatMailbox } from "../../smtp/address.ts";
import { encodeXtext } from "../../smtp/xtext.ts";
import { MilterClient, type Step } from "./client.ts";
import { MILTER_SHUTDOWN, MILTER_TEMPFAIL, type Decision } from "./answers.ts";
import type { MacroValues } from "./macros.ts";
import type { MilterContext, MilterSettings } from "./settings.ts";
import { MilterMessage, type FilterConnection, type FilterTransaction } from "./milter-message.ts";
import {
  SMFIA_INET, SMFIA_INET6, SMFIA_UNKNOWN, SMFIC_CONNECT, SMFIC_DATA, SMFIC_HELO, SMFIC_MAIL, SMFIC_RCPT,
  SMFIP_NOCONNECT, SMFIP_NODATA, SMFIP_NOHELO, SMFIP_NOMAIL, SMFIP_NORCPT, SMFIP_NR_CONN, SMFIP_NR_DATA, SMFIP_NR_HELO,
  SMFIP_NR_MAIL, SMFIP_NR_RCPT, SMFIP_HDR_LEADSPC, type Field,
} from "./protocol.ts";

/**
 * One SMTP connection's conversation with one filter, as a CheckSession.
 * Steps are sent one at a time, in order (the chain), whatever order the
 * caller's promises settle in; RSET and aborts queue behind them.
 *
 * Standing of the filter for this connection:
 *   active    — consulted at every stage
 *   ignored   — accepted the connection, or failed with defaultAction accept
 *   refusing  — refused the connection (at connect or HELO), shut it down,
 *               or failed with defaultAction tempfail: every later stage
 *               answers with that refusal (Postfix does the same)
 */

type Standing = "active" | "ignored" | "refusing";

/** Filters already logged as asking for more than was offered (once per configured milter, not per connection). */
const noted = new WeakSet<MilterSettings>();

export class MilterSession implements CheckSession, FilterConnection {
  readonly settings: MilterSettings;
  readonly context: MilterContext;
  private readonly client: ClientFacts;
  private filter: MilterClient | null = null;
  private standing: Standing = "active";
  private refusal: CheckResult | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private readonly macros: Record<string, string | undefined>;
  tx: FilterTransaction | null = null;

  private constructor(settings: MilterSettings, context: MilterContext, client: ClientFacts) {
    this.settings = settings;
    this.context = context;
    this.client = client;
    const address = plainAddress(client.address);
    this.macros = {
      j: context.hostname,
      v: "Petrel",
      _: `unknown [${address}]`,
      daemon_name: client.role,
      daemon_addr: plainAddress(client.localAddress),
      daemon_port: String(client.localPort),
      if_addr: plainAddress(client.localAddress),
      client_addr: address,
      client_port: String(client.port),
      client_name: "unknown",
    };
    this.setTls(client.tls);
  }

  static async start(settings: MilterSettings, context: MilterContext, client: ClientFacts): Promise<MilterSession> {
    const s = new MilterSession(settings, context, client);
    try {
      s.filter = await MilterClient.open(settings.address, {
        connect: settings.connectTimeout, command: settings.commandTimeout, content: settings.endOfMessageTimeout,
      }, s.stage());
    } catch (err) {
      s.fail("connect", err);
      return s;
    }
    const unoffered = s.filter.negotiated.unoffered;
    if (unoffered.length > 0 && !noted.has(settings)) {
      noted.add(settings);
      context.log.info(
        { check: `milter:${settings.name}`, unoffered },
        `milter ${settings.name} asks for actions Petrel does not offer (${unoffered.join(", ")}); it fails if it uses them`,
      );
    }
    return s;
  }

  get leadingSpace(): boolean {
    return this.filter !== null && (this.filter.negotiated.steps & SMFIP_HDR_LEADSPC) !== 0;
  }

  connect(): Promise<CheckResult | void> {
    const address = plainAddress(this.client.address);
    const family = isIPv4(address) ? SMFIA_INET : isIPv6(address) ? SMFIA_INET6 : SMFIA_UNKNOWN;
    const fields: Field[] = [{ string: `[${address}]` }, { raw: Buffer.from(family, "latin1") }];
    if (family !== SMFIA_UNKNOWN) fields.push({ uint16: this.client.port }, { string: address });
    return this.envelopeStep("connect", { command: SMFIC_CONNECT, fields, skipFlag: SMFIP_NOCONNECT, noReplyFlag: SMFIP_NR_CONN, content: false });
  }

  helo(session: SessionFacts, name: string): Promise<CheckResult | void> {
    this.setTls(session.tls);
    return this.envelopeStep("helo", { command: SMFIC_HELO, fields: [{ string: name }], skipFlag: SMFIP_NOHELO, noReplyFlag: SMFIP_NR_HELO, content: false });
  }

  auth(_session: SessionFacts, outcome: AuthOutcome): void {
    if (outcome.user === null) return;
    this.macros.auth_type = outcome.mechanism;
    this.macros.auth_authen = outcome.user;
  }

  async mail(session: SessionFacts, from: Mailbox | null, params: MailParameters): Promise<CheckResult | void> {
    // A transaction the caller never closed (a refused MAIL): the filter hears of it before the next.
    if (this.tx !== null) this.reset();
    this.setTls(session.tls);
    if (session.authUser === null) {
      this.macros.auth_type = undefined;
      this.macros.auth_authen = undefined;
    }
    this.macros.i = undefined;
    this.macros.mail_addr = from === null ? "" : formatMailbox(from);
    if (this.standing !== "active") return this.refusal;
    this.tx = { state: "open" };
    const fields: Field[] = [{ string: `<${this.macros.mail_addr}>` }, ...mailArguments(params).map((a) => ({ string: a }))];
    return this.envelopeStep("mail", { command: SMFIC_MAIL, fields, skipFlag: SMFIP_NOMAIL, noReplyFlag: SMFIP_NR_MAIL, content: false });
  }

  rcpt(_session: SessionFacts, _tx: TransactionFacts, to: Mailbox, params: RcptParameters): Promise<CheckResult | void> {
    if (this.tx !== null && this.tx.state !== "open") return Promise.resolve();
    this.macros.rcpt_addr = formatMailbox(to);
    const fields: Field[] = [{ string: `<${this.macros.rcpt_addr}>` }, ...rcptArguments(params).map((a) => ({ string: a }))];
    return this.envelopeStep("rcpt", { command: SMFIC_RCPT, fields, skipFlag: SMFIP_NORCPT, noReplyFlag: SMFIP_NR_RCPT, content: false });
  }

  async message(_session: SessionFacts, tx: TransactionFacts): Promise<MessageCheck | undefined> {
    this.macros.i = tx.queueId;
    if (this.standing === "refusing") {
      const refusal = this.refusal;
      return { endOfData: () => refusal };
    }
    if (this.standing === "ignored" || this.tx === null || this.tx.state === "accepted") return undefined;
    if (this.tx.state === "open") {
      const result = await this.envelopeStep("data", { command: SMFIC_DATA, fields: [], skipFlag: SMFIP_NODATA, noReplyFlag: SMFIP_NR_DATA, content: false });
      if (result !== undefined) return { endOfData: () => result };
      if (this.standing !== "active") return undefined;
    }
    return new MilterMessage(this);
  }

  reset(): void {
    const tx = this.tx;
    this.tx = null;
    if (tx === null || this.filter === null || this.standing !== "active") return;
    const filter = this.filter;
    void this.run(() => filter.abort()).catch((err: unknown) => this.fail("abort", err));
  }

  async close(): Promise<void> {
    await this.chain.catch(() => undefined);
    this.filter?.quit();
    this.filter = null;
  }

  /** Run `work` after everything sent before it has been answered. */
  run<T>(work: () => Promise<T>): Promise<T> {
    const next = this.chain.then(work, work);
    this.chain = next.catch(() => undefined);
    return next;
  }

  /** Send a step within the chain, before `deadline`; undefined when the filter is not consulted any more. */
  async send(step: Step, deadline: number) {
    if (this.standing !== "active" || this.filter === null) return undefined;
    const filter = this.filter;
    return this.run(() => filter.step(step, this.macroValues(), deadline));
  }

  /**
   * A stage begins: its deadline, a little before the pipeline's own limit
   * for one stage (policy.timeout) runs out, so that a slow filter meets its
   * default action rather than the pipeline's 451 4.3.0.
   */
  stage(): number {
    const limit = this.context.stageTimeout;
    return limit === undefined ? Infinity : Date.now() + limit - Math.min(1000, limit / 10);
  }

  /** The filter wants this step (it did not set the step's SMFIP_NO* bit). */
  wants(skipFlag: number): boolean {
    return this.filter !== null && this.filter.wants(skipFlag);
  }

  get active(): boolean {
    return this.standing === "active" && this.filter !== null;
  }

  get refusingWith(): CheckResult | undefined {
    return this.standing === "refusing" ? this.refusal : undefined;
  }

  macroValues(): MacroValues {
    return { ...this.macros };
  }

  /**
   * A decision at a stage, as a check result. At connect and HELO a refusal
   * or an accept holds for the whole connection; later ones for the
   * transaction, whose verdict at end of data the caller reads from `tx`.
   */
  decide(stage: string, d: Decision, quarantine: string | undefined): CheckResult | void {
    if (quarantine !== undefined && this.tx !== null) this.tx.quarantine = quarantine;
    const connectionWide = stage === "connect" || stage === "helo";
    const reason = `milter ${this.settings.name}: ${d.kind} at ${stage}`;
    switch (d.kind) {
      case "continue":
      case "skip":
        return;
      case "accept":
        if (connectionWide) this.leave("ignored");
        else if (this.tx !== null) this.tx.state = "accepted";
        return;
      case "reject":
      case "tempfail": {
        const result: CheckResult = { verdict: { action: d.kind, reply: d.reply }, reason };
        if (connectionWide) this.leave("refusing", result);
        else if (this.tx !== null && stage !== "mail" && stage !== "rcpt") this.tx = { ...this.tx, state: "decided", result };
        return result;
      }
      case "discard":
        if (connectionWide) {
          this.context.log.warn({ check: `milter:${this.settings.name}`, stage }, "milter asked to discard at connect or HELO, where there is no message; ignored");
          return;
        }
        if (this.tx !== null) this.tx = { ...this.tx, state: "decided", result: { verdict: { action: "discard", reason }, reason } };
        return;
      case "shutdown": {
        const result: CheckResult = { verdict: { action: "tempfail", reply: MILTER_SHUTDOWN }, reason };
        this.leave("refusing", result);
        return result;
      }
    }
  }

  /** The filter failed: log it, drop it, and apply the default action from now on. */
  fail(stage: string, err: unknown): CheckResult | void {
    const message = err instanceof Error ? err.message : String(err);
    this.context.log.warn(
      { check: `milter:${this.settings.name}`, stage, err: message, defaultAction: this.settings.defaultAction },
      `milter ${this.settings.name} unavailable: ${message}; default action ${this.settings.defaultAction}`,
    );
    if (this.settings.defaultAction === "accept") {
      this.leave("ignored");
      return;
    }
    const result: CheckResult = {
      verdict: { action: "tempfail", reply: MILTER_TEMPFAIL },
      reason: `milter ${this.settings.name} unavailable at ${stage}: ${message}`,
    };
    this.leave("refusing", result);
    return result;
  }

  /** The transaction ended; `completed` when the filter saw its end of message. */
  endTransaction(completed: boolean): void {
    if (completed) this.tx = null;
    else this.reset();
  }

  private async envelopeStep(stage: string, step: Step): Promise<CheckResult | void> {
    if (this.standing === "refusing") return this.refusal;
    try {
      const answer = await this.send(step, this.stage());
      if (answer === undefined) return this.refusingWith;
      return this.decide(stage, answer.decision, answer.quarantine);
    } catch (err) {
      return this.fail(stage, err);
    }
  }

  private leave(standing: Exclude<Standing, "active">, refusal?: CheckResult): void {
    if (this.standing !== "active") return;
    this.standing = standing;
    this.refusal = refusal;
    if (this.filter !== null) {
      const filter = this.filter;
      this.filter = null;
      // Sendmail's libmilter closes its side once it accepted or refused the connection.
      if (filter.closed) return;
      void this.chain.then(() => filter.quit());
    }
  }

  private setTls(tls: SessionFacts["tls"]): void {
    this.macros.tls_version = tls?.version;
    this.macros.cipher = tls?.cipher;
  }
}

/** "::ffff:192.0.2.1" (a v4 client on a dual-stack socket) as "192.0.2.1". */
function plainAddress(a: string): string {
  return a.startsWith("::ffff:") && isIPv4(a.slice(7)) ? a.slice(7) : a;
}

/** The ESMTP parameters of MAIL as the client could have written them (RFC 1870, 6152, 6531, 3461, 4954, 8689). */
function mailArguments(p: MailParameters): string[] {
  const out: string[] = [];
  if (p.size !== undefined) out.push(`SIZE=${p.size}`);
  if (p.body) out.push(`BODY=${p.body}`);
  if (p.smtputf8) out.push("SMTPUTF8");
  if (p.ret) out.push(`RET=${p.ret}`);
  if (p.envid !== undefined) out.push(`ENVID=${encodeXtext(p.envid)}`);
  if (p.auth !== undefined) out.push(`AUTH=${p.auth === "<>" ? "<>" : encodeXtext(p.auth)}`);
  if (p.requireTls) out.push("REQUIRETLS");
  return out;
}

/** NOTIFY (RFC 3461 §4.1); ORCPT is not passed on (no filter Petrel knows reads it). */
function rcptArguments(p: RcptParameters): string[] {
  return p.notify && p.notify.length > 0 ? [`NOTIFY=${p.notify.join(",")}`] : [];
}
