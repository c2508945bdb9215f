import { MilterConnection, MilterUnavailable } from "./connection.ts";
import type { ServiceAddress } from "../../mail/service-address.ts";
import { optionNegotiation, parseNegotiation, type Negotiated } from "./negotiation.ts";
import { macroPacket, type MacroValues } from "./macros.ts";
import { parseAnswer, type Decision, type Modification } from "./answers.ts";
import { encodePacket, MilterProtocolError, SMFIC_ABORT, SMFIC_BODY, SMFIC_BODYEOB, SMFIC_DATA, SMFIC_QUIT, type Field } from "./protocol.ts";

/**
 * The MTA side of one milter conversation (one per SMTP connection, as
 * libmilter expects): option negotiation, then steps — the step's macros,
 * the step itself unless the filter asked to skip it, and its answer unless
 * the filter said it will not answer that step (SMFIP_NR_*).
 */

export interface MilterTimeouts {
  /** Connecting (Postfix milter_connect_timeout). */
  readonly connect: number;
  /** Negotiation and each envelope step (milter_command_timeout). */
  readonly command: number;
  /** Each header, body and end-of-message step (milter_content_timeout); SMFIR_PROGRESS restarts it. */
  readonly content: number;
}

export interface StepAnswer {
  readonly decision: Decision;
  /** Changes asked for before the decision (end of message only). */
  readonly modifications: readonly Modification[];
  /** SMFIR_QUARANTINE's reason, if the filter sent one. */
  readonly quarantine?: string;
}

export interface Step {
  readonly command: string;
  readonly fields: readonly Field[];
  /** The SMFIP_NO* bit with which the filter declines this step (0: it cannot). */
  readonly skipFlag: number;
  /** The SMFIP_NR_* bit with which the filter declines to answer (0: it always answers). */
  readonly noReplyFlag: number;
  /** A header, body or end-of-message step: the content timeout applies. */
  readonly content: boolean;
}

const CONTINUE: StepAnswer = { decision: { kind: "continue" }, modifications: [] };
/** Answers to one step, progress included: a filter cannot keep a step going forever. */
const MAX_ANSWERS = 10_000;

export class MilterClient {
  readonly negotiated: Negotiated;
  private readonly connection: MilterConnection;
  private readonly timeouts: MilterTimeouts;

  private constructor(connection: MilterConnection, negotiated: Negotiated, timeouts: MilterTimeouts) {
    this.connection = connection;
    this.negotiated = negotiated;
    this.timeouts = timeouts;
  }

  /** Connect and negotiate, within the timeouts and before `deadline` (a time in ms, see `wait`). */
  static async open(address: ServiceAddress, timeouts: MilterTimeouts, deadline = Infinity): Promise<MilterClient> {
    const connection = await MilterConnection.open(address, wait(timeouts.connect, deadline));
    try {
      await connection.write([optionNegotiation()], wait(timeouts.command, deadline));
      const negotiated = parseNegotiation(await connection.read(wait(timeouts.command, deadline)));
      return new MilterClient(connection, negotiated, timeouts);
    } catch (err) {
      connection.close();
      throw err;
    }
  }

  /** The filter wants this step (it did not set the step's SMFIP_NO* bit, and its version has the step). */
  wants(skipFlag: number, command?: string): boolean {
    // SMFIC_DATA exists from protocol version 4 on; older filters would drop the connection.
    if (command === SMFIC_DATA && this.negotiated.version < 4) return false;
    return skipFlag === 0 || (this.negotiated.steps & skipFlag) === 0;
  }

  /** Send the step's macros and the step, and read its answer, all before `deadline`. */
  async step(step: Step, macros: MacroValues, deadline = Infinity): Promise<StepAnswer> {
    const packets: Buffer[] = [];
    const macro = macroPacket(step.command, macros, this.negotiated.macros);
    if (macro) packets.push(macro);
    const send = this.wants(step.skipFlag, step.command);
    if (send) packets.push(encodePacket(step.command, ...step.fields));
    const timeout = step.content ? this.timeouts.content : this.timeouts.command;
    await this.connection.write(packets, wait(timeout, deadline));
    if (!send || (step.noReplyFlag !== 0 && (this.negotiated.steps & step.noReplyFlag) !== 0)) return CONTINUE;
    return this.answer(step.command, timeout, deadline);
  }

  /** SMFIC_ABORT: the transaction ended without a message; the filter does not answer. */
  async abort(): Promise<void> {
    await this.connection.write([encodePacket(SMFIC_ABORT)], this.timeouts.command);
  }

  /** SMFIC_QUIT and close; never waits. */
  quit(): void {
    this.connection.close(encodePacket(SMFIC_QUIT));
  }

  /** Close without a word (after a failure). */
  drop(): void {
    this.connection.close();
  }

  get closed(): boolean {
    return this.connection.closed;
  }

  private async answer(command: string, timeout: number, deadline: number): Promise<StepAnswer> {
    const modifications: Modification[] = [];
    let quarantine: string | undefined;
    const atEnd = command === SMFIC_BODYEOB;
    for (let n = 0; n < MAX_ANSWERS; n++) {
      // Each answer restarts the timeout (SMFIR_PROGRESS is for that); the deadline stays.
      const a = parseAnswer(await this.connection.read(wait(timeout, deadline)), atEnd);
      switch (a.kind) {
        case "progress": continue;
        case "quarantine": quarantine = a.reason; continue;
        case "modification": modifications.push(a.modification); continue;
        case "decision":
          if (a.decision.kind === "skip" && command !== SMFIC_BODY) throw new MilterProtocolError(`SMFIR_SKIP in answer to "${command}"; it only answers a body chunk`);
          return { decision: a.decision, modifications, quarantine };
      }
    }
    throw new MilterUnavailable(`more than ${MAX_ANSWERS} answers to one step`);
  }
}

/**
 * How long to wait: `timeout`, or less when `deadline` (Date.now() time) comes
 * first — the policy pipeline gives a check a limited time per stage, and the
 * filter's default action must apply before the pipeline gives up on it.
 */
function wait(timeout: number, deadline: number): number {
  const left = deadline - Date.now();
  if (left <= 0) throw new MilterUnavailable("out of time for this stage (policy.timeout)");
  return Math.min(timeout, left);
}
