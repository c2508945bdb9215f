import type { Reply } from "../smtp/reply.ts";
import { replyText } from "../smtp/reply.ts";
import type { Check, CheckResult, HeaderFields, MessageCheck } from "./check.ts";
import { failed, invoke, isPromiseLike, withTimeout, type Invocation } from "./invoke.ts";
import { decide, gravest, type MessageDecision, type StageResult } from "./merge.ts";

/**
 * One message on its way in, as the checks see it: the observers that get
 * its content as it streams to the spool (with back-pressure: an observer
 * that returns a promise holds the stream), and the end-of-data step — the
 * checks of round 0 at once, then each later round with the results of the
 * rounds before (`earlier`: DMARC reads SPF and DKIM), stopping after a
 * round in which a check refused.
 */

export interface MessageCheckEntry {
  readonly check: Check;
  /** Null when the check failed to open its observer. */
  readonly message: MessageCheck | null;
  readonly failure?: CheckResult;
}

interface Observer {
  readonly entry: MessageCheckEntry;
  readonly body: (chunk: Buffer) => void | PromiseLike<void>;
  failure?: CheckResult;
}

export interface PolicyMessageOptions {
  readonly checks: readonly MessageCheckEntry[];
  readonly rounds: readonly (readonly string[])[];
  readonly authservId: string;
  readonly how: Invocation;
  /** What the checks found at earlier stages (connect … RCPT), in order. */
  readonly earlier: readonly StageResult[];
  /** For the log line of a refusal. */
  readonly context: Record<string, unknown>;
  /** Told the check and reply that refused the message. */
  readonly onRefused?: (by: StageResult, reply: Reply) => void;
}

export class PolicyMessage {
  private readonly options: PolicyMessageOptions;
  private readonly observers: Observer[] = [];
  private done = false;
  /**
   * Gives a chunk of the content (as stored, CRLF line ends) to every
   * observer; undefined when no check observes the content, so the stream
   * pays nothing for the pipeline. The chunk must not be changed.
   */
  readonly observe: ((chunk: Buffer) => void | Promise<void>) | undefined;

  constructor(options: PolicyMessageOptions) {
    this.options = options;
    for (const entry of options.checks) {
      const body = entry.message?.body;
      if (body) this.observers.push({ entry, body: body.bind(entry.message) });
    }
    this.observe = this.observers.length > 0 ? (chunk) => this.feed(chunk) : undefined;
  }

  /** All content is in. `header` is the stored header section. */
  async endOfData(header: HeaderFields): Promise<MessageDecision> {
    const { checks, rounds, how, authservId } = this.options;
    this.done = true;
    const results = new Map<string, CheckResult | undefined>();
    const byName = new Map(checks.map((c) => [c.check.name, c]));
    const failedObserving = new Map(this.observers.filter((o) => o.failure).map((o) => [o.entry.check.name, o.failure!]));
    let refused = false;
    for (const round of rounds) {
      const entries = round.map((name) => byName.get(name)).filter((e) => e !== undefined);
      if (refused) {
        for (const e of entries) abortCheck(e, how);
        continue;
      }
      await Promise.all(entries.map(async (e) => {
        const failure = e.failure ?? failedObserving.get(e.check.name);
        if (failure || !e.message) {
          results.set(e.check.name, failure);
          return;
        }
        const earlier = new Map<string, CheckResult>();
        for (const dep of e.check.after ?? []) {
          const r = results.get(dep);
          if (r) earlier.set(dep, r);
        }
        const message = e.message;
        results.set(e.check.name, await invoke(how, e.check.name, "end-of-data", () => message.endOfData(header, earlier)));
      }));
      refused = entries.some((e) => {
        const action = results.get(e.check.name)?.verdict?.action;
        return action === "reject" || action === "tempfail";
      });
    }
    // Merged in check order, after what the earlier stages found.
    const all: StageResult[] = [...this.options.earlier];
    for (const c of checks) {
      const result = results.get(c.check.name);
      if (result) all.push({ check: c.check.name, stage: "end-of-data", result });
    }
    const decision = decide(all, authservId, header);
    this.log(decision, all);
    return decision;
  }

  /** The message will not be stored (refused, too large, RSET, disconnect). */
  abort(): void {
    if (this.done) return;
    this.done = true;
    for (const e of this.options.checks) abortCheck(e, this.options.how);
  }

  private feed(chunk: Buffer): void | Promise<void> {
    let pending: Promise<void>[] | undefined;
    for (const o of this.observers) {
      if (o.failure) continue;
      try {
        const r = o.body(chunk);
        if (isPromiseLike(r)) (pending ??= []).push(this.guard(o, r));
      } catch (err) {
        o.failure = failed(o.entry.check.name, "data", err, this.options.how.log);
      }
    }
    if (pending === undefined) return undefined;
    return pending.length === 1 ? pending[0] : Promise.all(pending).then(() => undefined);
  }

  /** An observer that fails or stalls is not fed again; the message is refused for now at its end. */
  private async guard(o: Observer, r: PromiseLike<void>): Promise<void> {
    const { how } = this.options;
    try {
      await withTimeout(r, how.timeout, how.timer, o.entry.check.name, "data");
    } catch (err) {
      o.failure = failed(o.entry.check.name, "data", err, how.log);
    }
  }

  private log(decision: MessageDecision, all: readonly StageResult[]): void {
    const log = this.options.how.log;
    const context = this.options.context;
    if (decision.action === "refuse") {
      const { by } = decision;
      log.info({ check: by.check, stage: by.stage, reason: by.result.reason, reply: replyText(decision.reply), ...context }, "refused");
      this.options.onRefused?.(by, decision.reply);
    } else if (decision.action === "discard") {
      log.info({ check: gravest(all)?.check, reason: decision.reason, ...context }, "message discarded");
    }
  }
}

function abortCheck(e: MessageCheckEntry, how: Invocation): void {
  try {
    e.message?.abort?.();
  } catch (err) {
    how.log.error({ check: e.check.name, err }, "check failed on abort");
  }
}
