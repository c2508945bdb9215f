/**
 * Once a day, the reports of the day before (RFC 8460 §4.1, §5): for each policy domain that
 * had sessions, its `_smtp._tls` TXT record is looked up; a domain that publishes one gets the
 * aggregate report at each of its rua URIs — by mail (report-mail.ts, into Petrel's own queue,
 * which retries it like any mail) and by HTTPS POST of the gzipped JSON (§5.4). Domains without
 * the record get nothing. The run is at a random moment in the first hour after midnight UTC
 * (the injected clock), so reporters do not all arrive at once; a run also happens at start-up
 * for days a restart left unsent.
 *
 * A day whose TXT lookups failed for some domain is tried again at the next run, and given up
 * after `keepDays`. The sessions that carry reports are not counted in later reports: the
 * report carries "TLS-Required: No", and the remote agent does not count such messages.
 *
 * With the counts in the cluster's database every node runs this, and each policy domain's
 * report is taken by one node only (`takeReport`, day-counts.ts), with the cluster's totals. A
 * day is taken only `settleMs` after it ended, once every node has written the counts it made
 * before midnight (they write each minute): the run falls in the hour after midnight but not
 * before `settleMs` — a node started just after midnight waits for that moment too.
 */
import * as https from "node:https";
import { isIP } from "node:net";
import * as tls from "node:tls";
import type { Logger } from "pino";
import type { Config } from "../config/schema.ts";
import type { Resolver } from "../dns/resolver.ts";
import type { Clock } from "../mail/clock.ts";
import { utcDay, type PolicyCounts, type TlsRptCounts } from "./day-counts.ts";
import { buildReport, parseTlsRptRecord, reportId, type ReportIdentity } from "./report.ts";
import { composeReportMail, gzipReport } from "./report-mail.ts";

export interface ReportSenderOptions {
  /** Where the day counts are and how a report is taken (one node's files, or the cluster's database). */
  readonly aggregate: TlsRptCounts;
  readonly resolver: Pick<Resolver, "resolveTxt" | "resolveAddresses">;
  readonly clock: Clock;
  readonly identity: ReportIdentity;
  /** The From of report mail. */
  readonly from: string;
  readonly hostname: string;
  /** Queue a composed message from the null reverse-path to `to`. */
  readonly submit: (message: Buffer, to: readonly string[]) => Promise<string>;
  /** Extra CA for HTTPS report endpoints (tests). */
  readonly ca?: string | Buffer;
  readonly log?: Logger;
  /** [0, 1): where in the hour after midnight the run falls. */
  readonly random?: () => number;
  /** Finished days older than this are dropped even if some report could not go (default 3). */
  readonly keepDays?: number;
}

/** Who the reports say they are from (config `tlsRpt`, defaults from the hostname). */
export function reportSettings(config: Pick<Config, "hostname" | "tlsRpt">): { identity: ReportIdentity; from: string } {
  const from = config.tlsRpt.from ?? `postmaster@${config.hostname}`;
  return {
    from,
    identity: {
      organization: config.tlsRpt.organization ?? config.hostname,
      submitter: config.tlsRpt.submitter ?? config.hostname,
      contact: config.tlsRpt.contact ?? from,
    },
  };
}

const DAY = 86_400_000;
const HOUR = 3_600_000;

export class TlsReportSender {
  readonly #o: ReportSenderOptions;
  #timer: unknown;
  /** A run at the moment a finished day's counts are complete (a start just after midnight). */
  #settleTimer: unknown;
  #running: Promise<void> | undefined;
  #closed = false;

  constructor(options: ReportSenderOptions) {
    this.#o = options;
  }

  /** Send what a restart left unsent, then once a day. */
  start(): void {
    this.#trigger();
    this.#scheduleNext();
  }

  /** The run in progress, if any (tests wait for it). */
  async idle(): Promise<void> {
    await this.#running;
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== undefined) this.#o.clock.cancel(this.#timer);
    if (this.#settleTimer !== undefined) this.#o.clock.cancel(this.#settleTimer);
    await this.#running;
  }

  #scheduleNext(): void {
    if (this.#closed) return;
    const now = this.#o.clock.now();
    const midnight = Date.parse(`${utcDay(now)}T00:00:00Z`) + DAY;
    const settle = this.#o.aggregate.settleMs;
    const at = midnight + settle + Math.floor((this.#o.random ?? Math.random)() * (HOUR - settle));
    this.#timer = this.#o.clock.schedule(() => {
      this.#trigger();
      this.#scheduleNext();
    }, at - now);
  }

