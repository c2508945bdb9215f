/**
 * Summarise a V8 .cpuprofile (from `node --cpu-prof`): self time per
 * function, largest first. Usable alone: node bench/lib/profile.ts FILE [TOP]
 */
import { readFileSync } from "node:fs";
import { relative } from "node:path";

interface CallFrame { functionName: string; url: string; lineNumber: number; columnNumber: number }
interface ProfileNode { id: number; callFrame: CallFrame; hitCount?: number; children?: number[] }
interface CpuProfile { nodes: ProfileNode[]; startTime: number; endTime: number; samples?: number[]; timeDeltas?: number[] }

export interface ProfileRow {
  readonly fn: string;
  readonly where: string;
  readonly selfMs: number;
  readonly selfPercent: number;
}

export function summarizeProfile(file: string, top = 25, root = process.cwd()): { totalMs: number; idleMs: number; rows: ProfileRow[] } {
  const p = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  if (p.samples && p.timeDeltas) {
    // time attributed to a sample is the delta to the next sample
    for (let i = 0; i < p.samples.length; i++) {
      const dt = p.timeDeltas[i + 1] ?? 0;
      selfUs.set(p.samples[i], (selfUs.get(p.samples[i]) ?? 0) + Math.max(0, dt));
    }
  } else {
    const interval = (p.endTime - p.startTime) / Math.max(1, p.nodes.reduce((a, n) => a + (n.hitCount ?? 0), 0));
    for (const n of p.nodes) selfUs.set(n.id, (n.hitCount ?? 0) * interval);
  }
  const agg = new Map<string, { fn: string; where: string; us: number }>();
  let total = 0;
  let idle = 0;
  for (const [id, us] of selfUs) {
    const n = byId.get(id);
    if (!n) continue;
    total += us;
    const cf = n.callFrame;
    const fn = cf.functionName || "(anonymous)";
    if (fn === "(idle)") idle += us;
    const url = cf.url.startsWith("file://") ? relative(root, new URL(cf.url).pathname) : cf.url;
    const where = url ? `${url}:${cf.lineNumber + 1}` : "";
    const key = `${fn}|${where}`;
    const e = agg.get(key) ?? { fn, where, us: 0 };
    e.us += us;
    agg.set(key, e);
  }
  const busy = total - idle;
  const rows = [...agg.values()]
    .filter((e) => e.fn !== "(idle)")
    .sort((a, b) => b.us - a.us)
    .slice(0, top)
    .map((e) => ({ fn: e.fn, where: e.where, selfMs: e.us / 1000, selfPercent: busy > 0 ? (100 * e.us) / busy : 0 }));
  return { totalMs: total / 1000, idleMs: idle / 1000, rows };
}

/**
 * Inclusive time per function (its own and everything it called), largest
 * first: where whole steps (a command, the end of data) spend their time.
 * A function on the stack twice (recursion) is counted once per sample.
 */
export function inclusiveProfile(file: string, top = 25, root = process.cwd()): { totalMs: number; idleMs: number; rows: ProfileRow[] } {
  const p = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const keyOf = (n: ProfileNode): { key: string; fn: string; where: string } => {
    const cf = n.callFrame;
    const fn = cf.functionName || "(anonymous)";
    const url = cf.url.startsWith("file://") ? relative(root, new URL(cf.url).pathname) : cf.url;
    const where = url ? `${url}:${cf.lineNumber + 1}` : "";
    return { key: `${fn}|${where}`, fn, where };
  };
  const agg = new Map<string, { fn: string; where: string; us: number }>();
  let total = 0;
  let idle = 0;
  const samples = p.samples ?? [];
  for (let i = 0; i < samples.length; i++) {
    const dt = Math.max(0, p.timeDeltas?.[i + 1] ?? 0);
    total += dt;
    const leaf = byId.get(samples[i]);
    if (!leaf) continue;
    if (leaf.callFrame.functionName === "(idle)") {
      idle += dt;
      continue;
    }
    const seen = new Set<string>();
    for (let id: number | undefined = leaf.id; id !== undefined; id = parent.get(id)) {
      const k = keyOf(byId.get(id)!);
      if (seen.has(k.key) || k.fn === "(root)") continue;
      seen.add(k.key);
      const e = agg.get(k.key) ?? { fn: k.fn, where: k.where, us: 0 };
      e.us += dt;
      agg.set(k.key, e);
    }
  }
  const busy = total - idle;
  const rows = [...agg.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, top)
    .map((e) => ({ fn: e.fn, where: e.where, selfMs: e.us / 1000, selfPercent: busy > 0 ? (100 * e.us) / busy : 0 }));
  return { totalMs: total / 1000, idleMs: idle / 1000, rows };
}

export function profileMarkdown(title: string, s: ReturnType<typeof summarizeProfile>): string {
  const lines = [
    `## ${title}`,
    "",
    `Sampled ${(s.totalMs / 1000).toFixed(1)} s, of which idle ${(s.idleMs / 1000).toFixed(1)} s; percentages are of the busy (non-idle) time.`,
    "",
    `| ${title.startsWith("Top inclusive") ? "total" : "self"} ms | % busy | function | where |`,
    "| ---: | ---: | --- | --- |",
    ...s.rows.map((r) => `| ${r.selfMs.toFixed(0)} | ${r.selfPercent.toFixed(1)} | \`${r.fn}\` | ${r.where} |`),
    "",
  ];
  return lines.join("\n");
}

if (import.meta.main) {
  const [file, top, mode] = process.argv.slice(2);
  if (!file) {
    process.stderr.write("usage: node bench/lib/profile.ts FILE.cpuprofile [TOP] [inclusive]\n");
    process.exit(64);
  }
  process.stdout.write(mode === "inclusive"
    ? profileMarkdown("Top inclusive time (main thread)", inclusiveProfile(file, Number(top ?? 25)))
    : profileMarkdown("Top self time (main thread)", summarizeProfile(file, Number(top ?? 25))));
}
