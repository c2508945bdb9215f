/**
 * `petrel status`: what the running server says about itself — version,
 * process, uptime, where it listens, what waits in its queue, and when its
 * certificates expire. Built from the live objects by the server (over the
 * control socket) and printed by the CLI; both pure functions here.
 */
import { formatAge, type QueueTotals, type SummaryRow } from "../queue/queue-report.ts";
import type { CertificateInfo } from "../server/tls-certificate-pair.ts";
import type { ListenerRole } from "../mail/envelope.ts";
import { altNames } from "../server/tls-certificates.ts";
import { hostPort } from "../server/listener-sockets.ts";
import type { ClusterNode } from "../cluster/node-registry.ts";
import type { WorkerStatus } from "../workers/worker-pool.ts";

export interface ServerStatus {
  readonly version: string;
  readonly pid: number;
  readonly hostname: string;
  readonly dataDir: string;
  /** ISO 8601. */
  readonly startedAt: string;
  readonly uptimeSeconds: number;
  readonly listeners: readonly { readonly role: ListenerRole; readonly address: string; readonly port: number }[];
  readonly queue: QueueStatus;
  /** `names`: the DNS names and IP addresses of the subjectAltName. */
  readonly certificates: readonly { readonly subject: string; readonly names: readonly string[]; readonly file: string; readonly validTo: string; readonly daysLeft: number }[];
  /** With `storage.kind: postgres`: this node's name and every node of the cluster with its health; null for a single node. */
  readonly cluster: ClusterStatus | null;
  /** The SMTP worker processes; absent when the sessions are served in this process (`workers: 1`). */
  readonly workers?: readonly WorkerStatus[];
}

export interface ClusterStatus {
  readonly node: string;
  readonly nodes: readonly ClusterNode[];
}

/** The queue's totals (queue-report.ts), with ages instead of instants and the destinations most waited for. */
export interface QueueStatus extends Omit<QueueTotals, "oldestArrival"> {
  /** Age of the oldest message in the queue, null when it is empty. */
  readonly oldestAgeSeconds: number | null;
  /** Destination domains with the most waiting recipients (at most five). */
  readonly topDestinations: readonly { readonly domain: string; readonly recipients: number }[];
}

export interface StatusSources {
  readonly version: string;
  readonly pid: number;
  readonly hostname: string;
  readonly dataDir: string;
  readonly startedAt: number;
  readonly now: number;
  readonly listeners: ServerStatus["listeners"];
  readonly queue: QueueTotals;
  /** Waiting recipients by destination (the queue summary's rows, TOTAL first). */
  readonly destinations: readonly SummaryRow[];
  readonly certificates: readonly CertificateInfo[];
  readonly cluster?: ClusterStatus | null;
  readonly workers?: readonly WorkerStatus[];
}

const DAY_MS = 86_400_000;

export function serverStatus(s: StatusSources): ServerStatus {
  return {
    version: s.version,
    pid: s.pid,
    hostname: s.hostname,
    dataDir: s.dataDir,
    startedAt: new Date(s.startedAt).toISOString(),
    uptimeSeconds: Math.max(0, Math.round((s.now - s.startedAt) / 1000)),
    listeners: s.listeners.map(({ role, address, port }) => ({ role, address, port })),
    queue: queueStatus(s.queue, s.destinations, s.now),
    certificates: s.certificates.map((c) => ({
      subject: c.subject,
      names: altNames(c.subjectAltName),
      file: c.certPath,
      validTo: c.validTo.toISOString(),
      daysLeft: Math.floor((c.validTo.getTime() - s.now) / DAY_MS),
    })),
    cluster: s.cluster ?? null,
    ...(s.workers ? { workers: s.workers.map((w) => ({ ...w })) } : {}),
  };
}

function queueStatus(t: QueueTotals, destinations: readonly SummaryRow[], now: number): QueueStatus {
  return {
    messages: t.messages,
    held: t.held,
    active: t.active,
    activeLimit: t.activeLimit,
    activePeak: t.activePeak,
    waiting: t.waiting,
    oldestAgeSeconds: t.oldestArrival === null ? null : Math.max(0, Math.round((now - t.oldestArrival) / 1000)),
    topDestinations: destinations.slice(1, 6).map((r) => ({ domain: r.domain, recipients: r.total })),
  };
}


export function formatStatus(st: ServerStatus): string {
  const lines = [
    `Petrel ${st.version} is running as ${st.hostname} (pid ${st.pid}), up ${formatAge(st.uptimeSeconds * 1000)} since ${st.startedAt}`,
    `data directory: ${st.dataDir}`,
    "listeners:",
    ...st.listeners.map((l) => `  ${hostPort(l.address, l.port).padEnd(24)} ${l.role}`),
  ];
  if (st.workers) {
    lines.push(`SMTP workers: ${st.workers.length}`);
    for (const w of st.workers) {
      const restarts = w.restarts > 0 ? `, restarted ${w.restarts} time${w.restarts === 1 ? "" : "s"}` : "";
      lines.push(`  worker ${w.index}  ${w.state.padEnd(10)} pid ${w.pid ?? "-"}  ${w.sessions} session${w.sessions === 1 ? "" : "s"} now, ${w.connections} since start${restarts}`);
    }
  }
  const q = st.queue;
  if (q.messages === 0) lines.push("queue: empty");
  else {
    const w = q.waiting;
    lines.push(`queue: ${q.messages} message${q.messages === 1 ? "" : "s"}${q.held > 0 ? ` (${q.held} held)` : ""}, oldest ${formatAge((q.oldestAgeSeconds ?? 0) * 1000)}; recipients waiting: ${w.queued} queued, ${w.delivering} being delivered, ${w.deferred} deferred`);
    if (q.topDestinations.length > 0) lines.push(`  most waiting for: ${q.topDestinations.map((d) => `${d.domain} (${d.recipients})`).join(", ")}`);
    lines.push(`  in memory: ${q.active} of at most ${q.activeLimit} messages (queue.activeLimit; at most ${q.activePeak} since start); the others wait on disk`);
  }
  if (st.certificates.length > 0) {
    lines.push("certificates:");
    for (const c of st.certificates) {
      const left = c.daysLeft < 0 ? "EXPIRED" : `${c.daysLeft} day${c.daysLeft === 1 ? "" : "s"} left`;
      lines.push(`  ${c.names.length > 0 ? c.names.join(", ") : c.subject}: valid until ${c.validTo} (${left}) — ${c.file}`);
    }
  }
  if (st.cluster) {
    const n = st.cluster.nodes;
    lines.push(`cluster: this is node ${st.cluster.node}; ${n.filter((x) => x.health === "healthy").length} of ${n.length} node${n.length === 1 ? "" : "s"} healthy`);
    for (const x of n) {
      const beat = x.stoppedAt !== null ? `stopped ${x.stoppedAt}` : `last heartbeat ${formatAge(x.heartbeatAgeSeconds * 1000)} ago`;
      lines.push(`  ${x.name.padEnd(20)} ${x.health.padEnd(8)} ${x.host} pid ${x.pid}, Petrel ${x.version}, ${beat}${x.self ? " (this node)" : ""}`);
    }
  }
  return lines.join("\n") + "\n";
}
