/**
 * Where the day counts of TLS reporting live (RFC 8460 §4.1: a report covers one UTC day per
 * policy domain), seen from the two sides that use them: the remote agent records sessions
 * (TlsSessionRecorder), and the daily sender (report-sender.ts) takes each finished day's
 * reports to send. Two places implement it: the data directory of one node (aggregate.ts) and,
 * with `storage.kind: postgres`, the cluster's database
 * (storage/postgres/postgres-tls-rpt-counts.ts), where every node adds its counts to the same
 * rows and each report is taken by exactly one node.
 */
import type { FailureDetail, ReportedPolicy, TlsSessionRecorder } from "./session-result.ts";

export interface FailureGroup extends FailureDetail {
  count: number;
}

export interface PolicyCounts {
  readonly policy: ReportedPolicy;
  successful: number;
  failed: number;
  failures: FailureGroup[];
}

/** One policy domain's report of one day, taken by this node to send. */
export interface TakenReport {
  readonly domain: string;
  readonly policies: readonly PolicyCounts[];
  /** The report-id to send it under: the same for every try of this (day, domain), whichever node sends it. */
  readonly reportId: string;
}

export interface TlsRptCounts extends TlsSessionRecorder {
  /**
   * How long after a day ends its counts are complete: every node has written what it counted
   * before midnight (0 for one node, whose own counts are in memory).
   */
  readonly settleMs: number;
  start(): Promise<void>;
  flush(): Promise<void>;
  close(): Promise<void>;
  /** Days before today (by the clock) with reports still to send, oldest first. */
  finishedDays(): Promise<string[]>;
  /**
   * The next policy domain of `day` whose report is for this node to send now, none of `passed`
   * (those this run already handled); undefined when no other is left. `idFor`: this node's
   * report-id for a domain, kept for the report when it is the first to take it.
   */
  takeReport(day: string, passed: ReadonlySet<string>, idFor: (domain: string) => string): Promise<TakenReport | undefined>;
  /** `domain`'s report of `day` is out, or it takes none: never sent again. */
  reportSent(day: string, domain: string): Promise<void>;
  /** `domain`'s report of `day` could not go (a failed lookup, a full queue): tried at the next run, from `retryAt` (ms). */
  reportDeferred(day: string, domain: string, retryAt: number): Promise<void>;
  /** This run is through `day`: forget it when every report is out or `giveUp` (too old), else keep it for the next run. */
  dayDone(day: string, giveUp: boolean): Promise<void>;
}

/** "2026-01-31" for a time in ms. */
export function utcDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}
