/**
 * TLS-RPT day counts of the whole cluster (`storage.kind: postgres`), so that each policy domain
 * gets one report a day covering every node's sessions (RFC 8460 §4: one report per reporting
 * organization, policy domain and period) instead of one partial report per node.
 *
 * Counting: each node counts in memory what happened since its last write and, every minute (the
 * injected clock) and on close, adds it to the rows with upserts (`n = n + EXCLUDED.n`): one
 * statement per table and day, never a row per session. Rows:
 * - `tlsrpt_day`: one per UTC day. A write locks it (`FOR UPDATE`) first, so writes of the same
 *   day follow one another and the bounds below hold exactly. `closed`: a node has begun taking
 *   the day's reports; counts written later are dropped (and said in the log), never sent as a
 *   second, partial report. `done`: every report is out, or the day was given up; the row stays
 *   `keepDays` + 1 days so a late write still finds it closed.
 * - `tlsrpt_domain`: a policy domain of a day — at most `maxDomains` a day; sessions to further
 *   domains are not counted (as on one node). `sent`: its report is out. `holder`, `hold_until`:
 *   the node that took it to send, until when (ms, the nodes' clocks — kept in step by NTP); a
 *   domain whose send failed has no holder and `hold_until` at the next run.
 *   `report_id`: the report-id of the first node that took it, used by every later try.
 * - `tlsrpt_policy`: successful and failed sessions per policy (its canonical JSON, keyed by a
 *   hash of it).
 * - `tlsrpt_failure`: failure groups per policy with their counts — at most `maxFailureGroups` a
 *   policy; sessions of further groups are in the policy's `failed` total only.
 *
 * Sending: a node takes a domain's report in a transaction (`FOR UPDATE SKIP LOCKED`: nodes
 * taking at the same moment never wait for each other nor take the same one), for `claimMs`.
 * A node that dies holding it lets it go when that time is over, and another node sends it. A
 * node that dies after sending but before `sent` is written makes the report go twice, with the
 * same report-id (at-least-once, as everything else the queue does).
 *
 * The database going away never loses what was counted meanwhile: a failed write keeps the
 * counts in memory for the next one, for as long as their day could still be reported.
 */
import { createHash } from "node:crypto";
import type { Clock } from "../../mail/clock.ts";
import { utcDay, type FailureGroup, type PolicyCounts, type TakenReport, type TlsRptCounts } from "../../tls-rpt/day-counts.ts";
import type { FailureDetail, ReportedPolicy, TlsSessionResult } from "../../tls-rpt/session-result.ts";
import { inTransaction, type PostgresClient, type PostgresPool } from "./postgres-pool.ts";

export interface PostgresTlsRptCountsOptions {
  readonly pool: PostgresPool;
  /** This node's name (the holder of the reports it takes). */
  readonly node: string;
  readonly clock: Clock;
  readonly maxDomains?: number;
  readonly maxFailureGroups?: number;
  /** Days older than this are not reported (the sender's `keepDays`, default 3). */
  readonly keepDays?: number;
  /** How long a taken report stays this node's before another node may send it (default 10 min). */
  readonly claimMs?: number;
  readonly onError?: (message: string) => void;
}

const FLUSH_EVERY_MS = 60_000;
const DAY = 86_400_000;

/** Sessions of one policy counted since the last write. */
interface PolicyIncrement {
  readonly policy: string;
  successful: number;
  failed: number;
  /** failure key → its canonical JSON and count */
  readonly failures: Map<string, { readonly failure: string; count: number }>;
}

/** day → policy domain → policy key → increments */
type Increments = Map<string, Map<string, Map<string, PolicyIncrement>>>;

/** The policy as JSON with its fields in one order, so equal policies are equal text. */
function policyJson(p: ReportedPolicy): string {
  if (p.type === "sts") return JSON.stringify({ type: p.type, domain: p.domain, lines: p.lines, mxHost: p.mxHost });
  if (p.type === "tlsa") return JSON.stringify({ type: p.type, domain: p.domain, lines: p.lines });
  return JSON.stringify({ type: p.type, domain: p.domain });
}

/** The five fields a failure group is told apart by (as aggregate.ts compares them). */
function failureJson(f: FailureDetail): string {
  return JSON.stringify({
    resultType: f.resultType, sendingMtaIp: f.sendingMtaIp, receivingMxHostname: f.receivingMxHostname,
    receivingIp: f.receivingIp, failureReasonCode: f.failureReasonCode,
  });
}

const keyOf = (json: string): string => createHash("sha256").update(json).digest("hex");

