/**
 * Automatic certificates (RFC 8555): a service in the server process that
 * keeps the certificate in <dataDir>/acme/ current for Petrel's names.
 *
 * Each check compares the held certificate with the names wanted now
 * (renewal.ts): nothing to do, or an order — account (made or found by its
 * key), order, challenges answered through ChallengeResponses (HTTP-01 on
 * port 80 and/or TLS-ALPN-01 on 443), finalize with a CSR for a fresh key,
 * download the chain. The new certificate is saved (acme-store.ts) and made
 * live through `onCertificate` (the TLS provider's hot reload). A failure is
 * logged and retried with a doubling delay; the held certificate stays in
 * service, and a warning is logged once a sixth of its lifetime is left.
 *
 * Nodes of a cluster share one certificate (AcmeStore in the database): one
 * node orders at a time, under an OrderLease; the others skip while it is held,
 * and every node looks every `followEvery` for a certificate another node
 * stored, and serves it through the same `onCertificate`. The challenge answers
 * are published in the store too, since the CA's request may reach any node.
 *
 * Time comes from the injected Clock, so a test drives renewal by moving it
 * and calling `check()`. The protocol itself is acme-client's.
 */
import * as https from "node:https";
import * as tls from "node:tls";
import { createRequire } from "node:module";
import type { Logger } from "pino";
import type { Clock } from "../mail/clock.ts";
import { type AcmeStore, type CertificateKeyType, newPrivateKey } from "./acme-store.ts";
import type { ChallengeResponses } from "./challenges.ts";
import type { OrderLease } from "./order-lease.ts";
import { type HeldCertificate, nextCheck, orderReason, type OrderReason, retryDelay, warningTime } from "./renewal.ts";

const require = createRequire(import.meta.url);
/**
 * acme-client (with axios and its dependencies) is loaded only when ACME is
 * configured: a server without it does not pay its start-up time or memory.
 */
function acmeClient(): typeof import("acme-client") {
  return require("acme-client") as typeof import("acme-client");
}

export type ChallengeChoice = "http-01" | "tls-alpn-01" | "both";

export interface AcmeServiceOptions {
  readonly directory: string;
  readonly email: string;
  readonly challenge: ChallengeChoice;
  readonly keyType?: CertificateKeyType;
  /** The names the certificate must carry now, the first one as its subject. */
  readonly names: () => Promise<string[]>;
  readonly store: AcmeStore;
  readonly challenges: ChallengeResponses;
  readonly clock: Clock;
  readonly log: Logger;
  /** Makes a newly saved certificate live; resolves once new connections get it. */
  readonly onCertificate: (certificate: HeldCertificate) => Promise<void>;
  /** A CA certificate (PEM) trusted, besides the public roots, for the directory's HTTPS. */
  readonly ca?: string;
  /** How acme-client polls the CA for a status (ms); its defaults are 5 s to 30 s. */
  readonly polling?: { readonly min: number; readonly max: number };
  /** Nodes sharing the certificate: the one lease an order needs. None: this node orders alone. */
  readonly lease?: OrderLease;
  /** Nodes sharing the certificate: how often (ms) to look for one another node stored. */
  readonly followEvery?: number;
}

export type AcmeCheck =
  | { readonly kind: "current"; readonly certificate: HeldCertificate; readonly next: number }
  | { readonly kind: "issued"; readonly reason: Exclude<OrderReason, null>; readonly certificate: HeldCertificate; readonly next: number }
  | { readonly kind: "failed"; readonly reason: Exclude<OrderReason, null> | "unreadable"; readonly error: string; readonly failures: number; readonly next: number }
  /** An order is needed, but another node holds the lease and is ordering (its certificate is followed). */
  | { readonly kind: "waiting"; readonly reason: Exclude<OrderReason, null>; readonly holder: string; readonly until: number; readonly next: number };

/** While another node orders, look again no sooner than this (its lease may be renewed for long). */
const WAIT_MIN = 60_000;

export class AcmeService {
  private readonly o: AcmeServiceOptions;
  private readonly log: Logger;
  private timer: unknown = undefined;
  private followTimer: unknown = undefined;
  /** Checks run one after another; the last one's settled promise. */
  private chain: Promise<unknown> = Promise.resolve();
  private failures = 0;
  private closed = false;
  private readonly interceptor: number | undefined;

  constructor(options: AcmeServiceOptions) {
    this.o = options;
    this.log = options.log.child({ component: "acme" });
    if (options.ca) {
      // acme-client talks through one shared axios instance: trust the extra CA only for this directory.
      const agent = new https.Agent({ ca: [...tls.rootCertificates, options.ca] });
      const origin = new URL(options.directory).origin;
      this.interceptor = acmeClient().axios.interceptors.request.use((config) => {
        if (config.url && new URL(config.url).origin === origin) config.httpsAgent = agent;
        return config;
      });
    }
  }

  /** Check at once, then whenever the last check said. */
  start(): void {
    this.reschedule(this.o.clock.now());
    this.scheduleFollow();
  }

