// The live queue: counts by state, waiting recipients by destination and
// age (qshape), the messages with filters, and one message with its
// recipients' history, its delivery attempts and retry, hold, release and
// delete.

import { api, ApiError, get } from "./api.js";
import { coalesce, facts, fmtAge, fmtSize, fmtTime, h, notice, pager, replace, table, tile } from "./dom.js";

/** Messages per page of the queue list. */
const PAGE = 50;
import { attemptRows } from "./trace.js";

function bucketLabel(b) {
  return b.maxMinutes === null ? `${fmtAge(b.minMinutes * 60000)}+` : `≤${fmtAge(b.maxMinutes * 60000)}`;
}

export function queueView() {
  const counts = h("div", {});
  const said = h("div", {});
  const shape = h("div", {});
  const list = h("div", {});
  const state = h("select", { name: "state" }, ["", "queued", "delivering", "deferred", "held", "active"].map((v) => h("option", { value: v }, v || "any state")));
  const sender = h("input", { name: "sender", placeholder: "sender contains", type: "search" });
  const recipient = h("input", { name: "recipient", placeholder: "recipient contains", type: "search" });
  const domain = h("input", { name: "domain", placeholder: "destination domain", type: "search" });
  let offset = 0;
  const filter = () => {
    offset = 0;
    void loadList();
  };
  const filters = h("form", { class: "filters", onsubmit: (e) => {
    e.preventDefault();
    filter();
  }, onchange: filter }, state, sender, recipient, domain, h("button", { type: "submit" }, "Filter"));
  const flush = h("button", { type: "button", onclick: async () => {
    const r = await api("POST", "/api/queue/retry");
    replace(said, notice("ok", `${r.scheduled} recipient(s) due now${r.held.length ? `; ${r.held.length} message(s) on hold left alone` : ""}`));
    await load();
  } }, "Retry all now");
  const el = h("section", {}, h("h1", {}, "Queue"), counts, h("div", { class: "actions" }, flush), said, h("h2", {}, "By destination and age"), shape, h("h2", {}, "Messages"), filters, list);
  async function loadSummary() {
    const q = await get("/api/queue/summary");
    replace(counts, h("div", { class: "tiles" },
      tile("Messages", q.messages, "messages"), tile("Queued", q.recipients.queued), tile("Delivering", q.recipients.delivering),
      tile("Deferred", q.recipients.deferred, "deferred"), tile("Held", q.held), tile("Oldest", q.oldestArrival === null ? "—" : fmtAge(Date.now() - q.oldestArrival), "oldest")));
    replace(shape, q.rows.length <= 1 && q.rows[0]?.total === 0 ? h("p", { class: "muted" }, "No recipient is waiting.") : table(
      ["Domain", "Total", ...q.ageBuckets.map(bucketLabel)],
      q.rows.map((r) => h("tr", { class: r.domain === "TOTAL" ? "total" : "" }, h("td", {}, r.domain), h("td", { class: "num" }, r.total), r.buckets.map((n) => h("td", { class: n ? "num" : "num zero" }, n)))),
      { class: "qshape" }));
  }

  async function loadList() {
    const p = new URLSearchParams({ offset: String(offset), limit: String(PAGE) });
    for (const [k, input] of [["state", state], ["sender", sender], ["recipient", recipient], ["domain", domain]]) if (input.value.trim()) p.set(k, input.value.trim());
    const r = await get(`/api/queue?${p}`);
    replace(list, r.total === 0 ? h("p", { class: "muted", id: "queue-empty" }, "No message matches.") : [
      pager(r.total, offset, PAGE, (to) => {
        offset = to;
        void loadList();
      }),
      table(["Queue id", "Age", "Sender", "Recipients", "Size"], r.messages.map((m) => h("tr", { class: m.held ? "held" : "" },
        h("td", {}, h("a", { href: `#/queue/${m.id}`, class: "qid" }, m.id), m.held ? h("span", { class: "tag held" }, "held") : null),
        h("td", {}, fmtAge(Date.now() - m.arrival)),
        h("td", {}, m.sender || "<>"),
        h("td", {}, m.recipients.map((x) => h("div", {}, h("span", { class: `tag ${x.status}` }, x.status), " ", x.address, x.lastError ? h("div", { class: "muted small" }, x.lastError) : null))),
        h("td", { class: "num" }, fmtSize(m.size)))), { id: "queue-list" }),
    ]);
  }

  async function load() {
    await Promise.all([loadSummary(), loadList()]);
  }
  const reload = coalesce(load, 500);

  return {
    el, load,
    onEvent(e) {
      if (!["queued", "delivery", "removed", "admin", "expired"].includes(e.type)) return;
      reload.poke();
    },
    close() {
      reload.cancel();
    },
  };
}

