/** min / median / max of a few runs, and the ratios between them. */

export interface Summary {
  readonly runs: number[];
  readonly min: number;
  readonly median: number;
  readonly max: number;
}

export function summarize(values: readonly number[]): Summary | null {
  const runs = values.filter((v) => Number.isFinite(v));
  if (runs.length === 0) return null;
  const s = [...runs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  const median = s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  return { runs, min: s[0], median, max: s[s.length - 1] };
}

/** a / b, or null when either side is missing or b is 0. */
export function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  if (a === null || a === undefined || b === null || b === undefined || b === 0) return null;
  return a / b;
}
