/**
 * OCSP stapling (RFC 6066 §8): for each served certificate that names an
 * OCSP responder, fetch its status in the background and hand the response
 * to clients that ask during the handshake, so they need not ask the CA.
 *
 * A response is refreshed halfway between its thisUpdate and nextUpdate (at
 * least a minute, at most 12 hours ahead), and after a failure again after
 * 1 minute, doubling up to an hour. A response past its nextUpdate is never
 * stapled (an expired staple fails the handshake for a client that checks;
 * none at all only costs it a lookup). Time comes from the injected Clock.
 */
import { createHash } from "node:crypto";
import type { Logger } from "pino";
import type { Clock } from "../mail/clock.ts";
import { checkOcspResponse, ocspRequest, ocspSubject, type OcspResponder, type OcspStatus, type OcspSubject } from "./ocsp.ts";

export interface OcspStaplerOptions {
  /** Every served chain (PEM, leaf first), read at each refresh. */
  readonly chains: () => Buffer[];
  readonly clock: Clock;
  readonly log: Logger;
  /** POSTs an OCSP request; default: HTTP with a 10 s timeout and a 64 KiB limit. */
  readonly post?: (url: string, body: Buffer) => Promise<Buffer>;
}

interface Entry {
  subject: OcspSubject;
  status?: OcspStatus;
  failures: number;
  refreshAt: number;
}

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const MAX_RESPONSE = 64 * 1024;

export class OcspStapler {
  private readonly o: OcspStaplerOptions;
  private readonly log: Logger;
  /** By SHA-256 of the leaf's DER. */
  private entries = new Map<string, Entry>();
  private timer: unknown = undefined;
  private chain: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(options: OcspStaplerOptions) {
    this.o = options;
    this.log = options.log.child({ component: "ocsp" });
  }

  /** Node's "OCSPRequest": the current response for a certificate (DER), or null. */
  readonly responder: OcspResponder = (certificate) => {
    const status = this.entries.get(fingerprint(certificate))?.status;
    if (!status) return null;
    if (status.nextUpdate !== undefined && status.nextUpdate <= this.o.clock.now()) return null;
    return status.der;
  };

  /** The stapled status of a certificate (DER), for logs and tests. */
  statusOf(certificate: Buffer): OcspStatus | undefined {
    return this.entries.get(fingerprint(certificate))?.status;
  }

  /**
   * Look at the served chains again (after a reload) and fetch what is due: responses for
   * new certificates at once, the others at their refresh time.
   */
  refresh(): Promise<void> {
    const run = this.chain.then(() => this.run());
    this.chain = run.catch(() => undefined);
    return run;
  }

  close(): void {
    this.closed = true;
    if (this.timer !== undefined) this.o.clock.cancel(this.timer);
  }

  private async run(): Promise<void> {
    if (this.closed) return;
    const now = this.o.clock.now();
    const next = new Map<string, Entry>();
    for (const pem of this.o.chains()) {
      let subject: OcspSubject | undefined;
      try {
        subject = ocspSubject(pem);
      } catch {
        subject = undefined;
      }
      if (!subject) continue;
      const key = fingerprint(subject.leaf.raw);
      next.set(key, this.entries.get(key) ?? { subject, failures: 0, refreshAt: now });
    }
    this.entries = next; // certificates no longer served drop out
    for (const e of next.values()) if (e.refreshAt <= now) await this.fetch(e);
    this.schedule();
  }

  private async fetch(e: Entry): Promise<void> {
    const serial = e.subject.leaf.serialNumber;
    try {
      const der = await (this.o.post ?? post)(e.subject.url, ocspRequest(e.subject));
      const now = this.o.clock.now();
      const status = checkOcspResponse(der, e.subject, now);
      e.status = status;
      e.failures = 0;
      const half = status.nextUpdate === undefined ? HOUR : (status.nextUpdate - status.thisUpdate) / 2;
      e.refreshAt = Math.min(now + 12 * HOUR, Math.max(now + MINUTE, status.thisUpdate + half));
      const fields = { serial, url: e.subject.url, status: status.status, nextUpdate: status.nextUpdate ? new Date(status.nextUpdate).toISOString() : null };
      if (status.status === "good") this.log.info(fields, "OCSP response stapled");
      else this.log.error(fields, `the CA says this certificate is ${status.status}; stapling its answer`);
    } catch (err) {
      e.failures++;
      e.refreshAt = this.o.clock.now() + Math.min(HOUR, MINUTE * 2 ** Math.min(e.failures - 1, 10));
      this.log.warn({ serial, url: e.subject.url, error: (err as Error).message, retryAt: new Date(e.refreshAt).toISOString() }, "OCSP response not fetched");
    }
  }

  private schedule(): void {
    if (this.closed) return;
    if (this.timer !== undefined) this.o.clock.cancel(this.timer);
    this.timer = undefined;
    const at = Math.min(...[...this.entries.values()].map((e) => e.refreshAt));
    if (!Number.isFinite(at)) return;
    this.timer = this.o.clock.schedule(() => {
      this.timer = undefined;
      void this.refresh();
    }, Math.max(0, at - this.o.clock.now()));
  }
}

function fingerprint(der: Buffer): string {
  return createHash("sha256").update(der).digest("hex");
}

/** RFC 6960 Appendix A.1: POST application/ocsp-request. */
async function post(url: string, body: Buffer): Promise<Buffer> {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/ocsp-request", accept: "application/ocsp-response" },
    body: new Uint8Array(body),
    signal: AbortSignal.timeout(10_000),
    redirect: "error",
  });
  if (!res.ok) throw new Error(`HTTP ${res.status} from ${url}`);
  const length = Number(res.headers.get("content-length") ?? 0);
  if (length > MAX_RESPONSE) throw new Error(`response of ${length} bytes is too large`);
  const data = Buffer.from(await res.arrayBuffer());
  if (data.length > MAX_RESPONSE) throw new Error(`response of ${data.length} bytes is too large`);
  return data;
}
