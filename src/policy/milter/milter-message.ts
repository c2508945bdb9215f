import type { CheckResult, MessageCheck } from "../check.ts";
import { ContentSplitter, type ContentPart } from "./content-splitter.ts";
import { applyModifications } from "./modifications.ts";
import type { Step, StepAnswer } from "./client.ts";
import type { Decision } from "./answers.ts";
import type { MilterContext, MilterSettings } from "./settings.ts";
import {
  MILTER_CHUNK_SIZE, SMFIC_BODY, SMFIC_BODYEOB, SMFIC_EOH, SMFIC_HEADER, SMFIP_NOBODY, SMFIP_NOEOH, SMFIP_NOHDRS,
  SMFIP_NR_BODY, SMFIP_NR_EOH, SMFIP_NR_HDR, type Field,
} from "./protocol.ts";

/** The transaction as this filter sees it. */
export interface FilterTransaction {
  /** open: being filtered; accepted: the filter wants no more of it; decided: `result` is its verdict, given at end of data. */
  state: "open" | "accepted" | "decided";
  result?: CheckResult;
  /** SMFIR_QUARANTINE's reason, applied at end of data unless a stronger verdict comes. */
  quarantine?: string;
}

/** What filtering a message needs of its connection's conversation with the filter (milter-session.ts). */
export interface FilterConnection {
  readonly settings: MilterSettings;
  readonly context: MilterContext;
  readonly tx: FilterTransaction | null;
  /** The filter is still consulted. */
  readonly active: boolean;
  /** The refusal every stage now answers with, if any. */
  readonly refusingWith: CheckResult | undefined;
  /** The filter negotiated SMFIP_HDR_LEADSPC. */
  readonly leadingSpace: boolean;
  wants(skipFlag: number): boolean;
  send(step: Step, deadline: number): Promise<StepAnswer | undefined>;
  /** A stage begins: its deadline. */
  stage(): number;
  decide(stage: string, d: Decision, quarantine: string | undefined): CheckResult | void;
  fail(stage: string, err: unknown): CheckResult | void;
  endTransaction(completed: boolean): void;
}

/**
 * One message as the filter sees it: header fields one by one, the end of
 * the header section, the body in chunks of at most 64 KiB (MILTER_CHUNK_SIZE),
 * then end of message, whose answer carries the filter's changes. The
 * content streams through: each step waits for the filter when it answers
 * that step, which holds the client back (back-pressure), and at most one
 * chunk is held here.
 *
 * Header values go as Sendmail sends them: without the one space after the
 * colon unless the filter negotiated SMFIP_HDR_LEADSPC, folds as bare LF.
 */
export class MilterMessage implements MessageCheck {
  private readonly session: FilterConnection;
  private readonly splitter: ContentSplitter;
  private readonly leadingSpace: boolean;
  /** Field names as sent, for placing the filter's header changes. */
  private readonly names: string[] = [];
  private pending: Buffer[] = [];
  private pendingLength = 0;
  /** The filter decided or asked to skip the body: no more chunks. */
  private skipBody = false;
  private ended = false;

  constructor(session: FilterConnection) {
    this.session = session;
    this.splitter = new ContentSplitter(session.context.headerSizeLimit);
    this.leadingSpace = session.leadingSpace;
  }

  async body(chunk: Buffer): Promise<void> {
    if (!this.open) return;
    await this.content(this.splitter.feed(chunk), this.session.stage());
  }

  async endOfData(): Promise<CheckResult | void> {
    const deadline = this.session.stage();
    if (this.open) {
      await this.content(this.splitter.finish(), deadline);
      if (this.open && this.pendingLength > 0 && !this.skipBody) await this.step(deadline, SMFIC_BODY, Buffer.concat(this.pending));
    }
    const tx = this.session.tx;
    const open = this.open && !this.splitter.tooLarge;
    this.ended = true;
    // The filter decided earlier, failed, or the header section was too large (the intake refuses the message).
    if (!open || tx === null) return this.settled();
    let answer: StepAnswer | undefined;
    try {
      answer = await this.session.send({ command: SMFIC_BODYEOB, fields: [], skipFlag: 0, noReplyFlag: 0, content: true }, deadline);
    } catch (err) {
      this.session.endTransaction(true);
      return this.session.fail("end of message", err);
    }
    this.session.endTransaction(true);
    if (answer === undefined) return this.session.refusingWith;
    const decided = this.session.decide("end of message", answer.decision, answer.quarantine);
    if (decided) return decided;
    if (answer.decision.kind === "discard") return { verdict: { action: "discard", reason: `milter ${this.session.settings.name}: discard` } };
    return this.changes(answer, tx.quarantine ?? answer.quarantine);
  }

