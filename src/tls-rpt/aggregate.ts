/**
 * The day's TLS sessions, counted per policy domain and policy (RFC 8460 §4.1: reports cover
 * whole UTC days): successful and failed sessions, and the failures grouped by what they have
 * in common (result type, sending and receiving addresses, MX host name, reason code), which is
 * what a report's "failure-details" lists with a "failed-session-count".
 *
 * Counts live in memory and are written to <dataDir>/tls-rpt/<YYYY-MM-DD>.json every minute
 * (by the injected clock) and on close, temporary name then rename, so a restart loses at most
 * a minute of counting and never a finished day. The daily sender (report-sender.ts) reads the
 * finished days and removes each once its reports are out. Bounded: at most `maxDomains`
 * policy domains a day and `maxFailureGroups` failure groups a policy; beyond that sessions
 * are still counted in the policy's totals.
 */
import { mkdir, readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { writeAtomically } from "../disk/atomic-file.ts";
import type { Clock } from "../mail/clock.ts";
import { utcDay, type PolicyCounts, type TakenReport, type TlsRptCounts } from "./day-counts.ts";
import type { FailureDetail, ReportedPolicy, TlsSessionResult } from "./session-result.ts";

export { utcDay, type FailureGroup, type PolicyCounts } from "./day-counts.ts";

/** One UTC day: policy domain → its policies' counts. `sent`: policy domains whose report is out. */
export interface DayCounts {
  readonly day: string;
  readonly domains: Record<string, PolicyCounts[]>;
  sent: string[];
}

export interface AggregateOptions {
  readonly dir: string;
  readonly clock: Clock;
  readonly maxDomains?: number;
  readonly maxFailureGroups?: number;
  readonly onError?: (message: string) => void;
}

const FLUSH_EVERY_MS = 60_000;
const DAY_FILE = /^(\d{4}-\d{2}-\d{2})\.json$/;

function sameFailure(a: FailureDetail, b: FailureDetail): boolean {
  return a.resultType === b.resultType && a.sendingMtaIp === b.sendingMtaIp && a.receivingMxHostname === b.receivingMxHostname &&
    a.receivingIp === b.receivingIp && a.failureReasonCode === b.failureReasonCode;
}

function samePolicy(a: ReportedPolicy, b: ReportedPolicy): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export class TlsRptAggregate implements TlsRptCounts {
  /** One node: its counts of the day before midnight are in its memory or its file. */
  readonly settleMs = 0;
  readonly #o: AggregateOptions;
  /** Days held in memory (today, and any day read back for sending). */
  readonly #days = new Map<string, DayCounts>();
  readonly #dirty = new Set<string>();
  #timer: unknown;
  #loaded: Promise<void> | undefined;
  /** Writes and removals one after another, so a removed day is never written back. */
  #disk: Promise<void> = Promise.resolve();
  #warned = false;

  constructor(options: AggregateOptions) {
    this.#o = options;
  }

  /** Read today's counts back from disk (after a restart) and start the periodic flush. */
  async start(): Promise<void> {
    await this.#loadToday();
    this.#schedule();
  }

  record(result: TlsSessionResult): void {
    const day = this.#dayInMemory(utcDay(this.#o.clock.now()));
    const domain = result.policy.domain;
    let list = day.domains[domain];
    if (!list) {
      if (Object.keys(day.domains).length >= (this.#o.maxDomains ?? 10_000)) {
        if (!this.#warned) this.#o.onError?.(`TLS-RPT: more than ${this.#o.maxDomains ?? 10_000} policy domains on ${day.day}; sessions to further domains are not counted`);
        this.#warned = true;
        return;
      }
      list = day.domains[domain] = [];
    }
    let counts = list.find((c) => samePolicy(c.policy, result.policy));
    if (!counts) list.push((counts = { policy: result.policy, successful: 0, failed: 0, failures: [] }));
    if (result.failure === undefined) counts.successful++;
    else {
      counts.failed++;
      const group = counts.failures.find((f) => sameFailure(f, result.failure!));
      if (group) group.count++;
      else if (counts.failures.length < (this.#o.maxFailureGroups ?? 100)) counts.failures.push({ ...result.failure, count: 1 });
    }
    this.#dirty.add(day.day);
  }

  /** Finished days (before today, by the clock) with counts, oldest first. */
  async finishedDays(): Promise<string[]> {
    const today = utcDay(this.#o.clock.now());
    const onDisk = await this.#listFiles();
    return [...new Set([...onDisk, ...this.#days.keys()])].filter((d) => d < today).sort();
  }

  async day(day: string): Promise<DayCounts | undefined> {
    const held = this.#days.get(day);
    if (held) return held;
    const read = await this.#read(day);
    if (read) this.#days.set(day, read);
    return read;
  }

  /** Remember that `domain`'s report for `day` is out (written at the next flush). */
  markSent(day: string, domain: string): void {
    const d = this.#days.get(day);
    if (!d || d.sent.includes(domain)) return;
    d.sent.push(domain);
    this.#dirty.add(day);
  }

  async takeReport(day: string, passed: ReadonlySet<string>, idFor: (domain: string) => string): Promise<TakenReport | undefined> {
    const counts = await this.day(day);
    if (!counts) return undefined;
    const next = Object.entries(counts.domains).find(([domain]) => !counts.sent.includes(domain) && !passed.has(domain));
    return next ? { domain: next[0], policies: next[1], reportId: idFor(next[0]) } : undefined;
  }

  async reportSent(day: string, domain: string): Promise<void> {
    await this.day(day); // back in memory if a flush let it go meanwhile
    this.markSent(day, domain);
  }

  /** Nothing to write: a report not marked sent is tried again at the next run. */
  async reportDeferred(): Promise<void> {}

  async dayDone(day: string, giveUp: boolean): Promise<void> {
    const counts = this.#days.get(day);
    if (!counts) return; // unreadable: left as it is
    const pending = Object.keys(counts.domains).some((domain) => !counts.sent.includes(domain));
    if (!pending || giveUp) await this.remove(day);
    else await this.flush();
  }

  /** Forget a day entirely (all its reports are out, or it is too old to report). */
  remove(day: string): Promise<void> {
    this.#days.delete(day);
    this.#dirty.delete(day);
    return this.#serially(() => rm(join(this.#o.dir, `${day}.json`), { force: true }));
  }

  flush(): Promise<void> {
    return this.#serially(() => this.#flush());
  }

  #serially(work: () => Promise<void>): Promise<void> {
    const next = this.#disk.then(work, work);
    this.#disk = next.catch(() => {});
    return next;
  }

  async #flush(): Promise<void> {
    const today = utcDay(this.#o.clock.now());
    for (const day of [...this.#dirty]) {
      this.#dirty.delete(day);
      const d = this.#days.get(day);
      if (!d) continue;
      try {
        await this.#write(d);
      } catch (err) {
        this.#dirty.add(day);
        this.#o.onError?.(`TLS-RPT counts for ${day} not saved: ${(err as Error).message}`);
      }
    }
    // Finished days that were only read for sending need not stay in memory.
    for (const day of [...this.#days.keys()]) if (day < today && !this.#dirty.has(day)) this.#days.delete(day);
  }

  async close(): Promise<void> {
    if (this.#timer !== undefined) this.#o.clock.cancel(this.#timer);
    this.#timer = undefined;
    await this.flush();
  }

  #schedule(): void {
    this.#timer = this.#o.clock.schedule(() => {
      void this.flush().finally(() => {
        if (this.#timer !== undefined) this.#schedule();
      });
    }, FLUSH_EVERY_MS);
  }

  #dayInMemory(day: string): DayCounts {
    let d = this.#days.get(day);
    if (!d) this.#days.set(day, (d = { day, domains: {}, sent: [] }));
    return d;
  }

  async #loadToday(): Promise<void> {
    this.#loaded ??= (async () => {
      const today = utcDay(this.#o.clock.now());
      const saved = await this.#read(today);
      if (!saved) return;
      // Sessions counted before the file was read are added to what it held.
      const counted = this.#days.get(today);
      this.#days.set(today, saved);
      for (const list of Object.values(counted?.domains ?? {})) {
        for (const c of list) {
          for (let i = 0; i < c.successful; i++) this.record({ policy: c.policy });
          for (const { count, ...failure } of c.failures) for (let i = 0; i < count; i++) this.record({ policy: c.policy, failure });
        }
      }
    })();
    await this.#loaded;
  }

  async #listFiles(): Promise<string[]> {
    try {
      return (await readdir(this.#o.dir)).flatMap((n) => DAY_FILE.exec(n)?.[1] ?? []);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") this.#o.onError?.(`TLS-RPT directory ${this.#o.dir} unreadable: ${(err as Error).message}`);
      return [];
    }
  }

  async #read(day: string): Promise<DayCounts | undefined> {
    let text: string;
    try {
      text = await readFile(join(this.#o.dir, `${day}.json`), "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") this.#o.onError?.(`TLS-RPT counts for ${day} unreadable: ${(err as Error).message}`);
      return undefined;
    }
    try {
      const d = JSON.parse(text) as DayCounts;
      if (d.day !== day || typeof d.domains !== "object" || !Array.isArray(d.sent)) throw new Error("not a day of TLS-RPT counts");
      return d;
    } catch (err) {
      this.#o.onError?.(`TLS-RPT counts for ${day} unreadable: ${(err as Error).message}`);
      return undefined;
    }
  }

  async #write(d: DayCounts): Promise<void> {
    await mkdir(this.#o.dir, { recursive: true, mode: 0o700 });
    await writeAtomically(join(this.#o.dir, `${d.day}.json`), JSON.stringify(d));
  }
}
