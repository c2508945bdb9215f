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
   * across all workers, for the next connection from this address; undefined
   * when it did not count it (a client named by a PROXY header), and this
   * check counts it here.
   */
  readonly primaryVerdict?: (address: string) => Exclude<AdmitResult, "banned"> | "local" | undefined;
}

export function clientLimitsCheck(options: ClientLimitsCheckOptions): Check {
  const limits = new ClientLimits(options);
  return {
    name: "client-limits",
    open(client) {
      const counted = options.primaryVerdict?.(client.address);
      const here = counted === undefined || counted === "local";
      const admitted: AdmitResult = here ? limits.admit(client.address) : limits.isBanned(client.address) ? "banned" : counted;
      let failures = 0;
      return {
        connect: () => (admitted === "ok" ? undefined : CONNECT_REFUSALS[admitted]),
        auth: (_session, outcome) => {
          if (outcome.user !== null) return undefined;
          failures++;
          const banned = limits.authFailed(client.address);
          if (!banned && failures < options.authFailuresPerConnection) return undefined;
          return tempfail(421, "4.7.0", "Error: too many failed authentication attempts, closing connection",
            banned ? `${client.address} banned after too many AUTH failures` : `${failures} AUTH failures on this connection`);
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
}

export type AdmitResult = "ok" | "server-full" | "client-full" | "banned";

export class ClientLimits {
  private readonly opts: ClientLimitsOptions;
  private readonly clock: Now;
  private total = 0;
  private readonly perClient = new Map<string, number>();
  /** IP → failures within the current window, and when the window (or ban) started. */
  private readonly failures = new Map<string, { count: number; since: number; bannedUntil: number }>();

  constructor(opts: ClientLimitsOptions) {
    this.opts = opts;
    this.clock = opts.clock ?? systemClock;
  }

  get connections(): number {
    return this.total;
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
    const now = this.clock.now();
    let f = this.failures.get(ip);
    if (!f || now - f.since > this.opts.authBanTime) {
      f = { count: 0, since: now, bannedUntil: 0 };
      this.failures.set(ip, f);
    }
    f.count++;
    if (f.count >= this.opts.authFailuresPerClient) {
      f.bannedUntil = now + this.opts.authBanTime;
      return true;
    }
    return false;
  }

  isBanned(ip: string): boolean {
    const f = this.failures.get(ip);
    if (!f) return false;
    const now = this.clock.now();
    if (f.bannedUntil > now) return true;
    if (now - f.since > this.opts.authBanTime) this.failures.delete(ip);
    return false;
  }
}