  abort(): void {
    if (this.ended) return;
    this.ended = true;
    this.session.endTransaction(false);
  }

  /** The result when the filter stopped before end of message; the transaction is aborted for it. */
  private settled(): CheckResult | void {
    const refusal = this.session.refusingWith;
    const tx = this.session.tx;
    this.session.endTransaction(false);
    if (refusal) return refusal;
    return tx?.state === "decided" ? tx.result : undefined;
  }

  private get open(): boolean {
    return !this.ended && this.session.active && this.session.tx?.state === "open";
  }

  private async content(parts: ContentPart[], deadline: number): Promise<void> {
    for (const part of parts) {
      if (!this.open) return;
      switch (part.kind) {
        case "header": {
          this.names.push(part.name);
          const value = this.headerValue(part.value);
          if (this.session.active && this.wants(SMFIP_NOHDRS)) {
            await this.step(deadline, SMFIC_HEADER, undefined, [{ string: part.name }, { string: value }]);
          }
          break;
        }
        case "endOfHeaders":
          if (this.wants(SMFIP_NOEOH)) await this.step(deadline, SMFIC_EOH);
          break;
        case "body":
          if (this.skipBody || !this.wants(SMFIP_NOBODY)) break;
          this.pending.push(part.data);
          this.pendingLength += part.data.length;
          while (this.pendingLength >= MILTER_CHUNK_SIZE && !this.skipBody) {
            const all = Buffer.concat(this.pending);
            this.pending = [all.subarray(MILTER_CHUNK_SIZE)];
            this.pendingLength = all.length - MILTER_CHUNK_SIZE;
            if (!(await this.step(deadline, SMFIC_BODY, all.subarray(0, MILTER_CHUNK_SIZE)))) return;
          }
          break;
      }
    }
  }

  /** One content step; false when the filter decided (or failed) and wants no more content. */
  private async step(deadline: number, command: string, chunk?: Buffer, fields: Field[] = chunk ? [{ raw: chunk }] : []): Promise<boolean> {
    const noReply = command === SMFIC_HEADER ? SMFIP_NR_HDR : command === SMFIC_EOH ? SMFIP_NR_EOH : SMFIP_NR_BODY;
    const skip = command === SMFIC_HEADER ? SMFIP_NOHDRS : command === SMFIC_EOH ? SMFIP_NOEOH : SMFIP_NOBODY;
    try {
      const answer = await this.session.send({ command, fields, skipFlag: skip, noReplyFlag: noReply, content: true }, deadline);
      if (answer === undefined) return false;
      if (answer.decision.kind === "skip") {
        this.skipBody = true;
        this.pending = [];
        this.pendingLength = 0;
        return true;
      }
      this.session.decide(command === SMFIC_BODY ? "body" : "header", answer.decision, answer.quarantine);
      if (answer.decision.kind !== "continue") {
        this.skipBody = true;
        this.pending = [];
        this.pendingLength = 0;
      }
      return this.open;
    } catch (err) {
      this.session.fail(command === SMFIC_BODY ? "body" : "header", err);
      return false;
    }
  }

  private wants(skipFlag: number): boolean {
    return this.session.wants(skipFlag);
  }

  private headerValue(raw: Buffer): Buffer {
    const v = !this.leadingSpace && raw[0] === 0x20 ? raw.subarray(1) : raw;
    // Sendmail hands filters folded fields with LF alone between the lines.
    return v.includes(0x0d) ? Buffer.from(v.toString("latin1").replace(/\r\n/g, "\n"), "latin1") : v;
  }

  private changes(answer: StepAnswer, quarantine: string | undefined): CheckResult | void {
    const name = this.session.settings.name;
    const c = applyModifications(this.names, answer.modifications, this.leadingSpace);
    if (c.dropped.length > 0) {
      this.session.context.log.warn({ check: `milter:${name}`, dropped: c.dropped }, "milter changes dropped");
    }
    const recipients = c.add.length > 0 || c.remove.length > 0 ? { add: c.add, remove: c.remove } : undefined;
    const result: CheckResult = {
      ...(quarantine !== undefined ? { verdict: { action: "quarantine", reason: `milter ${name}: ${quarantine}` } } : {}),
      ...(c.headerEdits.length > 0 ? { headerEdits: c.headerEdits } : {}),
      ...(recipients ? { recipients } : {}),
    };
    return Object.keys(result).length > 0 ? result : undefined;
  }
}
