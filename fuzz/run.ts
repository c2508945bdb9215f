/**
 * The long fuzz run of the SMTP protocol engine: every property of
 * test/fuzz/properties.ts, in batches with fresh seeds, until the time is up.
 *
 *   npm run fuzz -- [--seconds 600] [--jobs 2] [--only name,name] [--batch 200]
 *
 * The properties are shared out among --jobs child processes (one per core);
 * each child divides its time among its properties by weight and reports
 * progress as JSON lines. A child silent for 60 s is killed and reported with
 * the seed of the batch it was in (replay: FUZZ_SEED=<seed> with numRuns =
 * batch). At the end: inputs per property, and each failure with its seed,
 * path and shrunk counterexample. Exit code 1 if anything failed.
 */
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { PROPERTIES } from "../test/fuzz/properties.ts";

/** Share of a child's time; the engine properties are slow per input and deserve most. */
const WEIGHTS: Record<string, number> = {
  "engine-grammar": 6,
  "engine-bytes": 3,
  smuggling: 3,
  "bounded-memory": 1,
  "dot-roundtrip": 1,
  "data-decoder-reference": 1.5,
  "bdat-normalizer": 1,
  "header-section": 1,
  address: 1,
  parameters: 1,
};

interface Failure {
  readonly seed: number;
  readonly path: string | undefined;
  readonly counterexample: string;
  readonly error: string;
}

interface Report {
  readonly type: "progress" | "done";
  readonly property: string;
  readonly runs: number;
  readonly skips: number;
  readonly batchSeed: number;
  readonly failures: Failure[];
  readonly seconds: number;
}

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "600" },
    jobs: { type: "string", default: "2" },
    only: { type: "string" },
    batch: { type: "string", default: "200" },
    worker: { type: "string" },
  },
  strict: true,
});
const seconds = Number(values.seconds);
const jobs = Math.max(1, Number(values.jobs));
const batch = Math.max(1, Number(values.batch));
if (!Number.isFinite(seconds) || seconds <= 0) throw new Error("--seconds must be a positive number");
const selected = PROPERTIES.filter((p) => !values.only || values.only.split(",").includes(p.name));
if (selected.length === 0) throw new Error(`no property matches --only ${values.only}`);

/** Deal the properties out to `jobs` workers, balancing weights. */
function assign(): string[][] {
  const shares: { names: string[]; weight: number }[] = Array.from({ length: Math.min(jobs, selected.length) }, () => ({ names: [], weight: 0 }));
  const sorted = [...selected].sort((a, b) => (WEIGHTS[b.name] ?? 1) - (WEIGHTS[a.name] ?? 1));
  for (const p of sorted) {
    const lightest = shares.reduce((m, s) => (s.weight < m.weight ? s : m));
    lightest.names.push(p.name);
    lightest.weight += WEIGHTS[p.name] ?? 1;
  }
  return shares.map((s) => s.names);
}

async function worker(names: string[]): Promise<void> {
  const props = names.map((n) => PROPERTIES.find((p) => p.name === n)!);
  const total = props.reduce((sum, p) => sum + (WEIGHTS[p.name] ?? 1), 0);
  const emit = (r: Report): void => {
    process.stdout.write(`${JSON.stringify(r)}\n`);
  };
  for (const p of props) {
    const budget = (seconds * 1000 * (WEIGHTS[p.name] ?? 1)) / total;
    const start = Date.now();
    let runs = 0;
    let skips = 0;
    const failures: Failure[] = [];
    let lastReport = 0;
    let batchSeed = 0;
    while (Date.now() - start < budget && failures.length < 3) {
      batchSeed = (Math.random() * 2 ** 31) | 0;
      const d = await fc.check(p.property(), { numRuns: batch, seed: batchSeed });
      runs += d.numRuns;
      skips += d.numSkips;
      if (d.failed) {
        failures.push({
          seed: d.seed,
          path: d.counterexamplePath ?? undefined,
          counterexample: fc.stringify(d.counterexample).slice(0, 4000),
          error: String(d.errorInstance instanceof Error ? d.errorInstance.message : d.errorInstance).slice(0, 4000),
        });
      }
      if (Date.now() - lastReport > 5000) {
        lastReport = Date.now();
        emit({ type: "progress", property: p.name, runs, skips, batchSeed, failures, seconds: (Date.now() - start) / 1000 });
      }
    }
    emit({ type: "done", property: p.name, runs, skips, batchSeed, failures, seconds: (Date.now() - start) / 1000 });
  }
}

async function parent(): Promise<number> {
  const groups = assign();
  const script = fileURLToPath(import.meta.url);
  const results = new Map<string, Report>();
  const hangs: string[] = [];
  console.log(`fuzzing ${selected.length} properties for ${seconds} s in ${groups.length} process(es), batches of ${batch}`);
  await Promise.all(groups.map((names, i) => new Promise<void>((resolve) => {
    const child = spawn(process.execPath, [script, "--worker", String(i), "--seconds", String(seconds), "--batch", String(batch), "--only", names.join(",")], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let last: Report | null = null;
    let heard = Date.now();
    const watchdog = setInterval(() => {
      if (Date.now() - heard > 60_000) {
        hangs.push(`worker ${i} silent for 60 s in ${last?.property ?? names[0]} (batch seed ${last?.batchSeed ?? "?"}); killed`);
        child.kill("SIGKILL");
      }
    }, 5000);
    createInterface({ input: child.stdout! }).on("line", (line) => {
      heard = Date.now();
      let r: Report;
      try {
        r = JSON.parse(line) as Report;
      } catch {
        console.log(`[worker ${i}] ${line}`);
        return;
      }
      last = r;
      results.set(r.property, r);
      if (r.type === "done") console.log(`  ${r.property}: ${r.runs} inputs in ${r.seconds.toFixed(0)} s, ${r.failures.length} failure(s)`);
    });
    child.on("exit", (code, signal) => {
      clearInterval(watchdog);
      if (code !== 0 && signal !== "SIGKILL") hangs.push(`worker ${i} exited with ${code ?? signal}`);
      resolve();
    });
  })));

  let total = 0;
  let failed = hangs.length > 0;
  console.log("\nproperty                   inputs     skipped  seconds  failures");
  for (const p of selected) {
    const r = results.get(p.name);
    const runs = r?.runs ?? 0;
    total += runs;
    console.log(`${p.name.padEnd(26)} ${String(runs).padStart(9)} ${String(r?.skips ?? 0).padStart(9)} ${(r?.seconds ?? 0).toFixed(0).padStart(8)} ${String(r?.failures.length ?? "?").padStart(9)}${r?.type === "done" ? "" : "  (unfinished)"}`);
  }
  console.log(`${"total".padEnd(26)} ${String(total).padStart(9)}`);
  for (const p of selected) {
    for (const f of results.get(p.name)?.failures ?? []) {
      failed = true;
      console.log(`\nFAILURE ${p.name} seed=${f.seed} path=${f.path}\n  counterexample: ${f.counterexample}\n  ${f.error.replace(/\n/g, "\n  ")}`);
    }
  }
  for (const h of hangs) console.log(`\nHANG ${h}`);
  return failed ? 1 : 0;
}

if (values.worker !== undefined) {
  await worker(selected.map((p) => p.name));
} else {
  process.exitCode = await parent();
}