function sessions(day: Map<string, Map<string, PolicyIncrement>>): number {
  let n = 0;
  for (const policies of day.values()) for (const p of policies.values()) n += p.successful + p.failed;
  return n;
}

export class PostgresTlsRptCounts implements TlsRptCounts {
  /**
   * Every node writes what it counted each minute: five minutes after midnight the day before
   * is complete in the database, with room for a slow write and clocks a little apart.
   */
  readonly settleMs = 5 * FLUSH_EVERY_MS;
  readonly #o: PostgresTlsRptCountsOptions;
  #pending: Increments = new Map();
  #timer: unknown;
  #writing: Promise<void> = Promise.resolve();
  #warnedDomains = false;

  constructor(options: PostgresTlsRptCountsOptions) {
    this.#o = options;
  }

  get #maxDomains(): number {
    return this.#o.maxDomains ?? 10_000;
  }

  get #maxFailureGroups(): number {
    return this.#o.maxFailureGroups ?? 100;
  }

  get #keepDays(): number {
    return this.#o.keepDays ?? 3;
  }

  async start(): Promise<void> {
    this.#schedule();
  }

  record(result: TlsSessionResult): void {
    const day = utcDay(this.#o.clock.now());
    let domains = this.#pending.get(day);
    if (!domains) this.#pending.set(day, (domains = new Map()));
    const domain = result.policy.domain;
    let policies = domains.get(domain);
    if (!policies) {
      if (domains.size >= this.#maxDomains) return this.#tooManyDomains(day);
      domains.set(domain, (policies = new Map()));
    }
    const json = policyJson(result.policy);
    const key = keyOf(json);
    let p = policies.get(key);
    if (!p) policies.set(key, (p = { policy: json, successful: 0, failed: 0, failures: new Map() }));
    if (result.failure === undefined) {
      p.successful++;
      return;
    }
    p.failed++;
    const failure = failureJson(result.failure);
    const fkey = keyOf(failure);
    const group = p.failures.get(fkey);
    if (group) group.count++;
    else if (p.failures.size < this.#maxFailureGroups) p.failures.set(fkey, { failure, count: 1 });
  }

  /** Add what was counted since the last write to the database. */
  flush(): Promise<void> {
    const next = this.#writing.then(() => this.#flush());
    this.#writing = next.catch(() => {});
    return next;
  }

  async close(): Promise<void> {
    if (this.#timer !== undefined) this.#o.clock.cancel(this.#timer);
    this.#timer = undefined;
    await this.flush();
  }

  async finishedDays(): Promise<string[]> {
    const r = await this.#o.pool.query<{ day: string }>("SELECT day FROM tlsrpt_day WHERE day < $1 AND NOT done ORDER BY day", [utcDay(this.#o.clock.now())]);
    return r.rows.map((row) => row.day);
  }

  takeReport(day: string, passed: ReadonlySet<string>, idFor: (domain: string) => string): Promise<TakenReport | undefined> {
    const now = this.#o.clock.now();
    return inTransaction(this.#o.pool, async (client) => {
      // Closed before anything is taken: a node's write of this day either committed before (and
      // is in every report) or finds it closed (waiting for this row's lock if it came during).
      await client.query("UPDATE tlsrpt_day SET closed = true WHERE day = $1 AND NOT closed", [day]);
      const free = await client.query<{ domain: string }>(
        `SELECT domain FROM tlsrpt_domain
          WHERE day = $1 AND NOT sent AND (hold_until IS NULL OR hold_until <= $2) AND domain <> ALL($3::text[])
          ORDER BY domain LIMIT 1 FOR UPDATE SKIP LOCKED`,
        [day, now, [...passed]],
      );
      const domain = free.rows[0]?.domain;
      if (domain === undefined) return undefined;
      const taken = await client.query<{ report_id: string }>(
        `UPDATE tlsrpt_domain SET holder = $3, hold_until = $4, report_id = coalesce(report_id, $5)
          WHERE day = $1 AND domain = $2 RETURNING report_id`,
        [day, domain, this.#o.node, now + (this.#o.claimMs ?? 600_000), idFor(domain)],
      );
      return { domain, policies: await this.#policies(client, day, domain), reportId: taken.rows[0].report_id };
    });
  }

  async reportSent(day: string, domain: string): Promise<void> {
    await this.#o.pool.query("UPDATE tlsrpt_domain SET sent = true, holder = NULL, hold_until = NULL WHERE day = $1 AND domain = $2", [day, domain]);
  }

  async reportDeferred(day: string, domain: string, retryAt: number): Promise<void> {
    await this.#o.pool.query(
      "UPDATE tlsrpt_domain SET holder = NULL, hold_until = $4 WHERE day = $1 AND domain = $2 AND holder = $3 AND NOT sent",
      [day, domain, this.#o.node, retryAt],
    );
  }

  async dayDone(day: string, giveUp: boolean): Promise<void> {
    if (!giveUp) {
      // A report another node holds, or one deferred to the next run, keeps the day.
      const open = await this.#o.pool.query("SELECT 1 FROM tlsrpt_domain WHERE day = $1 AND NOT sent LIMIT 1", [day]);
      if (open.rows.length > 0) return;
    }
    const forgotten = utcDay(Date.parse(`${utcDay(this.#o.clock.now())}T00:00:00Z`) - (this.#keepDays + 1) * DAY);
    await inTransaction(this.#o.pool, async (client) => {
      await client.query("UPDATE tlsrpt_day SET closed = true, done = true WHERE day = $1", [day]);
      await client.query("DELETE FROM tlsrpt_domain WHERE day = $1", [day]);
      await client.query("DELETE FROM tlsrpt_day WHERE day < $1 AND done", [forgotten]);
    });
  }

  async #policies(client: PostgresClient, day: string, domain: string): Promise<PolicyCounts[]> {
    const policies = await client.query<{ policy_key: string; policy: string; successful: string; failed: string }>(
      "SELECT policy_key, policy, successful, failed FROM tlsrpt_policy WHERE day = $1 AND domain = $2 ORDER BY policy",
      [day, domain],
    );
    const failures = await client.query<{ policy_key: string; failure: string; count: string }>(
      "SELECT policy_key, failure, count FROM tlsrpt_failure WHERE day = $1 AND domain = $2 ORDER BY count DESC, failure",
      [day, domain],
    );
    return policies.rows.map((row) => ({
      policy: JSON.parse(row.policy) as ReportedPolicy,
      successful: Number(row.successful),
      failed: Number(row.failed),
      failures: failures.rows.filter((f) => f.policy_key === row.policy_key).map((f): FailureGroup => ({ ...(JSON.parse(f.failure) as FailureDetail), count: Number(f.count) })),
    }));
  }

  async #flush(): Promise<void> {
    const taken = this.#pending;
    this.#pending = new Map();
    const oldest = utcDay(Date.parse(`${utcDay(this.#o.clock.now())}T00:00:00Z`) - this.#keepDays * DAY);
    for (const [day, domains] of [...taken].sort(([a], [b]) => a.localeCompare(b))) {
      if (day < oldest) {
        this.#o.onError?.(`TLS-RPT: ${sessions(domains)} sessions of ${day} could not be saved before the day was too old to report; dropped`);
        continue;
      }
      try {
        await inTransaction(this.#o.pool, (client) => this.#write(client, day, domains));
      } catch (err) {
        this.#keepForNextWrite(day, domains);
        this.#o.onError?.(`TLS-RPT counts for ${day} not saved (kept for the next try): ${(err as Error).message}`);
      }
    }
  }

  async #write(client: PostgresClient, day: string, domains: Map<string, Map<string, PolicyIncrement>>): Promise<void> {
    await client.query("INSERT INTO tlsrpt_day (day) VALUES ($1) ON CONFLICT (day) DO NOTHING", [day]);
    const state = await client.query<{ closed: boolean }>("SELECT closed FROM tlsrpt_day WHERE day = $1 FOR UPDATE", [day]);
    if (state.rows[0]?.closed) {
      this.#o.onError?.(`TLS-RPT: ${sessions(domains)} sessions of ${day} were saved after its reports were taken; not reported`);
      return;
    }
    // maxDomains a day for the cluster: the day's row lock makes this count exact.
    const names = [...domains.keys()];
    const seen = await client.query<{ n: string; known: string[] }>(
      "SELECT (SELECT count(*) FROM tlsrpt_domain WHERE day = $1) AS n, array(SELECT domain FROM tlsrpt_domain WHERE day = $1 AND domain = ANY($2::text[])) AS known",
      [day, names],
    );
    const known = new Set(seen.rows[0].known);
    const added = names.filter((d) => !known.has(d)).slice(0, Math.max(0, this.#maxDomains - Number(seen.rows[0].n)));
    if (known.size + added.length < names.length) this.#tooManyDomains(day);
    if (added.length > 0) await client.query("INSERT INTO tlsrpt_domain (day, domain) SELECT $1, unnest($2::text[])", [day, added]);
    const counted = new Set([...known, ...added]);

    const p = { domain: [] as string[], key: [] as string[], policy: [] as string[], successful: [] as number[], failed: [] as number[] };
    for (const [domain, policies] of domains) {
      if (!counted.has(domain)) continue;
      for (const [key, inc] of policies) {
        p.domain.push(domain);
        p.key.push(key);
        p.policy.push(inc.policy);
        p.successful.push(inc.successful);
        p.failed.push(inc.failed);
      }
    }
    if (p.domain.length === 0) return;
    await client.query(
      `INSERT INTO tlsrpt_policy (day, domain, policy_key, policy, successful, failed)
       SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[])
       ON CONFLICT (day, domain, policy_key) DO UPDATE
         SET successful = tlsrpt_policy.successful + EXCLUDED.successful, failed = tlsrpt_policy.failed + EXCLUDED.failed`,
      [day, p.domain, p.key, p.policy, p.successful, p.failed],
    );
    await this.#writeFailures(client, day, domains, counted);
  }

  /** Failure groups, at most maxFailureGroups a policy for the cluster: known groups grow, new ones are added while there is room. */
  async #writeFailures(client: PostgresClient, day: string, domains: Map<string, Map<string, PolicyIncrement>>, counted: ReadonlySet<string>): Promise<void> {
    const withFailures: { domain: string; key: string; inc: PolicyIncrement }[] = [];
    for (const [domain, policies] of domains) {
      if (!counted.has(domain)) continue;
      for (const [key, inc] of policies) if (inc.failures.size > 0) withFailures.push({ domain, key, inc });
    }
    if (withFailures.length === 0) return;
    const existing = await client.query<{ domain: string; policy_key: string; n: number; known: string[] | null }>(
      `SELECT domain, policy_key, count(*)::int AS n, array_agg(failure_key) FILTER (WHERE failure_key = ANY($4::text[])) AS known
         FROM tlsrpt_failure
        WHERE day = $1 AND (domain, policy_key) IN (SELECT * FROM unnest($2::text[], $3::text[]))
        GROUP BY domain, policy_key`,
      [day, withFailures.map((w) => w.domain), withFailures.map((w) => w.key), withFailures.flatMap((w) => [...w.inc.failures.keys()])],
    );
    const stored = new Map(existing.rows.map((r) => [`${r.domain}\n${r.policy_key}`, r]));
    const f = { domain: [] as string[], key: [] as string[], fkey: [] as string[], failure: [] as string[], count: [] as number[] };
    for (const { domain, key, inc } of withFailures) {
      const row = stored.get(`${domain}\n${key}`);
      const known = new Set(row?.known ?? []);
      let room = this.#maxFailureGroups - (row?.n ?? 0);
      for (const [fkey, group] of inc.failures) {
        if (!known.has(fkey)) {
          if (room <= 0) continue; // in the policy's failed total only
          room--;
        }
        f.domain.push(domain);
        f.key.push(key);
        f.fkey.push(fkey);
        f.failure.push(group.failure);
        f.count.push(group.count);
      }
    }
    if (f.domain.length === 0) return;
    await client.query(
      `INSERT INTO tlsrpt_failure (day, domain, policy_key, failure_key, failure, count)
       SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[])
       ON CONFLICT (day, domain, policy_key, failure_key) DO UPDATE SET count = tlsrpt_failure.count + EXCLUDED.count`,
      [day, f.domain, f.key, f.fkey, f.failure, f.count],
    );
  }

  /** Counts a failed write took, back into what the next write adds (with what was counted since). */
  #keepForNextWrite(day: string, domains: Map<string, Map<string, PolicyIncrement>>): void {
    let into = this.#pending.get(day);
    if (!into) this.#pending.set(day, (into = new Map()));
    for (const [domain, policies] of domains) {
      let intoPolicies = into.get(domain);
      if (!intoPolicies) into.set(domain, (intoPolicies = new Map()));
      for (const [key, inc] of policies) {
        const target = intoPolicies.get(key);
        if (!target) {
          intoPolicies.set(key, inc);
          continue;
        }
        target.successful += inc.successful;
        target.failed += inc.failed;
        for (const [fkey, group] of inc.failures) {
          const g = target.failures.get(fkey);
          if (g) g.count += group.count;
          else if (target.failures.size < this.#maxFailureGroups) target.failures.set(fkey, { ...group });
        }
      }
    }
  }

  #tooManyDomains(day: string): void {
    if (!this.#warnedDomains) this.#o.onError?.(`TLS-RPT: more than ${this.#maxDomains} policy domains on ${day}; sessions to further domains are not counted`);
    this.#warnedDomains = true;
  }

  #schedule(): void {
    this.#timer = this.#o.clock.schedule(() => {
      void this.flush().finally(() => {
        if (this.#timer !== undefined) this.#schedule();
      });
    }, FLUSH_EVERY_MS);
  }
}
