/**
 * What a reload can change in a running server, and what only a restart
 * can: the keys of two parsed configurations compared, sorted into what is
 * applied (to new connections, new deliveries) and what is left as it was,
 * named so the operator knows to restart. Pure: mta.ts applies the plan.
 */
import type { Config } from "./schema.ts";

/**
 * Applied by a reload: limits, the banner and PROXY peers (new connections);
 * the checks (a new policy pipeline for new connections; those in progress
 * keep theirs); routes, outbound settings and the queue's timing (new
 * deliveries); DNS servers; the log level; the password policy; the DKIM selectors that sign
 * (their keys are loaded again on every reload, so new mail is signed with the new ones).
 */
export const LIVE_KEYS = [
  "limits", "smtp", "proxyProtocol", "submission", "policy", "milters", "dnsbl",
  "transport", "outbound", "queue", "dns.servers", "log.level", "passwords", "dkim",
] as const;

export type LiveKey = (typeof LIVE_KEYS)[number];

/** What a reload did. */
export interface ReloadReport {
  /** Keys whose new values are in force (certificates are re-read on every reload). */
  readonly applied: readonly string[];
  /** Keys that changed in the file but keep their old values until a restart. */
  readonly needsRestart: readonly string[];
}

function changed(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) !== JSON.stringify(b);
}

/** The keys, dotted, whose values differ between `before` and `after`. */
export function changedKeys(before: Config, after: Config): string[] {
  const out: string[] = [];
  const keys = new Set([...Object.keys(before), ...Object.keys(after)]);
  for (const key of keys) {
    const a = (before as Record<string, unknown>)[key];
    const b = (after as Record<string, unknown>)[key];
    if (!changed(a, b)) continue;
    if ((key === "dns" || key === "log") && a && b) {
      for (const sub of new Set([...Object.keys(a), ...Object.keys(b)])) {
        if (changed((a as Record<string, unknown>)[sub], (b as Record<string, unknown>)[sub])) out.push(`${key}.${sub}`);
      }
    } else out.push(key);
  }
  return out.sort();
}

/** The changed keys a reload cannot apply. */
export function restartOnlyChanges(before: Config, after: Config): { live: LiveKey[]; restart: string[] } {
  const live: LiveKey[] = [];
  const restart: string[] = [];
  for (const key of changedKeys(before, after)) {
    if ((LIVE_KEYS as readonly string[]).includes(key)) live.push(key as LiveKey);
    else restart.push(key);
  }
  return { live, restart };
}

/**
 * The configuration a reload puts in force: the one running, with the
 * values of the keys a reload applies taken from the file. The others keep
 * their running values until a restart (and the next reload names them again).
 */
export function reloadedConfig(running: Config, file: Config, live: readonly LiveKey[]): Config {
  const out = structuredClone(running) as Record<string, unknown>;
  const from = file as unknown as Record<string, Record<string, unknown>>;
  for (const key of live) {
    const [top, sub] = key.split(".");
    if (sub === undefined) out[top] = structuredClone(from[top]);
    else out[top] = { ...(out[top] as Record<string, unknown>), [sub]: structuredClone(from[top][sub]) };
  }
  return out as unknown as Config;
}