  /**
   * Look at the held certificate and order a new one if it is missing, a placeholder, short
   * of a name, or due. Runs after any check in progress, so it sees the clock as it is now.
   */
  check(): Promise<AcmeCheck> {
    const run = this.chain.then(() => this.run());
    this.chain = run.catch(() => undefined);
    return run;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer !== undefined) this.o.clock.cancel(this.timer);
    this.timer = undefined;
    if (this.followTimer !== undefined) this.o.clock.cancel(this.followTimer);
    this.followTimer = undefined;
    await this.chain;
    if (this.interceptor !== undefined) acmeClient().axios.interceptors.request.eject(this.interceptor);
  }

  // -------------------------------------------------------------------------

  private async run(): Promise<AcmeCheck> {
    const now = this.o.clock.now();
    let names: string[];
    let held: HeldCertificate | undefined;
    try {
      names = await this.o.names();
      held = await this.held();
    } catch (err) {
      // The accounts file or the data directory is unreadable: try again later, change nothing.
      this.failures++;
      const next = now + retryDelay(this.failures);
      this.log.error({ error: (err as Error).message }, "cannot check the certificate");
      this.reschedule(next);
      return { kind: "failed", reason: "unreadable", error: (err as Error).message, failures: this.failures, next };
    }
    const reason = orderReason(held, names, now);
    if (reason === null) {
      this.failures = 0;
      const next = nextCheck(held!, now);
      this.reschedule(next);
      return { kind: "current", certificate: held!, next };
    }
    const lease = this.o.lease;
    if (lease) {
      let taken;
      try {
        taken = await lease.acquire();
        // Another node may have stored a certificate between the look above and the lease.
        if (taken.taken) held = await this.held();
      } catch (err) {
        if (taken?.taken) await this.release(lease);
        this.failures++;
        const next = now + retryDelay(this.failures);
        this.log.error({ error: (err as Error).message }, "cannot take the lease to order a certificate");
        this.reschedule(next);
        return { kind: "failed", reason: "unreadable", error: (err as Error).message, failures: this.failures, next };
      }
      if (!taken.taken) {
        const next = Math.max(now + WAIT_MIN, taken.until);
        this.log.info({ reason, holder: taken.holder, leaseUntil: new Date(taken.until).toISOString() }, "another node holds the lease to order the certificate (ordering, or waiting to retry a failed order); this node serves the certificate once it is stored");
        this.reschedule(next);
        return { kind: "waiting", reason, holder: taken.holder, until: taken.until, next };
      }
      if (orderReason(held, names, now) === null) {
        await this.release(lease);
        this.failures = 0;
        const next = nextCheck(held!, now);
        this.reschedule(next);
        return { kind: "current", certificate: held!, next };
      }
    }
    this.log.info({ reason, names, directory: this.o.directory }, "ordering a certificate");
    const keeping = lease ? this.keepLease(lease) : undefined;
    let retryAt: number | undefined;
    try {
      const certificate = await this.order(names);
      this.failures = 0;
      await this.o.onCertificate(certificate);
      this.log.info(
        { names: certificate.names, serial: certificate.serialNumber, notAfter: new Date(certificate.notAfter).toISOString() },
        "certificate issued and in service",
      );
      const next = nextCheck(certificate, this.o.clock.now());
      this.reschedule(next);
      return { kind: "issued", reason, certificate, next };
    } catch (err) {
      this.failures++;
      const error = (err as Error).message;
      const next = this.o.clock.now() + retryDelay(this.failures);
      this.log.error(
        { reason, names, error, failures: this.failures, retryAt: new Date(next).toISOString(), kept: held?.serialNumber ?? null },
        "certificate order failed; the current certificate stays in service",
      );
      if (held && !held.selfSigned) this.warnIfNearExpiry(held, now);
      this.reschedule(next);
      retryAt = next;
      return { kind: "failed", reason, error, failures: this.failures, next };
    } finally {
      keeping?.();
      if (lease && retryAt !== undefined) await this.holdUntil(lease, retryAt);
      else if (lease) await this.release(lease);
    }
  }

  /** The held certificate, after serving one another node stored if it differs from this node's. */
  private async held(): Promise<HeldCertificate | undefined> {
    const adopted = await this.o.store.adopt();
    if (adopted) {
      await this.o.onCertificate(adopted);
      this.log.info(
        { names: adopted.names, serial: adopted.serialNumber, notAfter: new Date(adopted.notAfter).toISOString() },
        "certificate stored by another node now in service",
      );
    }
    return this.o.store.current();
  }

  /** Look for a certificate another node stored, every `followEvery`, between the checks. */
  private scheduleFollow(): void {
    const every = this.o.followEvery;
    if (every === undefined || this.closed) return;
    this.followTimer = this.o.clock.schedule(() => {
      this.followTimer = undefined;
      const run = this.chain.then(() => this.held());
      this.chain = run.catch(() => undefined);
      // Scheduled again once this look is done, never from within the clock's own firing.
      void run.then(
        () => this.scheduleFollow(),
        (err: unknown) => {
          this.log.warn({ error: (err as Error).message }, "cannot look for a certificate stored by another node; trying again later");
          this.scheduleFollow();
        },
      );
    }, every);
  }

  /** Renew the lease at a third of its time while an order runs; the returned function stops it. */
  private keepLease(lease: OrderLease): () => void {
    let timer: unknown;
    let stopped = false;
    const schedule = () => {
      timer = this.o.clock.schedule(() => {
        void lease.renew().then(
          (held) => {
            if (!held) this.log.error({}, "the lease to order a certificate expired and another node took it; this order goes on");
            if (!stopped && held) schedule();
          },
          (err: unknown) => {
            this.log.warn({ error: (err as Error).message }, "cannot renew the lease to order a certificate; trying again");
            if (!stopped) schedule();
          },
        );
      }, lease.leaseTime / 3);
    };
    schedule();
    return () => {
      stopped = true;
      this.o.clock.cancel(timer);
    };
  }

  /**
   * After a failed order the lease stays this node's until its retry: the doubling delay is the
   * cluster's, not each node's (N nodes taking turns would ask a failing CA N times as often). A
   * node that dies meanwhile frees it at that time.
   */
  private async holdUntil(lease: OrderLease, at: number): Promise<void> {
    try {
      await lease.holdUntil(at);
    } catch (err) {
      this.log.warn({ error: (err as Error).message }, "cannot keep the lease until the retry; another node may order before then");
    }
  }

  private async release(lease: OrderLease): Promise<void> {
    try {
      await lease.release();
    } catch (err) {
      // It expires by itself: the other nodes wait at most the lease time.
      this.log.warn({ error: (err as Error).message }, "cannot release the lease to order a certificate; it expires by itself");
    }
  }

  private warnIfNearExpiry(held: HeldCertificate, now: number): void {
    if (now < warningTime(held)) return;
    const expired = now >= held.notAfter;
    this.log[expired ? "error" : "warn"](
      { serial: held.serialNumber, notAfter: new Date(held.notAfter).toISOString(), names: held.names },
      expired ? "the certificate has expired and could not be renewed" : "the certificate expires soon and could not be renewed",
    );
  }

  private async order(names: string[]): Promise<HeldCertificate> {
    const o = this.o;
    const acme = acmeClient();
    const client = new acme.Client({
      directoryUrl: o.directory,
      accountKey: await o.store.accountKey(),
      ...(o.polling ? { backoffMin: o.polling.min, backoffMax: o.polling.max } : {}),
    });
    const key = newPrivateKey(o.keyType ?? "ecdsa");
    const [, csr] = await acme.crypto.createCsr({ commonName: names[0], altNames: names }, key);
    const priority = o.challenge === "both" ? ["tls-alpn-01", "http-01"] : [o.challenge];
    const chain = await client.auto({
      csr,
      email: o.email,
      termsOfServiceAgreed: true,
      // The CA checks; a self-check through this host's own resolver proves little (split DNS, NAT).
      skipChallengeVerification: true,
      challengePriority: priority,
      challengeCreateFn: async (authz, challenge, keyAuthorization) => {
        const type: string = challenge.type; // acme-client's types know only http-01 and dns-01
        // Answered here from memory, and published for the other nodes the CA's request may reach.
        if (type === "http-01") {
          o.challenges.addHttp01(challenge.token, keyAuthorization);
          await o.store.addChallenge({ type: "http-01", token: challenge.token, keyAuthorization });
        } else if (type === "tls-alpn-01") {
          const [alpnKey, alpnCert] = await acme.crypto.createAlpnCertificate(authz, keyAuthorization);
          o.challenges.addTlsAlpn01(authz.identifier.value, alpnCert, alpnKey);
          await o.store.addChallenge({ type: "tls-alpn-01", name: authz.identifier.value.toLowerCase(), certPem: alpnCert.toString(), keyPem: alpnKey.toString() });
        } else throw new Error(`challenge ${challenge.type} is not one Petrel answers`);
      },
      challengeRemoveFn: async (authz, challenge) => {
        const type: string = challenge.type;
        if (type === "http-01") {
          o.challenges.removeHttp01(challenge.token);
          await o.store.removeChallenge({ type: "http-01", token: challenge.token });
        } else if (type === "tls-alpn-01") {
          o.challenges.removeTlsAlpn01(authz.identifier.value);
          await o.store.removeChallenge({ type: "tls-alpn-01", name: authz.identifier.value.toLowerCase() });
        }
      },
    });
    return o.store.saveCertificate(key, chain);
  }

  private reschedule(at: number): void {
    if (this.closed) return;
    if (this.timer !== undefined) this.o.clock.cancel(this.timer);
    this.timer = this.o.clock.schedule(() => {
      this.timer = undefined;
      void this.check();
    }, Math.max(0, at - this.o.clock.now()));
  }
}
