/**
 * When to try a deferred recipient again: exponential backoff between a
 * minimum and a maximum, like Postfix's minimal_backoff_time (300 s) and
 * maximal_backoff_time (4000 s), with a little jitter so that a burst of
 * deferrals does not come back as a burst.
 */
export interface BackoffSettings {
  /** First retry after this (ms). */
  readonly minBackoff: number;
  /** Never wait longer than this between tries (ms). */
  readonly maxBackoff: number;
}

/** Delay before attempt number `attempts + 1`, given `attempts` failed tries so far (≥ 1). */
export function retryDelay(attempts: number, s: BackoffSettings, random: () => number): number {
  const exp = s.minBackoff * 2 ** Math.min(Math.max(attempts - 1, 0), 20);
  const base = Math.min(exp, s.maxBackoff);
  // ±10 % jitter, never below the minimum.
  const jittered = base * (0.9 + 0.2 * random());
  return Math.round(Math.max(s.minBackoff, Math.min(jittered, s.maxBackoff)));
}
