/**
 * An SMTP reply (RFC 5321 §4.2): a three-digit code, an optional RFC 3463
 * enhanced status code (announced by ENHANCEDSTATUSCODES, RFC 2034), and one
 * or more lines of human-readable text. Replies are values: every part of
 * Petrel that refuses or accepts something returns one, and only the
 * connection turns it into bytes.
 */
export interface Reply {
  readonly code: number;
  /** RFC 3463 class.subject.detail, e.g. "5.1.1"; absent only where RFC 2034 §3 allows (greeting, EHLO). */
  readonly status?: string;
  readonly lines: readonly string[];
}

export function reply(code: number, status: string | undefined, ...lines: string[]): Reply {
  return { code, status, lines: lines.length > 0 ? lines : [""] };
}

/** True for 2xx and 3xx replies: the command was accepted (or is in progress). */
export function isPositive(r: Reply): boolean {
  return r.code < 400;
}

/**
 * Serialise to wire form. Multi-line replies use "code-" on every line but the
 * last (§4.2.1); RFC 2034 §4 puts the enhanced code at the start of every line.
 */
export function serializeReply(r: Reply): string {
  const prefix = r.status ? `${r.status} ` : "";
  const last = r.lines.length - 1;
  let out = "";
  for (let i = 0; i <= last; i++) {
    out += `${r.code}${i === last ? " " : "-"}${prefix}${r.lines[i]}\r\n`;
  }
  return out;
}

/** Replies whose wire form was encoded once (the fixed replies of replies.ts). */
const encoded = new WeakMap<Reply, Buffer>();

/**
 * A reply that never changes, encoded once: every session sends the same
 * bytes for it without building them again.
 */
export function fixedReply(code: number, status: string | undefined, ...lines: string[]): Reply {
  const r = reply(code, status, ...lines);
  encoded.set(r, Buffer.from(serializeReply(r), "utf8"));
  return r;
}

/** The wire form as bytes (encoded once for a fixed reply). */
export function encodeReply(r: Reply): Buffer {
  return encoded.get(r) ?? Buffer.from(serializeReply(r), "utf8");
}

/** The reply as one line of text for messages and logs: "550 5.1.1 no such user". */
export function replyText(r: Reply): string {
  const text = r.lines.filter((l) => l !== "").join(" ");
  return [String(r.code), r.status, text].filter((p) => p !== undefined && p !== "").join(" ");
}
