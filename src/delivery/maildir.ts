/**
 * Delivery into a Maildir (https://cr.yp.to/proto/maildir.html), the way
 * Dovecot reads it (https://doc.dovecot.org/admin_manual/mailbox_formats/maildir/):
 *
 * 1. `cur/`, `new/` and `tmp/` exist (created mode 0700, and the new
 *    directory entries fsync'd, when missing);
 * 2. the message is written to `tmp/<unique>` — `Return-Path:`,
 *    `X-Original-To:` and `Delivered-To:` fields first (the order Postfix's
 *    local(8) and virtual(8) write them), then the spooled message streamed chunk by
 *    chunk with CRLF turned into LF (Maildir files use the local line end;
 *    Dovecot's default `mail_save_crlf = no` and IMAP gives CRLF back);
 * 3. the file is fsync'd and renamed to `new/<unique>,S=<size>,W=<vsize>`
 *    (Dovecot's size fields: S= the file size, used by its quota; W= the
 *    RFC 822 size with CRLF line ends), and `new/` is fsync'd.
 *
 * `<unique>` is `<seconds>.M<microseconds, 6 digits>P<pid>Q<counter>R<random>.<host>`:
 * unique within this process by the counter and across processes and hosts
 * by pid, random and host name (with "/", ":" and "," written as \057, \072,
 * \054 so the name stays one path component and Dovecot's parser is not fooled).
 *
 * A message for a Maildir++ folder (Courier's layout, which Dovecot reads:
 * https://doc.dovecot.org/admin_manual/mailbox_formats/maildir/) goes into
 * `<Maildir>/.<folder>/`, itself a Maildir, with an empty `maildirfolder`
 * file that marks it as one; "." separates levels ("Archive.2024"). The
 * quota counts the mailbox with all its folders.
 *
 * Failures never leave a file behind in tmp/: disk full (ENOSPC) and other
 * I/O errors are temporary (4.3.0); a full mailbox (the optional quota, or
 * EDQUOT) is 4.2.2 or 5.2.2 as configured; a message larger than the whole
 * quota can never fit and is 5.2.3 whatever the configuration.
 */
import { GroupSync } from "../spool/group-sync.ts";
import { hostname as osHostname } from "node:os";
import { randomBytes } from "node:crypto";
import { dirname, join } from "node:path";
import type { Readable } from "node:stream";
import type { DeliveryOutcome } from "../queue/ports.ts";
import { CrlfToLf, countLf } from "./crlf-to-lf.ts";
import { maildirSize } from "./maildir-size.ts";
import { nodeMaildirFs, type MaildirFile, type MaildirFs } from "./maildir-fs.ts";

export type { MaildirFs };


/**
 * Who owns what a delivery creates (`delivery.owner`), e.g. Dovecot's mail
 * user. `shared`: a group was named, so files are 0660 and directories 2770
 * (set-group-ID: what Dovecot creates inside keeps the group), else 0600 and
 * 0700.
 */
export interface MaildirOwner {
  /** -1: as created. */
  readonly uid: number;
  /** -1: as created. */
  readonly gid: number;
  readonly shared: boolean;
}

export interface MaildirOptions {
  /** Mailbox size limit in bytes (sum of the S= sizes of every message); none when absent. */
  readonly quota?: number;
  /** What a full mailbox means: "defer" (4.2.2, the default) or "bounce" (5.2.2). */
  readonly quotaFull?: "defer" | "bounce";
  /** fsync the file and the directory (default true). Turn off only for tests and benchmarks. */
  readonly fsync?: boolean;
  /** Host name in the unique file name; default os.hostname(). */
  readonly hostname?: string;
  /** Give what is created to this owner (default: whoever Petrel runs as, private modes). */
  readonly owner?: MaildirOwner;
  /** Deliver into this Maildir++ folder of the mailbox instead of its inbox (a name `maildirFolder` refuses means the inbox). */
  readonly folder?: string;
  readonly fs?: MaildirFs;
}

/**
 * The directory of a Maildir++ folder ("Junk" → ".Junk"), "" for the inbox
 * ("INBOX", any case), or null for a name that cannot be one: empty, over
 * 255 octets, a "/" or "\\", a control character, or an empty level
 * (a leading, trailing or doubled ".").
 */
export function maildirFolder(name: string): string | null {
  if (/^inbox$/i.test(name)) return "";
  if (name === "" || Buffer.byteLength(name) > 255 || /[/\\\x00-\x1f\x7f]/.test(name)) return null;
  if (name.split(".").some((level) => level === "")) return null;
  return `.${name}`;
}

