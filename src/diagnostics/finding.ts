/**
 * What `petrel check` and `petrel doctor` report: findings, each with a
 * severity, one line saying what was seen and — when something is wrong —
 * one line saying what to do about it; and the exit status from the worst.
 */

/** ok: as it should be; info: worth knowing, nothing to do; warn: works, but something will bite; fail: broken. */
export type Severity = "ok" | "info" | "warn" | "fail";

export interface Finding {
  /** What was looked at: "dns", "connect", "tls", "certificate", "auth", "mx", "spf", … */
  readonly check: string;
  readonly severity: Severity;
  /** What was seen, in plain words. */
  readonly message: string;
  /** What to do about it (warn and fail). */
  readonly fix?: string;
}

const RANK: Record<Severity, number> = { ok: 0, info: 0, warn: 1, fail: 2 };

export const ok = (check: string, message: string): Finding => ({ check, severity: "ok", message });
export const info = (check: string, message: string): Finding => ({ check, severity: "info", message });
export const warn = (check: string, message: string, fix?: string): Finding => ({ check, severity: "warn", message, ...(fix ? { fix } : {}) });
export const fail = (check: string, message: string, fix?: string): Finding => ({ check, severity: "fail", message, ...(fix ? { fix } : {}) });

/** 0 when nothing is wrong (ok and info only), 1 when the worst is a warning, 2 when something failed. */
export function exitStatus(findings: readonly Finding[]): 0 | 1 | 2 {
  return findings.reduce<0 | 1 | 2>((worst, f) => Math.max(worst, RANK[f.severity]) as 0 | 1 | 2, 0);
}

export function worstSeverity(findings: readonly Finding[]): "ok" | "warn" | "fail" {
  return (["ok", "warn", "fail"] as const)[exitStatus(findings)];
}

/**
 * One finding per line — "OK    tls          TLSv1.3 …" — and its fix
 * indented below; then a closing line counting warnings and failures.
 */
export function formatFindings(findings: readonly Finding[]): string {
  const width = Math.max(8, ...findings.map((f) => f.check.length));
  const lines: string[] = [];
  for (const f of findings) {
    lines.push(`${f.severity.toUpperCase().padEnd(5)} ${f.check.padEnd(width)} ${f.message}`);
    if (f.fix) lines.push(`${" ".repeat(6 + width)} fix: ${f.fix}`);
  }
  const warnings = findings.filter((f) => f.severity === "warn").length;
  const failures = findings.filter((f) => f.severity === "fail").length;
  lines.push(failures + warnings === 0
    ? "All good."
    : `${failures} failure${failures === 1 ? "" : "s"}, ${warnings} warning${warnings === 1 ? "" : "s"}.`);
  return lines.join("\n") + "\n";
}
