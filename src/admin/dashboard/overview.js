// The first view: the server's state, charts of the last hour, and the
// activity feed, kept current by the live events.

import { get } from "./api.js";
import { coalesce, facts, fmtAge, fmtTime, h, replace, tile } from "./dom.js";
import { line, stackedBars } from "./charts.js";

/** One line of the activity feed for an event. */
export function describe(e) {
  const id = e.queueId ? h("a", { href: `#/trace/${e.queueId}`, class: "qid" }, e.queueId) : null;
  switch (e.type) {
    case "accepted": return [id, ` accepted from ${e.from || "<>"} (${e.client?.address ?? e.origin}) for ${(e.to ?? []).join(", ")}`];
    case "rejected": return [`refused ${e.client ?? ""} at ${e.stage} by ${e.check}: ${e.reason}`];
    case "delivery": return [id, ` ${e.status} to ${e.recipient} via ${e.transport}${e.remoteMta ? ` (${e.remoteMta})` : ""}: ${e.reply ?? ""}`];
    case "expired": return [id, ` expired for ${e.recipient}`];
    case "dsn": return [id, ` DSN ${e.action} sent`];
    case "admin": return [id, ` ${e.action} by ${e.by}`];
    default: return [id, ` ${e.type}`];
  }
}

export function feedItem(e) {
  return h("li", { class: `event ${e.type} ${e.status ?? ""}` }, h("time", {}, fmtTime(e.at).slice(11)), " ", h("span", { class: "tag" }, e.status ?? e.type), " ", describe(e));
}

/** The nodes sharing the database, with their health by heartbeat age (storage.kind postgres). */
function clusterCard(cluster) {
  return h("div", { class: "card cluster" },
    h("h2", {}, "Cluster"),
    h("ul", { class: "nodes" }, cluster.nodes.map((n) => h("li", { class: `node ${n.health}` },
      h("span", { class: "tag" }, n.health), " ", h("strong", {}, n.name), n.self ? " (this node)" : "",
      ` — ${n.host}, pid ${n.pid}, Petrel ${n.version}, `,
      n.stoppedAt ? `stopped ${fmtTime(Date.parse(n.stoppedAt))}` : `last heartbeat ${fmtAge(n.heartbeatAgeSeconds * 1000)} ago`))));
}

export function overviewView() {
  const status = h("div", {});
  const charts = h("div", { class: "charts" });
  const feed = h("ol", { class: "feed", id: "feed" });
  const el = h("section", {}, h("h1", {}, "Overview"), status, h("h2", {}, "The last hour"), charts, h("h2", {}, "Activity"), feed);

  async function loadCharts() {
    const { minutes } = await get("/api/activity/series?minutes=60");
    replace(charts,
      stackedBars("Throughput (messages per minute)", minutes, [["accepted", "accepted"], ["delivered", "delivered"]]),
      stackedBars("Outcomes", minutes, [["delivered", "delivered"], ["deferred", "deferred"], ["bounced", "bounced"], ["rejected", "rejected"]]),
      line("Queue depth", minutes, "queue", "messages queued"));
  }

  // Counts and charts follow at most once a second.
  const refresh = coalesce(() => Promise.all([loadStatus(), loadCharts()]), 1000);

  async function loadStatus() {
    const st = await get("/api/status");
    const q = st.queue;
    replace(status, h("div", { class: "tiles" },
      tile("In queue", q.messages), tile("Deferred", q.waiting.deferred), tile("Held", q.held), tile("Oldest", fmtAge(q.oldestAgeSeconds === null ? null : q.oldestAgeSeconds * 1000))),
    h("div", { class: "card" }, facts([
      ["Host", st.hostname], ["Version", st.version], ["Up", fmtAge(st.uptimeSeconds * 1000)],
      ["Listeners", st.listeners.map((l) => `${l.role} ${l.address}:${l.port}`).join(", ")],
      ["Certificates", st.certificates.map((c) => `${c.names.join(", ")}: ${c.daysLeft} days left`).join("; ") || "none"],
    ])),
    st.cluster ? clusterCard(st.cluster) : null);
  }

  return {
    el,
    async load() {
      await Promise.all([loadStatus(), loadCharts()]);
      const { events } = await get("/api/activity?limit=50");
      replace(feed, events.map(feedItem));
    },
    onEvent(e) {
      if (!["accepted", "rejected", "delivery", "expired", "dsn", "admin"].includes(e.type)) return;
      feed.prepend(feedItem(e));
      while (feed.children.length > 200) feed.lastChild.remove();
      refresh.poke();
    },
    close() {
      refresh.cancel();
    },
  };
}
