import type { Logger } from "pino";
import type { Clock } from "../mail/clock.ts";
import type { Mailbox, MailParameters, RcptParameters } from "../mail/envelope.ts";
import { formatMailbox } from "../smtp/address.ts";
import { replyText, type Reply } from "../smtp/reply.ts";
import type { Awaitable, Check, CheckResult, CheckSession, ClientFacts, SessionFacts, TransactionFacts } from "./check.ts";
import { failed, invoke, isPromiseLike, withTimeout, type Invocation } from "./invoke.ts";
import type { Stage, StageResult } from "./merge.ts";
import { PolicyMessage, type MessageCheckEntry } from "./message-policy.ts";
import { atConnect, checkFailedAtConnect } from "./replies.ts";
import { noEvents, type EventSink } from "../events/petrel-event.ts";

/**
 * The check runner: the configured checks, in order, asked at every SMTP
 * stage (Postfix's smtpd_*_restrictions, maddy's check runner). At connect,
 * HELO, AUTH, MAIL and RCPT the first check that refuses (reject or
 * tempfail) stops the stage and its reply goes to the client; what the
 * others found (header fields, Authentication-Results fragments, a
 * quarantine) is kept for the message — for the session when found at
 * connect, HELO or AUTH, for the transaction at MAIL and RCPT. At the end of
 * data the checks run concurrently, those with `after` once the checks they
 * name have answered (message-policy.ts), and everything is merged into one
 * decision (merge.ts).
 *
 * A refusal is logged with the check, the stage and the check's reason.
 */

export interface PipelineOptions {
  readonly checks: readonly Check[];
  /** RFC 8601 authserv-id of the Authentication-Results field: this server's host name unless configured. */
  readonly authservId: string;
  /** Longest a check may take at one stage (ms); then it counts as failed (451 4.3.0). */
  readonly timeout: number;
  readonly timer: Pick<Clock, "schedule" | "cancel">;
  /** Told every refusal: the check, the stage, the reason and the reply (the activity feed, metrics). */
  readonly events?: EventSink;
}

export class PolicyPipeline {
  readonly checks: readonly Check[];
  readonly authservId: string;
  readonly events: EventSink;
  private readonly options: PipelineOptions;
  /** The end-of-data rounds: checks without `after` first, then each round the checks whose dependencies ran before. */
  readonly rounds: readonly (readonly string[])[];

  constructor(options: PipelineOptions) {
    this.options = options;
    this.checks = options.checks;
    this.authservId = options.authservId;
    this.events = options.events ?? noEvents;
    this.rounds = endOfDataRounds(options.checks);
  }

  /** Per-connection state of every check. Never throws: a check that cannot open refuses the connection for now. */
  async open(client: ClientFacts, log: Logger): Promise<PolicySession> {
    const how: Invocation = { timeout: this.options.timeout, timer: this.options.timer, log };
    const entries = await Promise.all(this.checks.map(async (check): Promise<SessionEntry> => {
      try {
        const opened = check.open(client);
        const session = isPromiseLike(opened) ? await withTimeout(opened, how.timeout, how.timer, check.name, "connect") : opened;
        return { check, session };
      } catch (err) {
        return { check, session: {}, failure: failed(check.name, "connect", err, log) };
      }
    }));
    return new PolicySession(this, entries, client, how);
  }
}

/** One stage being asked of the checks. */
interface StageCall {
  readonly stage: Stage;
  readonly hook: keyof CheckSession;
  readonly keep: StageResult[];
  readonly call: (s: CheckSession) => Awaitable<CheckResult | void | undefined>;
  /** For the log line of a refusal: built only then. */
  readonly context: () => Record<string, unknown>;
}

interface SessionEntry {
  readonly check: Check;
  readonly session: CheckSession;
  /** The check could not open: it refuses at connect. */
  readonly failure?: CheckResult;
}

export class PolicySession {
  readonly client: ClientFacts;
  private readonly pipeline: PolicyPipeline;
  private readonly entries: readonly SessionEntry[];
  private readonly how: Invocation;
  /** What checks found at connect, HELO and AUTH: part of every message of the session. */
  private readonly sessionResults: StageResult[] = [];
  /** What checks found at MAIL and RCPT: part of this transaction's message. */
  private txResults: StageResult[] = [];
  private message: PolicyMessage | null = null;
  private closed = false;

