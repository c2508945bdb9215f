/**
 * A TLS report as mail (RFC 8460 §5.3): a multipart/report of report-type "tlsrpt" (RFC 6522)
 * whose first part says in words what it is and whose second part is the JSON report, gzipped,
 * as an application/tlsrpt+gzip attachment named "submitter!policy-domain!begin!end.json.gz"
 * (§5.1). The TLS-Report-Domain and TLS-Report-Submitter fields name the policy domain and the
 * reporter; the Subject follows §5.3's form. "TLS-Required: No" (RFC 8689 §4.1) lets the report
 * through even to a domain whose TLS is broken — which is what it reports (§5.3: reports MUST
 * be delivered despite TLS failures); "Auto-Submitted" keeps auto-responders quiet (RFC 3834).
 *
 * Pure: time and randomness come in with the input.
 */
import { randomBytes as cryptoRandomBytes } from "node:crypto";
import { gzipSync } from "node:zlib";
import { rfc5322Date } from "../smtp/trace-headers.ts";
import { dayBounds, type ReportIdentity, type TlsReport } from "./report.ts";

export interface ReportMailInput {
  readonly identity: ReportIdentity;
  readonly day: string;
  readonly policyDomain: string;
  readonly report: TlsReport;
  readonly from: string;
  readonly to: readonly string[];
  readonly hostname: string;
  readonly now: Date;
  readonly randomBytes?: (n: number) => Buffer;
}

/** The §5.1 file name of a report: "submitter!policy-domain!begin!end.json.gz" (seconds since the epoch). */
export function reportFileName(submitter: string, policyDomain: string, day: string): string {
  const { start, end } = dayBounds(day);
  return `${submitter}!${policyDomain}!${Math.floor(start / 1000)}!${Math.floor(end / 1000)}.json.gz`;
}

/** The gzipped JSON body, as an HTTPS report is posted and the attachment carries it. */
export function gzipReport(report: TlsReport): Buffer {
  return gzipSync(Buffer.from(JSON.stringify(report)));
}

function base64Lines(data: Buffer): string {
  return (data.toString("base64").match(/.{1,76}/g) ?? []).join("\r\n");
}

export function composeReportMail(input: ReportMailInput): Buffer {
  const random = input.randomBytes ?? cryptoRandomBytes;
  const boundary = `tlsrpt-${random(12).toString("hex")}`;
  const { identity, policyDomain, report } = input;
  const id = report["report-id"];
  const totals = report.policies.reduce((t, p) => ({
    ok: t.ok + p.summary["total-successful-session-count"],
    failed: t.failed + p.summary["total-failure-session-count"],
  }), { ok: 0, failed: 0 });
  const text = [
    `This is an aggregate TLS report (RFC 8460) from ${identity.organization} for ${policyDomain}`,
    `covering ${report["date-range"]["start-datetime"]} to ${report["date-range"]["end-datetime"]}:`,
    `${totals.ok} successful and ${totals.failed} failed TLS sessions. The report is attached as JSON (gzip).`,
    "",
  ].join("\r\n");
  const header = [
    `From: <${input.from}>`,
    `To: ${input.to.map((a) => `<${a}>`).join(", ")}`,
    `Subject: Report Domain: ${policyDomain} Submitter: ${identity.submitter} Report-ID: <${id}>`,
    `Date: ${rfc5322Date(input.now)}`,
    `Message-ID: <${random(12).toString("hex")}.tlsrpt@${input.hostname}>`,
    `TLS-Report-Domain: ${policyDomain}`,
    `TLS-Report-Submitter: ${identity.submitter}`,
    "TLS-Required: No",
    "Auto-Submitted: auto-generated",
    "MIME-Version: 1.0",
    `Content-Type: multipart/report; report-type="tlsrpt"; boundary="${boundary}"`,
  ];
  const body = [
    `--${boundary}`,
    "Content-Type: text/plain; charset=us-ascii",
    "Content-Transfer-Encoding: 7bit",
    "",
    text,
    `--${boundary}`,
    "Content-Type: application/tlsrpt+gzip",
    "Content-Transfer-Encoding: base64",
    `Content-Disposition: attachment; filename="${reportFileName(identity.submitter, policyDomain, input.day)}"`,
    "",
    base64Lines(gzipReport(report)),
    `--${boundary}--`,
    "",
  ];
  return Buffer.from([...header, "", ...body].join("\r\n"));
}
