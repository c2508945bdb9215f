/**
 * The benchmark's result (bench/results/latest.json) and its Markdown view
 * (latest.md): one table per scenario, and a headline table of ratios
 * between Petrel and each peer, medians of runs made in the same invocation.
 */
import { ratio, summarize, type Summary } from "./stats.ts";
import { QUIET_IDLE } from "./quiet.ts";
import type { Generator } from "./load.ts";
import type { ServerKind } from "./servers.ts";

/** The machine before each measured run (bench/lib/quiet.ts). */
export interface QuietRecord {
  /** Share of all CPUs idle in the second before each run (0–1). */
  readonly idle: readonly number[];
  readonly load1: readonly number[];
  /** Runs taken although the machine (or another server) was busy. */
  readonly busy: number;
}

export interface ServerResult {
  readonly throughput?: Summary | null;
  /** CPU time of the server's processes per message, in µs, until it was idle again (delivery included). */
  readonly cpuPerMessage?: Summary | null;
  readonly quiet?: QuietRecord;
  /** Deliver servers: messages / (time from load start until the last one is in the Maildir). */
  readonly delivered?: Summary | null;
  /** Deliver servers: messages accepted but not yet in the Maildir when the load generator finished. */
  readonly backlog?: Summary | null;
  readonly latencyP50?: Summary | null;
  readonly latencyP99?: Summary | null;
  /** Memory scenarios: KiB per connection, or MiB of peak RSS growth. */
  readonly value?: Summary | null;
  readonly seconds?: Summary | null;
  readonly errors: string[];
}

export interface ScenarioResult {
  readonly id: string;
  readonly title: string;
  readonly generator: Generator;
  readonly messages: number;
  readonly size: number;
  readonly sessions: number;
  readonly reuse: boolean;
  readonly unit: string;
  readonly servers: Record<string, ServerResult>;
}

export interface BenchResult {
  readonly meta: {
    date: string;
    mode: "quick" | "full";
    /** The Petrel measured: a commit, and whether src/ had uncommitted changes. */
    petrel: string;
    runs: number;
    generator: Generator;
    pinned: { server: string | null; load: string | null } | null;
    node: string;
    cpus: string;
    kernel: string;
    postfix: string | null;
    smtpServer: string | null;
    durationSeconds: number;
  };
  readonly servers: { id: string; label: string; kind: ServerKind; petrel: boolean; address: string; unavailable: string | null }[];
  readonly scenarios: ScenarioResult[];
}

const fmt = (v: number | null | undefined, digits = 0) => (v === null || v === undefined || !Number.isFinite(v) ? "–" : v.toFixed(digits));
const fmtRatio = (v: number | null) => (v === null ? "–" : `${v.toFixed(2)}×`);
const range = (s: Summary | null | undefined, digits = 0) => (s ? `${fmt(s.min, digits)} – ${fmt(s.max, digits)}` : "–");

/** The Petrel variant a peer is compared with: same kind of promise to the client. */
const PETREL_FOR: Record<ServerKind, string> = { durable: "petrel-durable", discard: "petrel-discard", deliver: "petrel-mta" };

interface Comparison {
  readonly label: string;
  readonly petrel: string;
  readonly peer: string;
  /** Compare delivered/s instead of accepted/s in throughput scenarios. */
  readonly delivered?: boolean;
}

const COMPARISONS: Comparison[] = [
  { label: "Petrel journal ÷ nodemailer fsync", petrel: "petrel-durable", peer: "nodemailer-fsync" },
  { label: "Petrel journal ÷ Postfix (accepted/s)", petrel: "petrel-durable", peer: "postfix" },
  { label: "Petrel startMta ÷ Postfix (accepted/s)", petrel: "petrel-mta", peer: "postfix" },
  { label: "Petrel startMta ÷ Postfix (delivered/s)", petrel: "petrel-mta", peer: "postfix", delivered: true },
  { label: "Petrel discard ÷ nodemailer discard", petrel: "petrel-discard", peer: "nodemailer-discard" },
  { label: "Petrel discard ÷ smtp-sink", petrel: "petrel-discard", peer: "smtp-sink" },
  { label: "Petrel journal ÷ smtp-sink", petrel: "petrel-durable", peer: "smtp-sink" },
  // The SMTP workers (--only workers-…): servers on both CPUs, the load generator on CPU 1.
  { label: "workers: 2 ÷ workers: 1, journal accept only", petrel: "workers-durable-2", peer: "workers-durable-1" },
  { label: "workers: 2 ÷ workers: 1, startMta (accepted/s)", petrel: "workers-mta-2", peer: "workers-mta-1" },
  { label: "workers: 2 ÷ workers: 1, startMta (delivered/s)", petrel: "workers-mta-2", peer: "workers-mta-1", delivered: true },
];