  constructor(pipeline: PolicyPipeline, entries: readonly SessionEntry[], client: ClientFacts, how: Invocation) {
    this.pipeline = pipeline;
    this.entries = entries;
    this.client = client;
    this.how = how;
  }

  /** Before the greeting: a refusal replaces it (421 or 554), and the connection closes. */
  async connect(): Promise<Reply | undefined> {
    for (const e of this.entries) {
      if (e.failure) return this.refused({ check: e.check.name, stage: "connect", result: e.failure }, () => ({}), checkFailedAtConnect);
    }
    const refusal = await this.stage("connect", this.sessionResults, (s) => s.connect?.(), () => ({}));
    return refusal && atConnect(refusal);
  }

  helo(facts: SessionFacts, name: string): Awaitable<Reply | undefined> {
    return this.stage("helo", this.sessionResults, (s) => s.helo?.(facts, name), () => ({ helo: name }));
  }

  /** An AUTH exchange ended: `user` logged in, or (null) it failed. A refusal refuses the login, or after a failure ends the session. */
  auth(facts: SessionFacts, mechanism: string, user: string | null): Awaitable<Reply | undefined> {
    return this.stage("auth", this.sessionResults, (s) => s.auth?.(facts, { mechanism, user }), () => ({ mechanism, user }));
  }

  mail(facts: SessionFacts, from: Mailbox | null, params: MailParameters): Awaitable<Reply | undefined> {
    this.txResults = [];
    return this.stage("mail", this.txResults, (s) => s.mail?.(facts, from, params), () => ({ from: from ? formatMailbox(from) : "<>", user: facts.authUser }));
  }

  rcpt(facts: SessionFacts, tx: TransactionFacts, to: Mailbox, params: RcptParameters): Awaitable<Reply | undefined> {
    return this.stage("rcpt", this.txResults, (s) => s.rcpt?.(facts, tx, to, params), () => ({
      from: tx.mailFrom ? formatMailbox(tx.mailFrom) : "<>", to: formatMailbox(to),
    }));
  }

  /** DATA or the first BDAT: the per-message observers, and the end-of-data decision to come. */
  async data(facts: SessionFacts, tx: TransactionFacts): Promise<PolicyMessage> {
    this.message?.abort();
    const checks: MessageCheckEntry[] = [];
    for (const e of this.entries) {
      if (!e.session.message) continue;
      const got = await this.call(e, "data", () => e.session.message!(facts, tx));
      if (got.kind === "value" && got.value) checks.push({ check: e.check, message: got.value });
      else if (got.kind === "failed") checks.push({ check: e.check, message: null, failure: got.failure });
    }
    this.message = new PolicyMessage({
      checks, rounds: this.pipeline.rounds, authservId: this.pipeline.authservId, how: this.how,
      earlier: [...this.sessionResults, ...this.txResults],
      context: { from: tx.mailFrom ? formatMailbox(tx.mailFrom) : "<>", to: tx.recipients.map((r) => formatMailbox(r.mailbox)) },
      onRefused: (by, reply) => this.record(by, reply, {
        from: tx.mailFrom ? formatMailbox(tx.mailFrom) : "<>", to: tx.recipients.map((r) => formatMailbox(r.mailbox)), ...(tx.queueId ? { queueId: tx.queueId } : {}),
      }),
    });
    return this.message;
  }

  /** The transaction ended (RSET, HELO, STARTTLS, its message stored or refused): forget it (milter's abort). */
  reset(): void {
    this.txResults = [];
    this.message?.abort();
    this.message = null;
    for (const e of this.entries) {
      try {
        e.session.reset?.();
      } catch (err) {
        this.how.log.error({ check: e.check.name, err }, "check failed on reset");
      }
    }
  }

  /** The connection ended. Every check is told, whatever the others do. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.message?.abort();
    this.message = null;
    await Promise.all(this.entries.map((e) => invoke(this.how, e.check.name, "close", () => e.session.close?.())));
  }

  /**
   * Ask each check in order; the first refusal ends the stage. Results with
   * more to say are kept in `keep`. Checks that answer at once are asked
   * without a promise; the stage waits only from the first that does not.
   */
  private stage(
    stage: Stage, keep: StageResult[], call: (s: CheckSession) => Awaitable<CheckResult | void | undefined>, context: () => Record<string, unknown>,
  ): Awaitable<Reply | undefined> {
    return this.stageFrom(0, undefined, { stage, hook: stage as keyof CheckSession, keep, call, context });
  }

