/**
 * TLS reports other senders mail to Petrel's domains (RFC 8460 §5.3), as they land in a
 * Maildir: each message is searched for its report — an application/tlsrpt+gzip or
 * application/tlsrpt+json part (base64 or plain), at the top or inside a multipart up to three
 * levels deep; gzip is inflated to at most 16 MiB — and the JSON read with the fields of
 * RFC 8460 §4.4. Messages that hold no report are skipped; nothing is changed in the Maildir.
 */
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import type { ResultType } from "./session-result.ts";

export interface ReceivedReport {
  /** The Maildir file it came in. */
  readonly file: string;
  readonly organization: string;
  readonly contact: string;
  readonly reportId: string;
  readonly start: string;
  readonly end: string;
  readonly policies: readonly {
    readonly type: string;
    readonly domain: string;
    readonly strings: readonly string[];
    readonly successful: number;
    readonly failed: number;
    readonly failures: readonly { readonly resultType: ResultType | string; readonly count: number; readonly mx?: string; readonly ip?: string; readonly reason?: string }[];
  }[];
}

const MAX_MESSAGE = 32 * 1024 * 1024;
const MAX_JSON = 16 * 1024 * 1024;

interface Part {
  readonly headers: Map<string, string>;
  readonly body: Buffer;
}

function splitPart(raw: Buffer): Part {
  let end = raw.indexOf("\r\n\r\n");
  let sep = 4;
  const lf = raw.indexOf("\n\n");
  if (end < 0 || (lf >= 0 && lf < end)) {
    end = lf;
    sep = 2;
  }
  const head = end < 0 ? raw.toString("latin1") : raw.subarray(0, end).toString("latin1");
  const headers = new Map<string, string>();
  for (const field of head.replace(/\r?\n[ \t]+/g, " ").split(/\r?\n/)) {
    const colon = field.indexOf(":");
    if (colon > 0) headers.set(field.slice(0, colon).trim().toLowerCase(), field.slice(colon + 1).trim());
  }
  return { headers, body: end < 0 ? Buffer.alloc(0) : raw.subarray(end + sep) };
}

/** A parameter of a structured header field value ("boundary" of a Content-Type). */
function parameter(value: string, name: string): string | undefined {
  const m = new RegExp(`;\\s*${name}\\s*=\\s*(?:"([^"]*)"|([^;\\s]+))`, "i").exec(value);
  return m ? (m[1] ?? m[2]) : undefined;
}

function decode(part: Part): Buffer {
  const cte = (part.headers.get("content-transfer-encoding") ?? "").toLowerCase();
  if (cte === "base64") return Buffer.from(part.body.toString("latin1").replace(/[^A-Za-z0-9+/=]/g, ""), "base64");
  return part.body;
}

/** The report payloads (JSON text) in a message. */
function payloads(part: Part, depth: number, out: Buffer[]): void {
  const type = (part.headers.get("content-type") ?? "text/plain").toLowerCase();
  const media = type.split(";")[0].trim();
  if (media.startsWith("multipart/") && depth < 3) {
    const boundary = parameter(part.headers.get("content-type") ?? "", "boundary");
    if (!boundary) return;
    const text = part.body.toString("latin1");
    const pieces = text.split(new RegExp(`\\r?\\n?--${boundary.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}(?:--)?[ \\t]*\\r?\\n?`));
    for (const piece of pieces.slice(1)) {
      if (piece.trim() === "") continue;
      payloads(splitPart(Buffer.from(piece, "latin1")), depth + 1, out);
    }
    return;
  }
  const name = parameter(part.headers.get("content-disposition") ?? "", "filename") ?? parameter(type, "name") ?? "";
  const gz = media === "application/tlsrpt+gzip" || ((media === "application/gzip" || media === "application/octet-stream") && name.endsWith(".json.gz"));
  const json = media === "application/tlsrpt+json" || (media === "application/json" && name.endsWith(".json"));
  if (!gz && !json) return;
  const data = decode(part);
  out.push(gz || (data[0] === 0x1f && data[1] === 0x8b) ? gunzipSync(data, { maxOutputLength: MAX_JSON }) : data);
}

const str = (v: unknown) => (typeof v === "string" ? v : "");
const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : 0);

function readReport(file: string, json: unknown): ReceivedReport | undefined {
  const r = json as Record<string, unknown> | null;
  if (!r || typeof r !== "object" || !Array.isArray(r.policies)) return undefined;
  const range = (r["date-range"] ?? {}) as Record<string, unknown>;
  return {
    file,
    organization: str(r["organization-name"]),
    contact: str(r["contact-info"]),
    reportId: str(r["report-id"]),
    start: str(range["start-datetime"]),
    end: str(range["end-datetime"]),
    policies: r.policies.map((p: Record<string, unknown>) => {
      const policy = (p?.policy ?? {}) as Record<string, unknown>;
      const summary = (p?.summary ?? {}) as Record<string, unknown>;
      const details = Array.isArray(p?.["failure-details"]) ? (p["failure-details"] as Record<string, unknown>[]) : [];
      return {
        type: str(policy["policy-type"]),
        domain: str(policy["policy-domain"]),
        strings: Array.isArray(policy["policy-string"]) ? (policy["policy-string"] as unknown[]).map(str) : [],
        successful: num(summary["total-successful-session-count"]),
        failed: num(summary["total-failure-session-count"]),
        failures: details.map((d) => ({
          resultType: str(d["result-type"]),
          count: num(d["failed-session-count"]),
          ...(d["receiving-mx-hostname"] ? { mx: str(d["receiving-mx-hostname"]) } : {}),
          ...(d["receiving-ip"] ? { ip: str(d["receiving-ip"]) } : {}),
          ...(d["failure-reason-code"] ? { reason: str(d["failure-reason-code"]) } : {}),
        })),
      };
    }),
  };
}

/** The reports a message (as stored, CRLF or LF) carries; none when it is not a TLS report. */
export function reportsInMessage(file: string, raw: Buffer): ReceivedReport[] {
  const found: Buffer[] = [];
  try {
    payloads(splitPart(raw), 0, found);
  } catch {
    return [];
  }
  return found.flatMap((b) => {
    try {
      return readReport(file, JSON.parse(b.toString("utf8"))) ?? [];
    } catch {
      return [];
    }
  });
}

/** Every report in the Maildirs (their new/ and cur/ folders), oldest report period first. */
export async function reportsInMaildirs(maildirs: readonly string[]): Promise<ReceivedReport[]> {
  const out: ReceivedReport[] = [];
  for (const dir of maildirs) {
    for (const sub of ["new", "cur"]) {
      let names: string[];
      try {
        names = await readdir(join(dir, sub));
      } catch {
        continue;
      }
      for (const name of names.sort()) {
        const file = join(dir, sub, name);
        try {
          if ((await stat(file)).size > MAX_MESSAGE) continue;
          out.push(...reportsInMessage(file, await readFile(file)));
        } catch {
          // a message that went away or cannot be read is no report
        }
      }
    }
  }
  return out.sort((a, b) => a.start.localeCompare(b.start) || a.reportId.localeCompare(b.reportId));
}