export interface MaildirResult {
  readonly outcome: DeliveryOutcome;
  /** Path of the delivered file (in new/), when delivered. */
  readonly path?: string;
  /** Its size in bytes (the S= value), when delivered. */
  readonly size?: number;
}

export interface MaildirHeaders {
  /** The envelope sender (reverse-path) without angle brackets; "" for the null sender. */
  readonly returnPath: string;
  /**
   * The recipient as it was received (RCPT TO), before sub-address stripping
   * and alias expansion, for X-Original-To (as Postfix writes it), so filters
   * such as Sieve see "alice+news@" where Delivered-To says "alice@".
   */
  readonly originalTo?: string;
  /** The recipient address this copy is delivered to. */
  readonly deliveredTo: string;
}

let counter = 0;

/** Escape what may not appear in the host part of a Maildir file name (Maildir spec, Dovecot). */
export function sanitizeHostname(host: string): string {
  return host.replace(/[/:,\\]/g, (c) => "\\" + c.charCodeAt(0).toString(8).padStart(3, "0"));
}

/**
 * A fresh unique base name for a new message (without the ,S= and ,W= suffixes).
 * The microseconds are zero-padded to six digits (`M%06u`, as Dovecot writes
 * them), so that names of one second sort in arrival order.
 */
export function uniqueName(host: string = osHostname(), nowUs: number = Math.floor((performance.timeOrigin + performance.now()) * 1000)): string {
  const sec = Math.floor(nowUs / 1e6);
  const usec = String(nowUs % 1e6).padStart(6, "0");
  counter = (counter + 1) % Number.MAX_SAFE_INTEGER;
  return `${sec}.M${usec}P${process.pid}Q${counter}R${randomBytes(4).toString("hex")}.${sanitizeHostname(host)}`;
}

/**
 * The message to write: a stream from the spool, or the chunks of a message
 * already read into memory (the local agent reads a small message once for
 * all its recipients).
 */
export type MessageSource = Readable | readonly Buffer[];

/** Bytes of converted message held before they are written in one writev. */
const WRITE_BATCH = 256 * 1024;

/**
 * Deliver one message into the Maildir at `dir`. Never throws for a delivery
 * problem: the outcome says what happened.
 */