  private stageFrom(from: number, found: StageResult[] | undefined, s: StageCall): Awaitable<Reply | undefined> {
    const entries = this.entries;
    for (let i = from; i < entries.length; i++) {
      const e = entries[i];
      if (e.session[s.hook] === undefined) continue;
      const result = invoke(this.how, e.check.name, s.stage, () => s.call(e.session));
      if (isPromiseLike(result)) {
        return result.then((r) => {
          if (r === undefined) return this.stageFrom(i + 1, found, s);
          const answer = this.answer(e, r, s);
          if ("code" in answer) return answer;
          return this.stageFrom(i + 1, [...(found ?? []), answer], s);
        });
      }
      if (result === undefined) continue;
      const answer = this.answer(e, result, s);
      if ("code" in answer) return answer;
      (found ??= []).push(answer);
    }
    if (found) s.keep.push(...found);
    return undefined;
  }

  /** A check's answer at a stage: the refusal that ends it, or what is kept. */
  private answer(e: SessionEntry, result: CheckResult, s: StageCall): StageResult | Reply {
    const r: StageResult = { check: e.check.name, stage: s.stage, result };
    const v = result.verdict;
    // What the others said about a refused command is not kept.
    if (v?.action === "reject" || v?.action === "tempfail") return this.refused(r, s.context, v.reply);
    return r;
  }

  private refused(r: StageResult, context: () => Record<string, unknown>, reply: Reply): Reply {
    const c = context();
    this.how.log.info({ check: r.check, stage: r.stage, reason: r.result.reason, reply: replyText(reply), ...c }, "refused");
    this.record(r, reply, c);
    return reply;
  }

  private record(r: StageResult, reply: Reply, context: { from?: unknown; to?: unknown; queueId?: string }): void {
    this.pipeline.events.emit({
      type: "rejected", check: r.check, stage: r.stage, ...(r.result.reason ? { reason: r.result.reason } : {}), reply: replyText(reply),
      client: this.client.address, role: this.client.role,
      ...(typeof context.from === "string" ? { from: context.from } : {}),
      ...(typeof context.to === "string" || Array.isArray(context.to) ? { to: context.to as string | string[] } : {}),
      ...(context.queueId ? { queueId: context.queueId } : {}),
    });
  }

  private async call<T>(e: SessionEntry, stage: Stage, f: () => Awaitable<T>): Promise<{ kind: "value"; value: T } | { kind: "failed"; failure: CheckResult }> {
    try {
      const r = f();
      return { kind: "value", value: isPromiseLike(r) ? await withTimeout(r, this.how.timeout, this.how.timer, e.check.name, stage) : r };
    } catch (err) {
      return { kind: "failed", failure: failed(e.check.name, stage, err, this.how.log) };
    }
  }
}

/**
 * The order of the end-of-data step: round 0 holds the checks without
 * `after`; a check runs in the round after the last of those it names.
 * A name that is no configured check, or a cycle, is a configuration error.
 */
export function endOfDataRounds(checks: readonly Check[]): string[][] {
  const byName = new Map<string, Check>();
  for (const c of checks) {
    if (byName.has(c.name)) throw new Error(`two checks are named "${c.name}"`);
    byName.set(c.name, c);
  }
  const round = new Map<string, number>();
  const visiting = new Set<string>();
  const place = (c: Check): number => {
    const known = round.get(c.name);
    if (known !== undefined) return known;
    if (visiting.has(c.name)) throw new Error(`checks depend on each other in a cycle through "${c.name}"`);
    visiting.add(c.name);
    let r = 0;
    for (const dep of c.after ?? []) {
      const d = byName.get(dep);
      if (!d) throw new Error(`check "${c.name}" runs after "${dep}", which is not configured`);
      r = Math.max(r, place(d) + 1);
    }
    visiting.delete(c.name);
    round.set(c.name, r);
    return r;
  };
  const rounds: string[][] = [];
  for (const c of checks) (rounds[place(c)] ??= []).push(c.name);
  return rounds;
}
