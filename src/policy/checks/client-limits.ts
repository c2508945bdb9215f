import { systemClock, type Now } from "../../mail/clock.ts";
import type { Check, CheckResult } from "../check.ts";
import { tempfail } from "../replies.ts";

/**
 * Limits per client IP that outlive one connection: how many connections it
 * holds (Postfix smtpd_client_connection_count_limit, default 50 here) and
 * how many times it failed AUTH (a temporary ban after too many, the way
 * fail2ban is usually bolted onto Postfix). Time is injected.
 *
 * As a check: counted when a connection opens and refused at connect (the
 * 421 replaces the greeting), released when it closes; AUTH failures are
 * counted per connection and per IP, and past either limit the session ends.
 */

export interface ClientLimitsCheckOptions extends ClientLimitsOptions {
  /** Failed AUTH attempts on one connection before it is closed. */
  readonly authFailuresPerConnection: number;
  /**
   * In an SMTP worker: the verdict of the primary, which counts connections
   * and AUTH failures across all workers, for the next connection from this
   * address ("banned" included); undefined when it did not count it (a client
   * named by a PROXY header), and this check counts it here.
   */
  readonly primaryVerdict?: (address: string) => AdmitResult | "local" | undefined;
  /**
   * In an SMTP worker: tell the primary of a failed AUTH from `address`; it
   * answers whether the address is banned now (by its count across all
   * workers), or undefined when it could not be asked (the channel is gone).
   */
  readonly primaryAuthFailed?: (address: string) => Promise<boolean | undefined>;
  /**
   * The counts to keep: a reception's own, given again to the check a reload builds so that the
   * connections counted, the failures and the bans outlive the reload (new limits apply to them).
   */
  readonly limits?: ClientLimits;
}

export function clientLimitsCheck(options: ClientLimitsCheckOptions): Check {
  const limits = options.limits ?? new ClientLimits(options);
  options.limits?.configure(options);
  return {
    name: "client-limits",
    open(client) {
      const counted = options.primaryVerdict?.(client.address);
      const here = counted === undefined || counted === "local";
      // A connection the primary counted is banned by the primary's count alone (it has every
      // worker's failures, and the server's clock); one it could not count (PROXY) by this count.
      const admitted: AdmitResult = here ? limits.admit(client.address) : counted;
      let failures = 0;
      const verdict = (banned: boolean): CheckResult | undefined => {
        if (!banned && failures < options.authFailuresPerConnection) return undefined;
        return tempfail(421, "4.7.0", "Error: too many failed authentication attempts, closing connection",
          banned ? `${client.address} banned after too many AUTH failures` : `${failures} AUTH failures on this connection`);
      };
      return {
        connect: () => (admitted === "ok" ? undefined : CONNECT_REFUSALS[admitted]),
        auth: (_session, outcome) => {
          if (outcome.user !== null) return undefined;
          failures++;
          const bannedHere = limits.authFailed(client.address);
          const told = options.primaryAuthFailed?.(client.address);
          if (told === undefined) return verdict(bannedHere);
          // Behind a trusted PROXY peer (verdict "local") the primary saw only the proxy's address,
          // so it could not refuse this client at connect: what refuses it there is this worker's
          // own count, per worker as before. The primary still counts these failures with the
          // others, so such a session ends at its next failure once the server's count bans the
          // address (either count closes it), and the address's direct connections are refused.
          return told.then(
            (banned) => verdict(banned === undefined ? bannedHere : here ? bannedHere || banned : banned),
            () => verdict(bannedHere),
          );
        },
        close: () => {
          if (admitted === "ok" && here) limits.release(client.address);
        },
      };
    },
  };
}

const CONNECT_REFUSALS: Record<Exclude<AdmitResult, "ok">, CheckResult> = {
  "banned": tempfail(421, "4.7.0", "Error: too many failed authentications from your address; try again later", "banned after too many AUTH failures"),
  "client-full": tempfail(421, "4.7.0", "Error: too many connections from your address", "too many connections from this address"),
  "server-full": tempfail(421, "4.3.2", "Error: too many connections; try again later", "too many connections"),
};