export function queueMessageView(id) {
  const messages = h("div", {});
  const body = h("div", {});
  const el = h("section", {}, h("h1", {}, "Message ", h("span", { class: "qid" }, id)), messages, body);
  const reload = coalesce(() => load(), 300);

  const act = (label, method, path, after) => h("button", { type: "button", class: label === "Delete" ? "danger" : "", onclick: async () => {
    if (label === "Delete" && !confirm(`Delete ${id} without a bounce?`)) return;
    try {
      await api(method, path);
      replace(messages, notice("ok", `${label}: done`));
      await after();
    } catch (err) {
      replace(messages, notice("error", err instanceof ApiError ? err.message : String(err)));
    }
  } }, label);

  async function load() {
    let d;
    try {
      d = await get(`/api/queue/${id}`);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        replace(body, notice("ok", "This message is no longer in the queue."), h("p", {}, h("a", { href: `#/trace/${id}` }, "See its trace")));
        return;
      }
      throw err;
    }
    const m = d.message;
    const e = d.envelope;
    const back = () => (location.hash = "#/queue");
    replace(body,
      h("div", { class: "actions" },
        act("Retry now", "POST", `/api/queue/${id}/retry`, load),
        m.held ? act("Release", "POST", `/api/queue/${id}/release`, load) : act("Hold", "POST", `/api/queue/${id}/hold`, load),
        act("Delete", "DELETE", `/api/queue/${id}`, back),
        h("a", { href: `#/trace/${id}`, class: "button" }, "Trace")),
      h("div", { class: "card" }, facts([
        ["Sender", e.mailFrom || "<>"], ["Arrived", fmtTime(m.arrival)], ["Size", fmtSize(m.size)],
        ["Client", `${e.client.address} (HELO ${e.client.helo}, ${e.client.protocol}, ${e.client.role})`],
        ["TLS", e.client.tls ? `${e.client.tls.version} ${e.client.tls.cipher}` : "none"], ["AUTH", e.client.authUser ?? "none"],
        ["On hold", m.held ? (m.heldReason ?? "yes") : "no"], ["REQUIRETLS", e.requireTls ? "yes" : ""],
      ])),
      h("h2", {}, "Recipients"),
      table(["Recipient", "State", "Attempts", "Next attempt", "Last error"], m.recipients.map((r) => h("tr", {},
        h("td", {}, r.address, r.original !== r.address ? h("div", { class: "muted small" }, `for ${r.original}`) : null),
        h("td", {}, h("span", { class: `tag ${r.status}` }, r.status)),
        h("td", { class: "num" }, r.attempts),
        h("td", {}, r.status === "deferred" || r.status === "queued" ? fmtTime(r.nextAttempt) : ""),
        h("td", {}, r.lastError ?? "")))),
      h("h2", {}, "Delivery attempts"),
      d.attempts.length === 0 ? h("p", { class: "muted" }, "None yet.") : attemptRows(d.attempts));
  }

  return {
    el, load,
    onEvent(e) {
      if (e.queueId !== id) return;
      reload.poke();
    },
    close() {
      reload.cancel();
    },
  };
}