function headline(result: BenchResult): string[] {
  const sc = (id: string) => result.scenarios.find((s) => s.id === id);
  const get = (id: string, server: string, pick: (r: ServerResult) => Summary | null | undefined) => {
    const r = sc(id)?.servers[server];
    return r ? pick(r)?.median ?? null : null;
  };
  // memory scenarios measure Petrel once (the spool does not matter for an idle connection)
  const memPetrel = (id: string, c: Comparison) => (id === "idle-connections" ? "petrel-durable" : c.petrel);
  const cols: { title: string; cell: (c: Comparison) => number | null }[] = [
    ...["1k-reuse", "1k-newconn", "100k-reuse"].map((id) => ({
      title: `${id} msg/s ↑`,
      cell: (c: Comparison) => {
        const pick = (r: ServerResult) => (c.delivered ? r.delivered : r.throughput);
        return ratio(get(id, c.petrel, pick), get(id, c.peer, pick));
      },
    })),
    { title: "latency p50 ↓", cell: (c) => (c.delivered ? null : ratio(get("latency-1session", c.petrel, (r) => r.latencyP50), get("latency-1session", c.peer, (r) => r.latencyP50))) },
    { title: "latency p99 ↓", cell: (c) => (c.delivered ? null : ratio(get("latency-1session", c.petrel, (r) => r.latencyP99), get("latency-1session", c.peer, (r) => r.latencyP99))) },
    { title: "idle KiB/conn ↓", cell: (c) => (c.delivered || c.petrel === "petrel-mta" ? null : ratio(get("idle-connections", memPetrel("idle-connections", c), (r) => r.value), get("idle-connections", c.peer, (r) => r.value))) },
    { title: "20 MiB peak RSS ↓", cell: (c) => (c.delivered ? null : ratio(get("big-message", c.petrel, (r) => r.value), get("big-message", c.peer, (r) => r.value))) },
  ];
  const lines = [
    "| Petrel ÷ peer (medians) | " + cols.map((c) => c.title).join(" | ") + " |",
    "| --- |" + cols.map(() => " ---: |").join(""),
  ];
  for (const c of COMPARISONS) {
    const cells = cols.map((col) => fmtRatio(col.cell(c)));
    if (cells.every((x) => x === "–")) continue;
    lines.push(`| ${c.label} | ${cells.join(" | ")} |`);
  }
  return lines;
}

function label(result: BenchResult, id: string): string {
  return result.servers.find((s) => s.id === id)?.label ?? id;
}

function throughputTable(result: BenchResult, s: ScenarioResult): string[] {
  const hasDelivered = Object.values(s.servers).some((r) => r.delivered);
  const lines = [
    `### ${s.title}`,
    "",
    `${s.messages} messages per run, ${s.size} body octets, ${s.sessions} session(s), generator ${s.generator}.`,
    "",
    `| server | msg/s median | min – max | same-kind Petrel ÷ this |${hasDelivered ? " delivered/s median | min – max | backlog at the end of the load |" : ""} server CPU µs/msg | machine idle before | errors |`,
    `| --- | ---: | ---: | ---: |${hasDelivered ? " ---: | ---: | ---: |" : ""} ---: | ---: | --- |`,
  ];
  for (const [id, r] of Object.entries(s.servers)) {
    const kind = result.servers.find((x) => x.id === id)?.kind ?? "durable";
    const petrel = PETREL_FOR[kind];
    const rr = id === petrel ? null : ratio(s.servers[petrel]?.throughput?.median, r.throughput?.median);
    const del = hasDelivered ? ` ${fmt(r.delivered?.median)} | ${range(r.delivered)} | ${fmt(r.backlog?.median)} |` : "";
    lines.push(`| ${label(result, id)} | ${fmt(r.throughput?.median)} | ${range(r.throughput)} | ${id === petrel ? "(Petrel)" : fmtRatio(rr)} |${del} ${fmt(r.cpuPerMessage?.median)} | ${quietCell(r.quiet)} | ${errorsCell(r.errors)} |`);
  }
  return [...lines, ""];
}

function latencyTable(result: BenchResult, s: ScenarioResult): string[] {
  const lines = [
    `### ${s.title}`,
    "",
    `${s.messages} messages per run over one connection, ${s.size} body octets; time from writing MAIL FROM to reading the final 250 after the body.`,
    "",
    "| server | msg/s median | p50 ms median | p50 min – max | p99 ms median | p99 min – max | machine idle before | errors |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
  ];
  for (const [id, r] of Object.entries(s.servers)) {
    lines.push(`| ${label(result, id)} | ${fmt(r.throughput?.median)} | ${fmt(r.latencyP50?.median, 2)} | ${range(r.latencyP50, 2)} | ${fmt(r.latencyP99?.median, 2)} | ${range(r.latencyP99, 2)} | ${quietCell(r.quiet)} | ${errorsCell(r.errors)} |`);
  }
  return [...lines, ""];
}