export interface ClientLimitsOptions {
  readonly connections: number;
  readonly connectionsPerClient: number;
  readonly authFailuresPerClient: number;
  readonly authBanTime: number;
  readonly clock?: Now;
  /** The bans of a cluster (storage.kind postgres): failures told to every node, bans heard from any. */
  readonly shared?: SharedBans;
}

/**
 * AUTH-failure bans shared beyond this process (the nodes of a cluster). Never waits: the SMTP
 * path asks a copy in memory, and a failure is told in the background; while the others cannot
 * be reached, this process's own count still bans.
 */
export interface SharedBans {
  /** Banned anywhere, as far as this node has heard. */
  isBanned(address: string): boolean;
  /** A failed AUTH from `address`, told to the others; past `limit` within `banTime` it is banned for `banTime`. */
  authFailed(address: string, limit: { readonly failures: number; readonly banTime: number }): void;
}

/** Addresses with AUTH failures kept before the first sweep of those whose window is over. */
const SWEEP_MIN = 1024;

export type AdmitResult = "ok" | "server-full" | "client-full" | "banned";

export class ClientLimits {
  private opts: ClientLimitsOptions;
  private readonly clock: Now;
  private total = 0;
  private readonly perClient = new Map<string, number>();
  /** IP → failures within the current window, and when the window (or ban) started. */
  private readonly failures = new Map<string, { count: number; since: number; bannedUntil: number }>();
  private sweepAt = SWEEP_MIN;

  constructor(opts: ClientLimitsOptions) {
    this.opts = opts;
    this.clock = opts.clock ?? systemClock;
  }

  get connections(): number {
    return this.total;
  }

  /** New limits (a reload): the connections counted and the failures and bans so far stay. */
  configure(opts: Omit<ClientLimitsOptions, "clock">): void {
    this.opts = { ...opts, clock: this.clock };
  }

  /** A new connection from `ip`: admit it (and count it) or say why not. */
  admit(ip: string): AdmitResult {
    if (this.isBanned(ip)) return "banned";
    if (this.total >= this.opts.connections) return "server-full";
    const n = this.perClient.get(ip) ?? 0;
    if (n >= this.opts.connectionsPerClient) return "client-full";
    this.total++;
    this.perClient.set(ip, n + 1);
    return "ok";
  }

  release(ip: string): void {
    const n = this.perClient.get(ip);
    if (n === undefined) return;
    this.total--;
    if (n <= 1) this.perClient.delete(ip);
    else this.perClient.set(ip, n - 1);
  }

  /** Record a failed AUTH; true when the client is now banned. */
  authFailed(ip: string): boolean {
    this.opts.shared?.authFailed(ip, { failures: this.opts.authFailuresPerClient, banTime: this.opts.authBanTime });
    return this.countFailure(ip) || this.opts.shared?.isBanned(ip) === true;
  }

  private countFailure(ip: string): boolean {
    const now = this.clock.now();
    let f = this.failures.get(ip);
    if (!f || now - f.since > this.opts.authBanTime) {
      f = { count: 0, since: now, bannedUntil: 0 };
      this.failures.set(ip, f);
      if (this.failures.size > this.sweepAt) this.sweep(now);
    }
    f.count++;
    if (f.count >= this.opts.authFailuresPerClient) {
      f.bannedUntil = now + this.opts.authBanTime;
      return true;
    }
    return false;
  }

  /**
   * An address that failed once and never came back would stay: windows and bans that are over
   * go whenever the table has doubled since the last sweep (amortised constant time per entry).
   */
  private sweep(now: number): void {
    for (const [ip, f] of this.failures) {
      if (f.bannedUntil <= now && now - f.since > this.opts.authBanTime) this.failures.delete(ip);
    }
    this.sweepAt = Math.max(SWEEP_MIN, 2 * this.failures.size);
  }

  isBanned(ip: string): boolean {
    return this.bannedHere(ip) || this.opts.shared?.isBanned(ip) === true;
  }

  private bannedHere(ip: string): boolean {
    const f = this.failures.get(ip);
    if (!f) return false;
    const now = this.clock.now();
    if (f.bannedUntil > now) return true;
    if (now - f.since > this.opts.authBanTime) this.failures.delete(ip);
    return false;
  }
}
