import type { Logger } from "pino";
import type { Clock } from "../mail/clock.ts";
import type { Awaitable, CheckResult } from "./check.ts";
import type { Stage } from "./merge.ts";
import { checkFailed, isWellFormed } from "./replies.ts";

/**
 * Calling a check safely: a check that throws, rejects, answers with a
 * malformed verdict or does not answer within the time allowed gets a
 * tempfail (451 4.3.0) — the client tries again later; nothing crashes and
 * nothing accepted is lost. This is how plugins and filters fail safe.
 */

export interface Invocation {
  /** Longest a check may take at one stage (ms). */
  readonly timeout: number;
  readonly timer: Pick<Clock, "schedule" | "cancel">;
  readonly log: Logger;
}

/** A check failed to answer: reject the command for now. */
export function failed(check: string, stage: Stage, err: unknown, log: Logger): CheckResult {
  const reason = err instanceof CheckTimeout ? err.message : `check failed: ${err instanceof Error ? err.message : String(err)}`;
  log.error({ check, stage, err: err instanceof CheckTimeout ? undefined : err }, reason);
  return { verdict: { action: "tempfail", reply: checkFailed }, reason };
}

export class CheckTimeout extends Error {
  constructor(check: string, stage: Stage, ms: number) {
    super(`check ${check} gave no answer at ${stage} within ${ms} ms`);
    this.name = "CheckTimeout";
  }
}

export function isPromiseLike<T>(v: T | PromiseLike<T>): v is PromiseLike<T> {
  return typeof (v as PromiseLike<T> | null)?.then === "function";
}

/** `p`, or a CheckTimeout after `ms`. */
export function withTimeout<T>(p: PromiseLike<T>, ms: number, timer: Invocation["timer"], check: string, stage: Stage): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const handle = timer.schedule(() => reject(new CheckTimeout(check, stage, ms)), ms);
    p.then(
      (v) => {
        timer.cancel(handle);
        resolve(v);
      },
      (err: unknown) => {
        timer.cancel(handle);
        reject(err);
      },
    );
  });
}

/**
 * Call one stage of one check: its result (undefined for "accept, nothing to
 * add"), or the failure result. A check that answers at once is answered at
 * once (no promise, no timer): only a pending answer is given the timeout.
 */
export function invoke(
  how: Invocation, check: string, stage: Stage, call: () => Awaitable<CheckResult | void | undefined>,
): Awaitable<CheckResult | undefined> {
  let r: Awaitable<CheckResult | void | undefined>;
  try {
    r = call();
  } catch (err) {
    return failed(check, stage, err, how.log);
  }
  if (!isPromiseLike(r)) return wellFormed(how, check, stage, r);
  return withTimeout(r, how.timeout, how.timer, check, stage).then(
    (v) => wellFormed(how, check, stage, v),
    (err: unknown) => failed(check, stage, err, how.log),
  );
}

function wellFormed(how: Invocation, check: string, stage: Stage, result: CheckResult | void | undefined): CheckResult | undefined {
  if (result === undefined || result === null) return undefined;
  if (result.verdict && !isWellFormed(result.verdict)) {
    return failed(check, stage, new Error(`malformed ${result.verdict.action} verdict`), how.log);
  }
  return result;
}
