/**
 * `npm run bench:cluster [-- --messages N] [--sessions S] [--keep]`: 1 → 3 Petrel nodes sharing
 * one PostgreSQL (storage.kind postgres: spool, queue, leases), measured in the same run.
 *
 * Each round starts a fresh private PostgreSQL database and N `petrel serve` processes (each its
 * own listener on 127.0.0.2…, its own dataDir), relaying every message to a loopback SMTP sink
 * that counts what it gets by Message-ID. S client sessions (spread over the nodes round-robin)
 * send M small messages back to back:
 * - accepted/s: M ÷ the time from the first MAIL to the last 250;
 * - delivered/s: M ÷ the time from the first MAIL until the sink has every message.
 * Everything — PostgreSQL, the nodes, the clients, the sink — shares this machine's cores, so on
 * a 2-core box the 3-node figure measures contention, not scale-out (README of bench: honest).
 * Bounded in time: every wait has a limit. Not a test: nothing fails on a slow figure.
 */
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { startPostgres } from "../test/support/postgres.ts";
import { startSmtpSink } from "../test/support/smtp-sink.ts";
import { SmtpClient, pollUntil, servePetrel, stopPetrel, tempDir, writeConfig, type PetrelProcess } from "../test/e2e/fixtures/robust-helpers.ts";

const { values } = parseArgs({
  options: {
    messages: { type: "string", default: "3000" },
    sessions: { type: "string", default: "12" },
    keep: { type: "boolean", default: false },
  },
});
const MESSAGES = Number(values.messages);
const SESSIONS = Number(values.sessions);
const HOSTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];
const PER_CONNECTION = 50;

interface Round {
  readonly nodes: number;
  readonly acceptedPerSecond: number;
  readonly deliveredPerSecond: number;
  readonly refused: number;
}

async function round(nodes: number): Promise<Round> {
  const pg = await startPostgres({ host: "127.0.62.10" });
  const sink = await startSmtpSink("127.0.62.11");
  const work = await tempDir("petrel-bench-cluster-");
  const running: PetrelProcess[] = [];
  try {
    for (let i = 0; i < nodes; i++) {
      const config = await writeConfig(work.dir, {
        hostname: `mx${i}.bench.test`,
        dataDir: join(work.dir, `node${i}`),
        domains: ["bench.test"],
        listeners: [{ address: HOSTS[i], port: 0, role: "mx" }],
        transport: [{ domains: ["bench.test"], type: "smtp", host: sink.host, port: sink.port, tls: "none" }],
        storage: { kind: "postgres", url: pg.url, poolSize: 10, node: `bench${i}` },
        log: { level: "info" },
      }, `node${i}.yaml`);
      running.push(await servePetrel(config, 1, 60_000));
    }
    const ids: string[] = [];
    let next = 0;
    let refused = 0;
    const started = performance.now();
    let lastAck = started;
    /** One client: connections of at most PER_CONNECTION messages (the server's per-connection limit), back to back. */
    const session = async (s: number): Promise<void> => {
      const n = s % nodes;
      while (next < MESSAGES) {
        const c = await SmtpClient.connect(running[n].port("mx"), { host: HOSTS[n] });
        try {
          await c.ehlo(`client${s}.bench.test`);
          for (let m = 0; m < PER_CONNECTION; m++) {
            const k = next++;
            if (k >= MESSAGES) break;
            const id = `<bench-${k}@cluster.bench.test>`;
            const body = `From: <s@client.test>\r\nTo: <u@bench.test>\r\nMessage-ID: ${id}\r\nSubject: ${k}\r\n\r\n${"x".repeat(900)}\r\n`;
            const r = await c.send("s@client.test", ["postmaster@bench.test"], Buffer.from(body));
            if (r.code === 250) {
              ids.push(id);
              lastAck = performance.now();
            } else refused++;
          }
          await c.quit();
        } finally {
          c.close();
        }
      }
    };
    await Promise.all(Array.from({ length: SESSIONS }, (_, s) => session(s)));
    await pollUntil(() => (ids.every((id) => sink.received.has(id)) ? true : undefined), 300_000, 50);
    const delivered = performance.now();
    return {
      nodes,
      acceptedPerSecond: ids.length / ((lastAck - started) / 1000),
      deliveredPerSecond: ids.length / ((delivered - started) / 1000),
      refused,
    };
  } finally {
    for (const p of running) await stopPetrel(p, 15_000).catch(() => p.kill("SIGKILL"));
    SmtpClient.closeAll();
    await sink.close();
    await pg.close();
    if (!values.keep) await work.cleanup();
  }
}

const results: Round[] = [];
for (const n of [1, 3]) {
  results.push(await round(n));
  console.error(`${n} node(s) done`);
}
const base = results[0];
console.log(`\n${MESSAGES} messages of ~1 KiB, ${SESSIONS} sessions; ${cpus().length} cores, load average ${loadavg().map((l) => l.toFixed(2)).join(" ")}\n`);
console.log("| nodes | accepted/s | delivered/s | vs 1 node (delivered) | refused |");
console.log("| ---: | ---: | ---: | ---: | ---: |");
for (const r of results) {
  console.log(`| ${r.nodes} | ${r.acceptedPerSecond.toFixed(0)} | ${r.deliveredPerSecond.toFixed(0)} | ${(r.deliveredPerSecond / base.deliveredPerSecond).toFixed(2)} | ${r.refused} |`);
}
