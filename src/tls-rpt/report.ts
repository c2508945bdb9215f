/**
 * The aggregate report of one policy domain for one UTC day, in the JSON format of RFC 8460
 * §4.4 (field names as the RFC spells them), and the `_smtp._tls` TXT record that says where
 * it goes (RFC 8460 §3).
 */
import type { PolicyCounts } from "./day-counts.ts";

export interface ReportIdentity {
  /** "organization-name": who sends the report. */
  readonly organization: string;
  /** "contact-info": an address or URI to reach them. */
  readonly contact: string;
  /** The reporting domain (TLS-Report-Submitter, the file name's sender). */
  readonly submitter: string;
}

export interface TlsReport {
  readonly "organization-name": string;
  readonly "date-range": { readonly "start-datetime": string; readonly "end-datetime": string };
  readonly "contact-info": string;
  readonly "report-id": string;
  readonly policies: readonly {
    readonly policy: {
      readonly "policy-type": "sts" | "tlsa" | "no-policy-found";
      readonly "policy-string"?: readonly string[];
      readonly "policy-domain": string;
      readonly "mx-host"?: readonly string[];
    };
    readonly summary: { readonly "total-successful-session-count": number; readonly "total-failure-session-count": number };
    readonly "failure-details"?: readonly Record<string, string | number>[];
  }[];
}

/** Start and end of a UTC day, ms. */
export function dayBounds(day: string): { start: number; end: number } {
  const start = Date.parse(`${day}T00:00:00Z`);
  return { start, end: start + 86_400_000 - 1000 };
}

const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");

/** A report id unique per submitter, day and policy domain: the same report sent twice has the same id. */
export function reportId(identity: ReportIdentity, day: string, domain: string): string {
  return `${day}.${domain}@${identity.submitter}`;
}

/** `id`: the report-id a retry keeps (day-counts.ts `TakenReport`), else this identity's. */
export function buildReport(identity: ReportIdentity, day: string, domain: string, counts: readonly PolicyCounts[], id?: string): TlsReport {
  const { start, end } = dayBounds(day);
  return {
    "organization-name": identity.organization,
    "date-range": { "start-datetime": iso(start), "end-datetime": iso(end) },
    "contact-info": identity.contact,
    "report-id": id ?? reportId(identity, day, domain),
    policies: counts.map((c) => {
      const p = c.policy;
      return {
        policy: {
          "policy-type": p.type,
          ...(p.type !== "no-policy-found" && p.lines.length > 0 ? { "policy-string": p.lines } : {}),
          "policy-domain": p.domain,
          ...(p.type === "sts" && p.mxHost.length > 0 ? { "mx-host": p.mxHost } : {}),
        },
        summary: { "total-successful-session-count": c.successful, "total-failure-session-count": c.failed },
        ...(c.failures.length > 0
          ? {
            "failure-details": c.failures.map((f) => ({
              "result-type": f.resultType,
              ...(f.sendingMtaIp ? { "sending-mta-ip": f.sendingMtaIp } : {}),
              ...(f.receivingMxHostname ? { "receiving-mx-hostname": f.receivingMxHostname } : {}),
              ...(f.receivingIp ? { "receiving-ip": f.receivingIp } : {}),
              "failed-session-count": f.count,
              ...(f.failureReasonCode ? { "failure-reason-code": f.failureReasonCode } : {}),
            })),
          }
          : {}),
      };
    }),
  };
}

/** Where reports go: the `rua` URIs of a `_smtp._tls` record (RFC 8460 §3). */
export interface ReportingAddresses {
  readonly mailto: readonly string[];
  readonly https: readonly string[];
}

/**
 * The one TXT record starting "v=TLSRPTv1;" among `records` (none, or several: the domain does
 * not take reports), and its rua: comma-separated mailto: and https: URIs.
 */
export function parseTlsRptRecord(records: readonly string[]): ReportingAddresses | undefined {
  const ours = records.filter((r) => /^v=TLSRPTv1\s*;/.test(r));
  if (ours.length !== 1) return undefined;
  const mailto: string[] = [];
  const https: string[] = [];
  for (const field of ours[0].split(";").slice(1)) {
    const eq = field.indexOf("=");
    if (eq < 0 || field.slice(0, eq).trim() !== "rua") continue;
    for (const raw of field.slice(eq + 1).split(",")) {
      const uri = raw.trim();
      if (/^mailto:/i.test(uri)) {
        let address: string;
        try {
          address = decodeURIComponent(uri.slice(7).split("?")[0]);
        } catch {
          continue;
        }
        if (/^[^@\s<>]+@[^@\s<>]+$/.test(address)) mailto.push(address);
      } else if (/^https:\/\//i.test(uri)) {
        try {
          https.push(new URL(uri).toString());
        } catch {
          // not a URI: skipped
        }
      }
    }
  }
  return mailto.length + https.length > 0 ? { mailto, https } : undefined;
}
