/**
 * The local delivery agent: final delivery of a message into the Maildir of
 * each local recipient, `<maildirRoot>/<domain>/<localpart>/` (lower-cased) —
 * the layout Dovecot reads with `mail_location = maildir:<root>/%d/%n`.
 *
 * Per recipient: the mailbox must still exist — mail queued for a user who
 * was removed since bounces 5.1.1 (as Postfix's virtual(8) looks the
 * recipient up at delivery), so whoever gets the address next does not
 * inherit it; the address is checked so it names exactly one directory
 * (no "/", no "." or ".." — else 5.1.3), the message is checked for a loop
 * (a Delivered-To for this recipient, or too many Received fields — 5.4.6),
 * then written by `deliverToMaildir` with `Return-Path:`, `X-Original-To:`
 * and `Delivered-To:` on top — into the Maildir++ folder a check chose for
 * the message (`Envelope.folder`, e.g. "Junk"), else the inbox. Each recipient gets its own outcome; one
 * failing does not stop the others.
 */
import { join } from "node:path";
import { splitAddress } from "../mail/address.ts";
import { hostname as osHostname } from "node:os";
import { sameOutcome } from "./outcome-policy.ts";
import type { DeliveryAgent, DeliveryOutcome, DeliveryOutcomes, DeliveryRequest } from "../queue/ports.ts";
import { deliverToMaildir, type MaildirFs, type MaildirOwner, type MessageSource } from "./maildir.ts";
import { readTraceFields, isLoop, loopOutcome, DEFAULT_MAX_RECEIVED, type TraceCounts } from "./loop-detection.ts";

export interface LocalAgentOptions {
  /** Root of all mailboxes, normally `<dataDir>/mail`. */
  readonly maildirRoot: string;
  /** Whether a mailbox may be delivered to now (its user exists); absent = every address. */
  readonly mailboxExists?: (address: string) => Promise<boolean>;
  /** Mailbox size limit in bytes for an address; undefined = unlimited. */
  readonly quotaFor?: (address: string) => number | undefined | Promise<number | undefined>;
  /** A full mailbox: "defer" (4.2.2, default, as Postfix with a quota policy) or "bounce" (5.2.2). */
  readonly quotaFull?: "defer" | "bounce";
  /** Host name in Maildir file names; default os.hostname(). */
  readonly hostname?: string;
  /** Received fields at or above which the message is a loop; default 50. */
  readonly maxReceived?: number;
  /** fsync files and directories (default true). */
  readonly fsync?: boolean;
  /** Owner of the Maildir files and directories created (`delivery.owner`). */
  readonly owner?: MaildirOwner;
  /** File-system layer (tests inject failures). */
  readonly fs?: MaildirFs;
}

/** Where a local address's Maildir lives, or why it cannot have one. */
export type MaildirPath = { readonly ok: true; readonly path: string } | { readonly ok: false; readonly reason: string };

/** Map "local@domain" to `<root>/<domain>/<local>` (lower-cased), refusing anything that is not one safe path component each. */
export function maildirPathFor(root: string, address: string): MaildirPath {
  let { local, domain } = splitAddress(address);
  if (local === "" || domain === "") return { ok: false, reason: `not a local@domain address: ${address}` };
  if (local.length >= 2 && local.startsWith('"') && local.endsWith('"')) local = local.slice(1, -1).replace(/\\(.)/g, "$1");
  local = local.toLowerCase();
  for (const [what, part] of [["local part", local], ["domain", domain]] as const) {
    if (part === "" || part === "." || part === ".." || /[/\\\x00-\x1f\x7f]/.test(part)) {
      return { ok: false, reason: `${what} ${JSON.stringify(part)} cannot name a mailbox directory` };
    }
  }
  return { ok: true, path: join(root, domain, local) };
}

/**
 * A message up to this size is read from the spool once per delivery — the
 * loop check and every recipient's copy use the same chunks; a larger one is
 * streamed from the spool for each recipient, so memory stays bounded.
 */
const KEEP_LIMIT = 256 * 1024;

export class LocalAgent implements DeliveryAgent {
  private readonly options: LocalAgentOptions;
  private readonly hostname: string;

  constructor(options: LocalAgentOptions) {
    this.options = options;
    this.hostname = options.hostname ?? osHostname();
  }

  async deliver(request: DeliveryRequest): Promise<DeliveryOutcomes> {
    let counts: TraceCounts;
    let chunks: Buffer[] | null;
    try {
      ({ counts, chunks } = await readTraceFields(request.body(), KEEP_LIMIT));
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      const outcome: DeliveryOutcome = { status: "deferred", enhanced: "4.3.0", diagnostic: `cannot read queued message ${request.queueId}: ${msg}` };
      return sameOutcome(request.recipients, outcome);
    }
    const outcomes = new Map<string, DeliveryOutcome>();
    for (const rcpt of request.recipients) outcomes.set(rcpt, await this.deliverOne(request, rcpt, counts, chunks));
    return outcomes;
  }

  private async deliverOne(request: DeliveryRequest, rcpt: string, counts: TraceCounts, chunks: readonly Buffer[] | null): Promise<DeliveryOutcome> {
    if (this.options.mailboxExists && !(await this.options.mailboxExists(rcpt))) {
      return { status: "failed", enhanced: "5.1.1", diagnostic: `550 5.1.1 <${rcpt}>: no such user here` };
    }
    const where = maildirPathFor(this.options.maildirRoot, rcpt);
    if (!where.ok) return { status: "failed", enhanced: "5.1.3", diagnostic: where.reason };
    const loop = isLoop(counts, { deliveredTo: rcpt, maxReceived: this.options.maxReceived ?? DEFAULT_MAX_RECEIVED });
    if (loop.loop) return loopOutcome(loop.reason);
    let body: MessageSource;
    try {
      body = chunks ?? request.body();
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      return { status: "deferred", enhanced: "4.3.0", diagnostic: `cannot read queued message ${request.queueId}: ${msg}` };
    }
    const result = await deliverToMaildir(
      where.path,
      body,
      { returnPath: request.envelope.mailFrom, originalTo: request.originalRecipients?.get(rcpt) ?? rcpt, deliveredTo: rcpt },
      {
        quota: await this.options.quotaFor?.(rcpt),
        quotaFull: this.options.quotaFull,
        fsync: this.options.fsync,
        hostname: this.hostname,
        owner: this.options.owner,
        ...(request.envelope.folder !== undefined ? { folder: request.envelope.folder } : {}),
        fs: this.options.fs,
      },
    );
    return result.outcome;
  }
}