export async function deliverToMaildir(
  dir: string,
  message: MessageSource,
  headers: MaildirHeaders,
  options: MaildirOptions = {},
): Promise<MaildirResult> {
  const fs = options.fs ?? nodeMaildirFs;
  const doSync = options.fsync ?? true;
  const quotaFull = options.quotaFull ?? "defer";
  if ([headers.returnPath, headers.deliveredTo, headers.originalTo ?? ""].some((a) => /[\x00-\x1f\x7f]/.test(a))) {
    release(message);
    return { outcome: { status: "failed", enhanced: "5.1.3", diagnostic: "control character in an address; refusing to write it into a header" } };
  }

  const head = Buffer.from(
    `Return-Path: <${headers.returnPath}>\n` +
    (headers.originalTo !== undefined ? `X-Original-To: ${headers.originalTo}\n` : "") +
    `Delivered-To: ${headers.deliveredTo}\n`,
    "utf8",
  );
  // A name that cannot be a folder means the inbox: the message is never lost over a check's typo.
  const folder = options.folder === undefined ? "" : maildirFolder(options.folder) ?? "";
  const target = folder === "" ? dir : join(dir, folder);
  let tmpPath: string | undefined;
  let file: MaildirFile | undefined;
  try {
    await ensureTarget(fs, dir, target, doSync, options.owner);

    let current = 0;
    if (options.quota !== undefined) {
      current = await maildirSize(fs, dir);
      if (current >= options.quota) {
        // Full now; but whether it may ever fit decides between waiting and
        // bouncing, so learn the size it would have (a read, nothing written).
        const size = head.length + (await lfSize(message));
        return { outcome: size > options.quota ? tooLargeOutcome(size, options.quota) : quotaOutcome(quotaFull, current + size, options.quota) };
      }
    }

    let base = "";
    for (let attempt = 0; ; attempt++) {
      base = uniqueName(options.hostname);
      tmpPath = join(target, "tmp", base);
      try {
        file = await fs.createExclusive(tmpPath);
        if (options.owner) await own(fs, tmpPath, options.owner, false);
        break;
      } catch (err) {
        tmpPath = undefined;
        // tmp/ removed since it was known to exist: make the Maildir again, once.
        if (errCode(err) === "ENOENT" && attempt === 0) {
          forgetMaildir(fs, dir, target);
          await ensureTarget(fs, dir, target, doSync, options.owner);
          continue;
        }
        if (errCode(err) !== "EEXIST" || attempt >= 5) throw err;
      }
    }

    // The converted message goes out in few writev calls: the trace fields
    // and a small message in one, a large one every WRITE_BATCH bytes.
    let size = head.length;
    let lfs = countLf(head);
    let batch: Buffer[] = [head];
    let batched = head.length;
    const conv = new CrlfToLf();
    for await (const chunk of message) {
      const out = conv.convert(typeof chunk === "string" ? Buffer.from(chunk) : chunk);
      if (out.length === 0) continue;
      size += out.length;
      lfs += countLf(out);
      batch.push(out);
      batched += out.length;
      if (batched >= WRITE_BATCH) {
        await file.write(batch);
        batch = [];
        batched = 0;
      }
    }
    const tail = conv.flush();
    if (tail.length > 0) {
      size += tail.length;
      batch.push(tail);
    }
    if (batch.length > 0) await file.write(batch);

    if (options.quota !== undefined && current + size > options.quota) {
      await discard(fs, file, tmpPath);
      file = undefined;
      tmpPath = undefined;
      return { outcome: size > options.quota ? tooLargeOutcome(size, options.quota) : quotaOutcome(quotaFull, current + size, options.quota) };
    }

    if (doSync) await file.sync();
    const f = file;
    file = undefined;
    await f.close();
    const finalPath = join(target, "new", `${base},S=${size},W=${size + lfs}`);
    try {
      await fs.rename(tmpPath, finalPath);
    } catch (err) {
      // new/ removed since it was known to exist: make it again and rename once more.
      if (errCode(err) !== "ENOENT") throw err;
      forgetMaildir(fs, dir, target);
      await ensureTarget(fs, dir, target, doSync, options.owner);
      await fs.rename(tmpPath, finalPath);
    }
    tmpPath = undefined;
    if (doSync) await groupSyncDir(fs, join(target, "new"));
    return { outcome: { status: "delivered", dsn: "final", detail: `delivered to maildir ${finalPath}` }, path: finalPath, size };
  } catch (err) {
    release(message);
    if (tmpPath !== undefined) await discard(fs, file, tmpPath);
    else if (file !== undefined) await file.close().catch(() => {});
    return { outcome: errorOutcome(err, dir, quotaFull) };
  }
}

async function discard(fs: MaildirFs, file: MaildirFile | undefined, path: string): Promise<void> {
  if (file !== undefined) await file.close().catch(() => {});
  await fs.unlink(path).catch(() => {});
}

function errCode(err: unknown): string | undefined {
  return typeof err === "object" && err !== null && "code" in err ? String((err as { code: unknown }).code) : undefined;
}

function quotaOutcome(mode: "defer" | "bounce", size: number, quota: number): DeliveryOutcome {
  const diagnostic = `mailbox full: ${size} bytes would exceed the quota of ${quota} bytes`;
  return mode === "bounce"
    ? { status: "failed", enhanced: "5.2.2", diagnostic }
    : { status: "deferred", enhanced: "4.2.2", diagnostic };
}

/**
 * A message larger than the whole quota: no expunge can make room, so it is
 * permanent at once rather than retried for the queue lifetime. RFC 3463
 * X.2.3 "message length exceeds administrative limit" is the per-mailbox
 * limit below the system's message size limit, which this is; X.2.2
 * "mailbox full" means the recipient can delete messages to make space and
 * is "a persistent transient failure", which this is not.
 */
function tooLargeOutcome(size: number, quota: number): DeliveryOutcome {
  return { status: "failed", enhanced: "5.2.3", diagnostic: `message too large for the mailbox: ${size} bytes exceed its whole quota of ${quota} bytes` };
}

/** Let go of a message stream not read to its end (its spool file closes); chunks need nothing. */
function release(message: MessageSource): void {
  if (!Array.isArray(message)) (message as Readable).destroy();
}

/** The size a message would have in a Maildir file (LF line ends), read from its stream; the stream is consumed. */
async function lfSize(message: MessageSource): Promise<number> {
  const conv = new CrlfToLf();
  let size = 0;
  for await (const chunk of message) size += conv.convert(typeof chunk === "string" ? Buffer.from(chunk) : chunk).length;
  return size + conv.flush().length;
}

