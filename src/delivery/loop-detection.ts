/**
 * Mail loop detection for final delivery, as Postfix's local(8) and cleanup(8)
 * do it: a message that already carries a `Delivered-To:` field naming this
 * very recipient has been here before (an alias or forward points back), and
 * a message with too many `Received:` fields (RFC 5321 §6.3) is going round
 * in circles somewhere. Either way it is bounced with RFC 3463 5.4.6
 * "routing loop detected" rather than delivered again.
 *
 * Only the header section is read: the scan stops at the first empty line,
 * and after `maxHeaderBytes` whatever comes (a message without a body
 * separator is all header, but a loop is decided long before).
 */
import type { Readable } from "node:stream";
import type { DeliveryOutcome } from "../queue/ports.ts";

/** Postfix's hopcount_limit. RFC 5321 §6.3 asks for at least 100 before giving up; 50 is the practical default. */
export const DEFAULT_MAX_RECEIVED = 50;
const DEFAULT_MAX_HEADER_BYTES = 1024 * 1024;

export interface TraceCounts {
  /** Number of `Received:` fields in the header section. */
  readonly received: number;
  /** The addresses of every `Delivered-To:` field, lower-cased, angle brackets removed. */
  readonly deliveredTo: readonly string[];
  /**
   * A `TLS-Required: No` field (RFC 8689 §4.1): the sender asks that the recipient's MTA-STS
   * and DANE policies not stop the message (the remote agent reads it; TLS-RPT reports carry it).
   */
  readonly tlsRequiredNo: boolean;
}

/** Read the header section of a message stream and count its trace fields. The stream is destroyed afterwards. */
export async function countTraceFields(message: Readable, options?: { maxHeaderBytes?: number }): Promise<TraceCounts> {
  const limit = options?.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES;
  const scanner = new HeaderScanner();
  let seen = 0;
  try {
    for await (const chunk of message) {
      const buf: Buffer = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
      const room = limit - seen;
      const part = buf.length > room ? buf.subarray(0, room) : buf;
      seen += part.length;
      if (scanner.push(part) || seen >= limit) break;
    }
  } finally {
    message.destroy();
  }
  return scanner.finish();
}

/**
 * `countTraceFields`, keeping the message too when it is at most `keep`
 * octets: a delivery to several mailboxes (or with a loop check first) then
 * reads the spool once. `chunks` is null for a larger message (the stream is
 * destroyed once its header section is read, as countTraceFields does).
 */
export async function readTraceFields(message: Readable, keep: number): Promise<{ counts: TraceCounts; chunks: Buffer[] | null }> {
  const scanner = new HeaderScanner();
  let chunks: Buffer[] | null = [];
  let seen = 0;
  let kept = 0;
  try {
    for await (const chunk of message) {
      const buf: Buffer = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
      if (chunks !== null) {
        kept += buf.length;
        if (kept <= keep) chunks.push(buf);
        else chunks = null;
      }
      if (seen < DEFAULT_MAX_HEADER_BYTES) {
        const room = DEFAULT_MAX_HEADER_BYTES - seen;
        const part = buf.length > room ? buf.subarray(0, room) : buf;
        seen += part.length;
        if (scanner.push(part)) seen = DEFAULT_MAX_HEADER_BYTES;
      }
      if (chunks === null && seen >= DEFAULT_MAX_HEADER_BYTES) break;
    }
  } finally {
    message.destroy();
  }
  return { counts: scanner.finish(), chunks };
}

/** Incremental header-section scanner: fields are unfolded and classified one at a time. */
export class HeaderScanner {
  private partial: Buffer[] = [];
  private field: string | null = null;
  private done = false;
  private received = 0;
  private tlsRequiredNo = false;
  private readonly deliveredTo: string[] = [];

  /** Feed bytes; returns true once the end of the header section was seen. */
  push(chunk: Buffer): boolean {
    let pos = 0;
    while (!this.done && pos < chunk.length) {
      const lf = chunk.indexOf(0x0a, pos);
      if (lf === -1) {
        this.partial.push(chunk.subarray(pos));
        break;
      }
      let line = chunk.subarray(pos, lf);
      if (this.partial.length > 0) {
        line = Buffer.concat([...this.partial, line]);
        this.partial = [];
      }
      if (line.length > 0 && line[line.length - 1] === 0x0d) line = line.subarray(0, line.length - 1);
      this.line(line.toString("utf8"));
      pos = lf + 1;
    }
    return this.done;
  }

  finish(): TraceCounts {
    if (!this.done && this.partial.length > 0) this.line(Buffer.concat(this.partial).toString("utf8"));
    this.flush();
    return { received: this.received, deliveredTo: [...this.deliveredTo], tlsRequiredNo: this.tlsRequiredNo };
  }

  private line(text: string): void {
    if (text === "") {
      this.flush();
      this.done = true;
      return;
    }
    if (text[0] === " " || text[0] === "\t") {
      if (this.field !== null) this.field += text;
      return;
    }
    this.flush();
    this.field = text;
  }

  private flush(): void {
    const f = this.field;
    this.field = null;
    if (f === null) return;
    const colon = f.indexOf(":");
    if (colon <= 0) return;
    const name = f.slice(0, colon).trim().toLowerCase();
    if (name === "received") this.received++;
    else if (name === "delivered-to") this.deliveredTo.push(normalizeAddress(f.slice(colon + 1)));
    else if (name === "tls-required") this.tlsRequiredNo = f.slice(colon + 1).trim().toLowerCase() === "no";
  }
}

function normalizeAddress(value: string): string {
  let v = value.trim();
  if (v.startsWith("<") && v.endsWith(">")) v = v.slice(1, -1).trim();
  return v.toLowerCase();
}

export interface LoopOptions {
  /** The recipient being delivered to now. */
  readonly deliveredTo: string;
  /** Received fields at or above which the message is looping; default 50 (Postfix hopcount_limit). */
  readonly maxReceived?: number;
}

/** Whether the message loops for this recipient, with the reason. */
export function isLoop(counts: Pick<TraceCounts, "received" | "deliveredTo">, options: LoopOptions): { loop: false } | { loop: true; reason: string } {
  const max = options.maxReceived ?? DEFAULT_MAX_RECEIVED;
  const me = normalizeAddress(options.deliveredTo);
  if (counts.deliveredTo.includes(me)) {
    return { loop: true, reason: `mail forwarding loop for ${options.deliveredTo} (Delivered-To already present)` };
  }
  if (counts.received >= max) {
    return { loop: true, reason: `mail forwarding loop: too many hops (${counts.received} Received fields, limit ${max})` };
  }
  return { loop: false };
}

/** The outcome for a looping message: permanent failure 5.4.6 (RFC 3463). */
export function loopOutcome(reason: string): DeliveryOutcome {
  return { status: "failed", enhanced: "5.4.6", diagnostic: reason };
}
