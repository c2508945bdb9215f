/**
 * Sizes and durations as a person writes them in the configuration file.
 *
 *   sizes:     26214400, "25MiB", "10MB", "512 KiB", "100B"
 *              (B; KB, MB, GB are powers of 1000; KiB, MiB, GiB powers of 1024)
 *   durations: 300 (a bare number is SECONDS), "500ms", "30s", "5m", "1h", "5d"
 *              (parsed to milliseconds); the unit may follow a space and be a
 *              word, as people write it: "5 min", "30 sec", "2 hours", "1 day"
 *
 * Units are case-insensitive; "m" is always minutes (never months).
 */

export const SIZE_ALLOWED = 'expected a size such as 26214400, "25MiB" or "10MB"';
export const DURATION_ALLOWED = 'expected a duration: a number of seconds such as 300, or "500ms", "30s", "5m" (or "5 min"), "1h", "5d"';

const SIZE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1000,
  mb: 1000 ** 2,
  gb: 1000 ** 3,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
};

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

const DURATION_UNITS: Record<string, number> = {
  ms: 1, msec: 1, msecs: 1, millisecond: 1, milliseconds: 1,
  s: SECOND, sec: SECOND, secs: SECOND, second: SECOND, seconds: SECOND,
  m: MINUTE, min: MINUTE, mins: MINUTE, minute: MINUTE, minutes: MINUTE,
  h: HOUR, hr: HOUR, hrs: HOUR, hour: HOUR, hours: HOUR,
  d: DAY, day: DAY, days: DAY,
};

/** Bytes, or undefined when the value is not a size. Case-insensitive units ("25mib" works). */
export function parseSize(value: unknown): number | undefined {
  if (typeof value === "number") {
    return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
  }
  if (typeof value !== "string") return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(value);
  if (!m) return undefined;
  const unit = m[2] === "" ? 1 : SIZE_UNITS[m[2].toLowerCase()];
  if (unit === undefined) return undefined;
  const bytes = Math.round(Number(m[1]) * unit);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/** Milliseconds, or undefined when the value is not a duration. */
export function parseDuration(value: unknown): number | undefined {
  if (typeof value === "number") {
    if (!Number.isFinite(value) || value < 0) return undefined;
    const ms = Math.round(value * 1000);
    return Number.isSafeInteger(ms) ? ms : undefined;
  }
  if (typeof value !== "string") return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(value);
  if (!m) return undefined;
  const unit = m[2] === "" ? SECOND : DURATION_UNITS[m[2].toLowerCase()];
  if (unit === undefined) return undefined;
  const ms = Math.round(Number(m[1]) * unit);
  return Number.isSafeInteger(ms) ? ms : undefined;
}

/** "26214400" → "25MiB"-style text for messages; exact when possible. */
export function formatSize(bytes: number): string {
  for (const [unit, n] of [["GiB", 1024 ** 3], ["MiB", 1024 ** 2], ["KiB", 1024]] as const) {
    if (bytes >= n && bytes % n === 0) return `${bytes / n}${unit}`;
  }
  return `${bytes}B`;
}

/** 300000 → "5m", for messages and the example file. */
export function formatDuration(ms: number): string {
  for (const [unit, n] of [["d", DAY], ["h", HOUR], ["m", MINUTE], ["s", SECOND]] as const) {
    if (ms >= n && ms % n === 0) return `${ms / n}${unit}`;
  }
  return `${ms}ms`;
}