function memoryTable(result: BenchResult, s: ScenarioResult): string[] {
  const petrel = s.servers["petrel-durable"]?.value?.median;
  const lines = [
    `### ${s.title}`,
    "",
    s.id === "idle-connections"
      ? "RSS of the server process with every connection open (after EHLO) minus its RSS before, divided by the number of connections. Kernel socket buffers are not in RSS."
      : "Peak RSS (VmHWM, reset just before) minus RSS before the message, in MiB; the message is sent by the Node client in one session.",
    "",
    `| server | ${s.unit} median | min – max |${s.id === "big-message" ? " seconds median |" : ""} Petrel journal ÷ this | machine idle before | errors |`,
    `| --- | ---: | ---: |${s.id === "big-message" ? " ---: |" : ""} ---: | ---: | --- |`,
  ];
  for (const [id, r] of Object.entries(s.servers)) {
    const secs = s.id === "big-message" ? ` ${fmt(r.seconds?.median, 2)} |` : "";
    lines.push(`| ${label(result, id)} | ${fmt(r.value?.median, 1)} | ${range(r.value, 1)} |${secs} ${id === "petrel-durable" ? "(Petrel)" : fmtRatio(ratio(petrel, r.value?.median))} | ${quietCell(r.quiet)} | ${errorsCell(r.errors)} |`);
  }
  return [...lines, ""];
}

/** "97% (min 91%)", with a warning when runs were taken on a busy machine. */
function quietCell(q: QuietRecord | undefined): string {
  if (!q || q.idle.length === 0) return "–";
  const pct = (v: number) => `${(v * 100).toFixed(0)}%`;
  const med = summarize(q.idle);
  return `${pct(med!.median)} (min ${pct(med!.min)})${q.busy > 0 ? ` ⚠ ${q.busy} busy` : ""}`;
}

function errorsCell(errors: readonly string[]): string {
  return errors.slice(0, 2).join("; ").replaceAll("|", "/").slice(0, 160);
}

/** Over every measured run: how quiet the machine was, and how many runs were taken while it was busy. */
function quietSummary(result: BenchResult): string {
  const all: number[] = [];
  const loads: number[] = [];
  let busy = 0;
  let runs = 0;
  for (const s of result.scenarios) {
    for (const r of Object.values(s.servers)) {
      if (!r.quiet) continue;
      all.push(...r.quiet.idle);
      loads.push(...r.quiet.load1);
      busy += r.quiet.busy;
      runs += r.quiet.idle.length;
    }
  }
  if (runs === 0) return "";
  const idle = summarize(all)!;
  const load = summarize(loads)!;
  const pct = (v: number) => `${(v * 100).toFixed(0)}%`;
  return `Each run waited (bounded) until every server was idle and the machine quiet (≥ ${pct(QUIET_IDLE)} of all CPUs idle over one second). ` +
    `Machine idle before the ${runs} measured runs: median ${pct(idle.median)}, min ${pct(idle.min)}; 1-minute load average median ${load.median.toFixed(2)}, max ${load.max.toFixed(2)}. ` +
    (busy === 0 ? "No run was taken on a busy machine." : `⚠ ${busy} of ${runs} runs were taken while the machine was busy (marked ⚠ below): their figures are not comparable.`);
}

export function renderMarkdown(result: BenchResult): string {
  const m = result.meta;
  const lines = [
    `# Petrel benchmark (${m.mode})`,
    "",
    `Petrel ${m.petrel} · ${m.date} · ${m.runs} runs per figure (min / median / max) · load generator ${m.generator} (latency and memory: Node client) · ` +
      `Node ${m.node} · ${m.cpus} · Linux ${m.kernel} · Postfix ${m.postfix ?? "absent"} · smtp-server ${m.smtpServer ?? "absent"} · ` +
      `${m.pinned ? `server pinned to CPU ${m.pinned.server}, load generator to CPU ${m.pinned.load}` : "no CPU pinning"}` +
      `${m.pinned && result.servers.some((s) => s.id.startsWith("workers-")) ? ` (the workers-… servers are not pinned: they may use every CPU, the load generator's included)` : ""} · took ${m.durationSeconds} s`,
    "",
    quietSummary(result),
    "",
    "## Ratios",
    "",
    "Petrel's median divided by the peer's median, both measured in this invocation. ↑: higher is better for Petrel (throughput); ↓: lower is better for Petrel (latency, memory).",
    "",
    ...headline(result),
    "",
  ];
  const skipped = result.servers.filter((s) => s.unavailable);
  if (skipped.length) {
    lines.push("Not measured: " + skipped.map((s) => `${s.id} (${s.unavailable})`).join("; ") + ".", "");
  }
  lines.push("## Scenarios", "");
  for (const s of result.scenarios) {
    if (s.unit === "msg/s") lines.push(...throughputTable(result, s));
    else if (s.unit === "ms") lines.push(...latencyTable(result, s));
    else lines.push(...memoryTable(result, s));
  }
  lines.push("## Servers", "", "| id | what | address |", "| --- | --- | --- |");
  for (const s of result.servers) lines.push(`| ${s.id} | ${s.label} | ${s.address} |`);
  lines.push("");
  return lines.join("\n");
}