  #trigger(): void {
    if (this.#closed) return;
    const previous = this.#running ?? Promise.resolve();
    this.#running = previous.then(() => this.run()).catch((err: unknown) => {
      this.#o.log?.error({ err: (err as Error).message }, "TLS-RPT: sending the daily reports failed");
    });
  }

  /** Send every finished day's reports now. */
  async run(): Promise<void> {
    const { aggregate } = this.#o;
    const now = this.#o.clock.now();
    const today = Date.parse(`${utcDay(now)}T00:00:00Z`);
    for (const day of await aggregate.finishedDays()) {
      const complete = Date.parse(`${day}T00:00:00Z`) + DAY + aggregate.settleMs;
      if (now < complete) {
        this.#runAt(complete);
        continue;
      }
      const passed = new Set<string>();
      const take = () => aggregate.takeReport(day, passed, (domain) => reportId(this.#o.identity, day, domain));
      for (let taken = await take(); taken; taken = await take()) {
        passed.add(taken.domain);
        if (await this.#sendOne(day, taken.domain, taken.policies, taken.reportId)) await aggregate.reportSent(day, taken.domain);
        else await aggregate.reportDeferred(day, taken.domain, today + DAY);
      }
      const age = (today - Date.parse(`${day}T00:00:00Z`)) / DAY;
      await aggregate.dayDone(day, age > (this.#o.keepDays ?? 3));
    }
  }

  #runAt(at: number): void {
    if (this.#closed || this.#settleTimer !== undefined) return;
    this.#settleTimer = this.#o.clock.schedule(() => {
      this.#settleTimer = undefined;
      this.#trigger();
    }, at - this.#o.clock.now());
  }

  /** True when the domain's report is out (or it takes none); false to try again later. */
  async #sendOne(day: string, domain: string, policies: readonly PolicyCounts[], id: string): Promise<boolean> {
    const o = this.#o;
    const txt = await o.resolver.resolveTxt(`_smtp._tls.${domain}`);
    if (txt.kind === "temporary") {
      o.log?.warn({ domain, day, reason: txt.reason }, "TLS-RPT: _smtp._tls lookup failed; the report is tried again at the next run");
      return false;
    }
    const rua = txt.kind === "txt" ? parseTlsRptRecord(txt.records) : undefined;
    if (!rua) return true;
    const report = buildReport(o.identity, day, domain, policies, id);
    if (rua.mailto.length > 0) {
      const message = composeReportMail({ identity: o.identity, day, policyDomain: domain, report, from: o.from, to: rua.mailto, hostname: o.hostname, now: new Date(o.clock.now()) });
      try {
        const id = await o.submit(message, rua.mailto);
        o.log?.info({ domain, day, queueId: id, to: rua.mailto }, "TLS-RPT: report queued");
      } catch (err) {
        o.log?.error({ domain, day, err: (err as Error).message }, "TLS-RPT: report not queued; tried again at the next run");
        return false;
      }
    }
    for (const url of rua.https) {
      try {
        await postReport(url, gzipReport(report), { resolver: o.resolver, ...(o.ca ? { ca: o.ca } : {}) });
        o.log?.info({ domain, day, url }, "TLS-RPT: report posted");
      } catch (err) {
        // RFC 8460 §5.4 leaves retries to the sender; the mail copy (if any) is in the queue.
        o.log?.warn({ domain, day, url, err: (err as Error).message }, "TLS-RPT: report not posted");
      }
    }
    return true;
  }
}

/**
 * RFC 8460 §5.4: POST the gzipped report; any 2xx is success. The host is found through
 * Petrel's resolver (as every name Petrel connects to), its certificate verified for the URL's
 * name; no redirects, 30 s at most.
 */
export async function postReport(url: string, body: Buffer, o: { resolver: Pick<Resolver, "resolveAddresses">; ca?: string | Buffer }): Promise<void> {
  const u = new URL(url);
  const name = u.hostname.replace(/^\[|\]$/g, "");
  let address = name;
  if (isIP(name) === 0) {
    const r = await o.resolver.resolveAddresses(name);
    if (r.kind !== "addresses") throw new Error(`${url}: ${r.reason}`);
    address = r.addresses[0];
  }
  return new Promise((resolve, reject) => {
    const req = https.request({
      host: address,
      port: u.port === "" ? 443 : Number(u.port),
      path: `${u.pathname}${u.search}`,
      method: "POST",
      ...(isIP(name) === 0 ? { servername: name } : {}),
      headers: { host: u.host, "content-type": "application/tlsrpt+gzip", "content-length": body.length },
      minVersion: "TLSv1.2",
      ...(o.ca !== undefined ? { ca: [...tls.rootCertificates, o.ca.toString()] } : {}),
      agent: false,
      timeout: 30_000,
    }, (res) => {
      res.resume();
      const status = res.statusCode ?? 0;
      if (status >= 200 && status < 300) resolve();
      else reject(new Error(`${url}: HTTP status ${status}`));
    });
    req.on("timeout", () => req.destroy(new Error(`${url}: no answer within 30 s`)));
    req.on("error", reject);
    req.end(body);
  });
}