function errorOutcome(err: unknown, dir: string, quotaFull: "defer" | "bounce"): DeliveryOutcome {
  const code = errCode(err);
  const msg = err instanceof Error ? err.message : String(err);
  if (code === "EDQUOT") {
    const diagnostic = `mailbox full: disk quota exceeded writing to ${dir}`;
    return quotaFull === "bounce"
      ? { status: "failed", enhanced: "5.2.2", diagnostic }
      : { status: "deferred", enhanced: "4.2.2", diagnostic };
  }
  if (code === "ENOSPC") return { status: "deferred", enhanced: "4.3.0", diagnostic: `no space left on device writing to maildir ${dir}` };
  return { status: "deferred", enhanced: "4.3.0", diagnostic: `cannot deliver to maildir ${dir}: ${msg}` };
}

/**
 * The fsync of new/ that makes a delivery's rename durable, shared by the
 * deliveries into the same mailbox that are waiting at that moment (group
 * commit, as the spool does for its directory).
 */
const dirSyncs = new WeakMap<MaildirFs, Map<string, GroupSync>>();
function groupSyncDir(fs: MaildirFs, path: string): Promise<void> {
  let byPath = dirSyncs.get(fs);
  if (!byPath) dirSyncs.set(fs, (byPath = new Map()));
  let g = byPath.get(path);
  if (!g) byPath.set(path, (g = new GroupSync(() => fs.syncDir(path))));
  return g.request();
}

/**
 * Maildirs (and folders) known to have cur/ new/ tmp/ (and the folder
 * marker), so a delivery makes no mkdir calls once one has: a directory
 * removed later shows as ENOENT at the create or the rename, which forgets
 * it here and makes it again.
 */
const KNOWN_MAILDIRS_LIMIT = 10_000;
const knownMaildirs = new WeakMap<MaildirFs, Set<string>>();

async function ensureTarget(fs: MaildirFs, dir: string, target: string, doSync: boolean, owner: MaildirOwner | undefined): Promise<void> {
  let known = knownMaildirs.get(fs);
  if (known?.has(target)) return;
  await ensureMaildir(fs, dir, doSync, owner);
  if (target !== dir) {
    await ensureMaildir(fs, target, doSync, owner);
    await ensureFolderMarker(fs, target, doSync, owner);
  }
  if (!known) knownMaildirs.set(fs, (known = new Set()));
  if (known.size >= KNOWN_MAILDIRS_LIMIT) known.clear();
  known.add(target);
}

function forgetMaildir(fs: MaildirFs, dir: string, target: string): void {
  const known = knownMaildirs.get(fs);
  known?.delete(dir);
  known?.delete(target);
}

/** Give a created file or directory to `owner`, with the modes the umask would cut. */
async function own(fs: MaildirFs, path: string, owner: MaildirOwner, isDir: boolean): Promise<void> {
  await fs.chown(path, owner.uid, owner.gid);
  if (owner.shared) await fs.chmod(path, isDir ? 0o2770 : 0o660);
}

/** The empty `maildirfolder` file that marks a Maildir++ folder (Courier requires it; Dovecot writes it too). */
async function ensureFolderMarker(fs: MaildirFs, folder: string, doSync: boolean, owner: MaildirOwner | undefined): Promise<void> {
  const path = join(folder, "maildirfolder");
  let marker: MaildirFile;
  try {
    marker = await fs.createExclusive(path);
  } catch (err) {
    if (errCode(err) === "EEXIST") return;
    throw err;
  }
  await marker.close();
  if (owner) await own(fs, path, owner, false);
  if (doSync) await fs.syncDir(folder);
}

/** Create cur/ new/ tmp/ (and parents) when missing, making the new entries durable. */
async function ensureMaildir(fs: MaildirFs, dir: string, doSync: boolean, owner: MaildirOwner | undefined): Promise<void> {
  const toSync = new Set<string>();
  for (const sub of ["tmp", "new", "cur"]) {
    const path = join(dir, sub);
    const created = await fs.mkdirp(path, owner?.shared ? 0o2770 : 0o700);
    if (created === undefined) continue;
    // Every directory from the first one created down to `path` is new; its
    // parent gained an entry. Owned parent first, so no moment exposes a child.
    const fresh: string[] = [];
    for (let p = path; ; p = dirname(p)) {
      fresh.unshift(p);
      if (p === created || p === dirname(p)) break;
    }
    if (owner) for (const p of fresh) await own(fs, p, owner, true);
    if (!doSync) continue;
    for (const p of fresh) toSync.add(p);
    toSync.add(dirname(fresh[0]));
  }
  // Deepest first, so a parent is synced after its children exist.
  for (const p of [...toSync].sort((a, b) => b.length - a.length)) await fs.syncDir(p);
}
