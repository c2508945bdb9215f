/**
 * `petrel tlsrpt summary`: what other servers report about delivering to Petrel's domains
 * (RFC 8460 TLS reports, received by mail). Reads the Maildirs of the mailboxes the reports
 * are sent to — by default where postmaster@ of each local domain goes, which is the `rua`
 * that `petrel dns` prints — and prints each report and the totals per policy domain.
 * Read-only; works with or without a running server.
 *
 * Exit codes: 0 printed (also when there are no reports); 2 usage; 78 configuration errors.
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { loadConfig } from "../config/load.ts";
import { ConfigError } from "../config/config-error.ts";
import type { Config } from "../config/schema.ts";
import { FileAccountStore } from "../accounts/file-account-store.ts";
import { maildirPathFor } from "../delivery/local-agent.ts";
import { reportsInMaildirs, type ReceivedReport } from "../tls-rpt/inbound.ts";

export interface Io {
  readonly stdout: { write(s: string): unknown };
  readonly stderr: { write(s: string): unknown };
}

const USAGE = `Usage: petrel tlsrpt summary [--config FILE] [--mailbox ADDRESS]... [--json]
  summary    the TLS reports (RFC 8460) received for this server's domains: each report, then
             successful and failed sessions per policy domain with the failures by result type.
             Reports are read from the mailboxes postmaster@ of each local domain goes to
             (the rua of the _smtp._tls record), or from --mailbox ADDRESS (repeatable).
`;

export async function tlsrptCommand(argv: string[], io: Io): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv, allowPositionals: true,
      options: { config: { type: "string", short: "c" }, json: { type: "boolean" }, mailbox: { type: "string", multiple: true } },
    });
  } catch (err) {
    io.stderr.write(`petrel tlsrpt: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const [sub, ...extra] = parsed.positionals;
  if (sub === "help" || sub === undefined) {
    (sub === undefined ? io.stderr : io.stdout).write(USAGE);
    return sub === undefined ? 2 : 0;
  }
  if (sub !== "summary" || extra.length > 0) {
    io.stderr.write(`petrel tlsrpt: unknown command '${[sub, ...extra].join(" ")}'\n\n${USAGE}`);
    return 2;
  }
  let config: Config;
  try {
    config = await loadConfig(parsed.values.config, { checkFiles: false });
  } catch (err) {
    if (err instanceof ConfigError) {
      io.stderr.write(`petrel: the configuration has errors.\n${err.message}\n`);
      return 78;
    }
    throw err;
  }
  const maildirs = await mailboxDirs(config, parsed.values.mailbox ?? []);
  const reports = await reportsInMaildirs(maildirs.map((m) => m.path));
  if (parsed.values.json) {
    io.stdout.write(`${JSON.stringify({ mailboxes: maildirs.map((m) => m.address), reports, totals: totals(reports) }, null, 2)}\n`);
  } else {
    io.stdout.write(formatSummary(maildirs.map((m) => m.address), reports));
  }
  return 0;
}

/** The Maildirs of the given addresses (aliases followed), or of where postmaster@ of each local domain goes. */
async function mailboxDirs(config: Config, asked: readonly string[]): Promise<{ address: string; path: string }[]> {
  const store = FileAccountStore.fromConfig(config);
  const addresses = asked.length > 0 ? asked : (await store.listDomains()).map((d) => `postmaster@${d}`);
  const root = join(config.dataDir, "mail");
  const found = new Map<string, string>();
  for (const address of addresses) {
    const r = await store.resolveRecipient(address);
    const mailboxes = r.kind === "local" ? r.targets.filter((t) => t.type === "mailbox").map((t) => t.address) : [address];
    for (const m of mailboxes) {
      const p = maildirPathFor(root, m);
      if (p.ok) found.set(m, p.path);
    }
  }
  return [...found].map(([address, path]) => ({ address, path }));
}

export interface DomainTotals {
  readonly domain: string;
  reports: number;
  successful: number;
  failed: number;
  readonly failures: Record<string, number>;
}

export function totals(reports: readonly ReceivedReport[]): DomainTotals[] {
  const by = new Map<string, DomainTotals>();
  for (const r of reports) {
    for (const p of r.policies) {
      let t = by.get(p.domain);
      if (!t) by.set(p.domain, (t = { domain: p.domain, reports: 0, successful: 0, failed: 0, failures: {} }));
      t.reports++;
      t.successful += p.successful;
      t.failed += p.failed;
      for (const f of p.failures) t.failures[f.resultType] = (t.failures[f.resultType] ?? 0) + f.count;
    }
  }
  return [...by.values()].sort((a, b) => a.domain.localeCompare(b.domain));
}

function formatSummary(mailboxes: readonly string[], reports: readonly ReceivedReport[]): string {
  const lines: string[] = [];
  lines.push(`TLS reports in ${mailboxes.length === 0 ? "no mailbox" : mailboxes.join(", ")}: ${reports.length}`);
  for (const r of reports) {
    lines.push("");
    lines.push(`${r.start} to ${r.end}  from ${r.organization || "(no organization-name)"}${r.contact ? ` <${r.contact}>` : ""}  report ${r.reportId}`);
    for (const p of r.policies) {
      lines.push(`  ${p.type} ${p.domain}: ${p.successful} successful, ${p.failed} failed`);
      for (const f of p.failures) {
        const where = [f.mx, f.ip].filter(Boolean).join(" ");
        lines.push(`    ${f.resultType} × ${f.count}${where ? `  ${where}` : ""}${f.reason ? `  (${f.reason})` : ""}`);
      }
    }
  }
  const t = totals(reports);
  if (t.length > 0) {
    lines.push("");
    lines.push("Totals by policy domain:");
    for (const d of t) {
      const failures = Object.entries(d.failures).map(([k, v]) => `${k} ${v}`).join(", ");
      lines.push(`  ${d.domain}: ${d.successful} successful, ${d.failed} failed in ${d.reports} report(s)${failures ? ` — ${failures}` : ""}`);
    }
  }
  return `${lines.join("\n")}\n`;
}
