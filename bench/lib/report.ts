/**
 * The benchmark's result (bench/results/latest.json) and its Markdown view
 * (latest.md): one table per scenario, and a headline table of ratios
 * between Petrel and each peer, medians of runs made in the same invocation.
 */
import { ratio, type Summary } from "./stats.ts";
import type { Generator } from "./load.ts";
import type { ServerKind } from "./servers.ts";

export interface ServerResult {
  readonly throughput?: Summary | null;
  /** Deliver servers: messages / (time from load start until the last one is in the Maildir). */
  readonly delivered?: Summary | null;
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
  { label: "Petrel FileSpool ÷ nodemailer fsync", petrel: "petrel-durable", peer: "nodemailer-fsync" },
  { label: "Petrel FileSpool ÷ Postfix (accepted/s)", petrel: "petrel-durable", peer: "postfix" },
  { label: "Petrel startMta ÷ Postfix (accepted/s)", petrel: "petrel-mta", peer: "postfix" },
  { label: "Petrel startMta ÷ Postfix (delivered/s)", petrel: "petrel-mta", peer: "postfix", delivered: true },
  { label: "Petrel discard ÷ nodemailer discard", petrel: "petrel-discard", peer: "nodemailer-discard" },
  { label: "Petrel discard ÷ smtp-sink", petrel: "petrel-discard", peer: "smtp-sink" },
  { label: "Petrel FileSpool ÷ smtp-sink", petrel: "petrel-durable", peer: "smtp-sink" },
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
    `| server | msg/s median | min – max | same-kind Petrel ÷ this |${hasDelivered ? " delivered/s median | min – max |" : ""} errors |`,
    `| --- | ---: | ---: | ---: |${hasDelivered ? " ---: | ---: |" : ""} --- |`,
  ];
  for (const [id, r] of Object.entries(s.servers)) {
    const kind = result.servers.find((x) => x.id === id)?.kind ?? "durable";
    const petrel = PETREL_FOR[kind];
    const rr = id === petrel ? null : ratio(s.servers[petrel]?.throughput?.median, r.throughput?.median);
    const del = hasDelivered ? ` ${fmt(r.delivered?.median)} | ${range(r.delivered)} |` : "";
    lines.push(`| ${label(result, id)} | ${fmt(r.throughput?.median)} | ${range(r.throughput)} | ${id === petrel ? "(Petrel)" : fmtRatio(rr)} |${del} ${r.errors.length ? r.errors.slice(0, 2).join("; ").replaceAll("|", "/").slice(0, 160) : ""} |`);
  }
  return [...lines, ""];
}

function latencyTable(result: BenchResult, s: ScenarioResult): string[] {
  const lines = [
    `### ${s.title}`,
    "",
    `${s.messages} messages per run over one connection, ${s.size} body octets; time from writing MAIL FROM to reading the final 250 after the body.`,
    "",
    "| server | msg/s median | p50 ms median | p50 min – max | p99 ms median | p99 min – max | errors |",
    "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
  ];
  for (const [id, r] of Object.entries(s.servers)) {
    lines.push(`| ${label(result, id)} | ${fmt(r.throughput?.median)} | ${fmt(r.latencyP50?.median, 2)} | ${range(r.latencyP50, 2)} | ${fmt(r.latencyP99?.median, 2)} | ${range(r.latencyP99, 2)} | ${r.errors.slice(0, 2).join("; ").slice(0, 160)} |`);
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
    `| server | ${s.unit} median | min – max |${s.id === "big-message" ? " seconds median |" : ""} Petrel FileSpool ÷ this | errors |`,
    `| --- | ---: | ---: |${s.id === "big-message" ? " ---: |" : ""} ---: | --- |`,
  ];
  for (const [id, r] of Object.entries(s.servers)) {
    const digits = s.unit === "MiB" ? 1 : 1;
    const secs = s.id === "big-message" ? ` ${fmt(r.seconds?.median, 2)} |` : "";
    lines.push(`| ${label(result, id)} | ${fmt(r.value?.median, digits)} | ${range(r.value, digits)} |${secs} ${id === "petrel-durable" ? "(Petrel)" : fmtRatio(ratio(petrel, r.value?.median))} | ${r.errors.slice(0, 2).join("; ").slice(0, 160)} |`);
  }
  return [...lines, ""];
}

export function renderMarkdown(result: BenchResult): string {
  const m = result.meta;
  const lines = [
    `# Petrel benchmark (${m.mode})`,
    "",
    `Petrel ${m.petrel} · ${m.date} · ${m.runs} runs per figure (min / median / max) · load generator ${m.generator} (latency and memory: Node client) · ` +
      `Node ${m.node} · ${m.cpus} · Linux ${m.kernel} · Postfix ${m.postfix ?? "absent"} · smtp-server ${m.smtpServer ?? "absent"} · ` +
      `${m.pinned ? `server pinned to CPU ${m.pinned.server}, load generator to CPU ${m.pinned.load}` : "no CPU pinning"} · took ${m.durationSeconds} s`,
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
