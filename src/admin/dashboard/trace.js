// One message's whole path by queue id, from the trace store: accepted from
// whom (client, HELO, TLS, AUTH), what the checks found, the
// Authentication-Results, every delivery attempt (remote host and address,
// TLS version, reply, timing), DSNs and administrators' operations.

import { ApiError, get } from "./api.js";
import { coalesce, facts, fmtSize, fmtTime, h, notice, replace, table } from "./dom.js";

function ms(n) {
  if (n === undefined || n === null) return "";
  return n < 1000 ? `${Math.round(n)} ms` : `${(n / 1000).toFixed(n < 10000 ? 2 : 1)} s`;
}

/** Delivery attempts as a table: when, recipient, outcome, transport, remote host, TLS, reply, timing. */
export function attemptRows(events) {
  return table(["When", "Recipient", "Outcome", "Via", "Remote host", "TLS", "Reply", "Took"], events.map((e) => h("tr", { class: `attempt ${e.status ?? e.type}` },
    h("td", {}, fmtTime(e.at)),
    h("td", {}, e.recipient, e.original && e.original !== e.recipient ? h("div", { class: "muted small" }, `for ${e.original}`) : null),
    h("td", {}, h("span", { class: `tag ${e.status ?? e.type}` }, e.type === "expired" ? "expired" : `${e.status}${e.attempt ? ` #${e.attempt}` : ""}`), e.enhanced ? ` ${e.enhanced}` : ""),
    h("td", {}, e.transport ?? "", e.destination ? h("div", { class: "muted small" }, e.destination) : null),
    h("td", { class: "remote" }, e.remoteMta ?? "", e.remoteAddress ? h("div", { class: "muted small" }, e.remoteAddress) : null),
    h("td", { class: "tls" }, e.tls ?? (e.type === "delivery" && e.remoteAddress ? "none" : "")),
    h("td", { class: "reply" }, e.reply ?? "", e.retryAt ? h("div", { class: "muted small" }, `next try ${fmtTime(Date.parse(e.retryAt))}`) : null),
    h("td", { class: "num" }, ms(e.durationMs), e.latencyMs !== undefined ? h("div", { class: "muted small" }, `${ms(e.latencyMs)} since arrival`) : null))), { class: "attempts" });
}

function acceptedCard(e) {
  const c = e.client ?? {};
  return h("div", { class: "card step accepted" }, h("h3", {}, `Accepted ${fmtTime(e.at)}`), facts([
    ["From", e.from || "<>"], ["To", (e.to ?? []).join(", ")], ["Size", fmtSize(e.size)],
    ["Client", e.origin === "local" ? "Petrel itself (a report or DSN)" : `${c.address}${c.helo ? ` (HELO ${c.helo})` : ""} on ${c.role}`],
    ["TLS", c.tls ? `${c.tls}${c.cipher ? ` ${c.cipher}` : ""}` : "none"],
    ["AUTH", c.authUser ?? "none"],
    ["Held", e.held ?? ""], ["Folder", e.folder ?? ""],
  ]),
  e.findings?.length ? [h("h4", {}, "Check verdicts"), table(["Check", "Stage", "Verdict", "Reason"], e.findings.map((f) => h("tr", {},
    h("td", {}, f.check), h("td", {}, f.stage), h("td", {}, h("span", { class: `tag ${f.verdict}` }, f.verdict)), h("td", {}, f.reason ?? ""))))] : h("p", { class: "muted" }, "No check had anything to say."),
  e.authResults ? [h("h4", {}, "Authentication-Results"), h("pre", { class: "wrap" }, e.authResults)] : null);
}

function otherStep(e) {
  const when = h("time", {}, fmtTime(e.at));
  switch (e.type) {
    case "queued": return h("li", { class: "step" }, when, " queued for ", e.recipients.map((r) => `${r.address}${r.address !== r.original ? ` (for ${r.original})` : ""}${r.status !== "queued" ? ` [${r.status}]` : ""}`).join(", "));
    case "rejected": return h("li", { class: "step rejected" }, when, ` refused at ${e.stage} by ${e.check}: ${e.reason ?? ""} — ${e.reply}`);
    case "dsn": return h("li", { class: "step" }, when, ` delivery status notification (${e.action}) for ${e.recipients.join(", ")}: `, h("a", { href: `#/trace/${e.dsnId}` }, e.dsnId));
    case "admin": return h("li", { class: "step" }, when, ` ${e.action} by ${e.by ?? "an administrator"}`);
    case "removed": return h("li", { class: "step removed" }, when, " every recipient is final: left the queue");
    default: return h("li", { class: "step" }, when, ` ${e.type}`);
  }
}

export function traceView(id) {
  const input = h("input", { name: "id", placeholder: "queue id", value: id, autocomplete: "off" });
  const out = h("div", {});
  const el = h("section", {}, h("h1", {}, "Message trace"),
    h("form", { class: "filters", onsubmit: (e) => {
      e.preventDefault();
      if (input.value.trim()) location.hash = `#/trace/${input.value.trim()}`;
    } }, input, h("button", { type: "submit" }, "Trace")), out);
  const reload = coalesce(() => load(), 300);

  async function load() {
    if (!id) {
      replace(out, h("p", { class: "muted" }, "Give a queue id (from the queue, the activity feed or the 250 reply), or pick one of the latest:"));
      const { events } = await get("/api/activity?types=accepted&limit=20");
      out.append(h("ul", { class: "plain" }, events.map((e) => h("li", {}, h("a", { href: `#/trace/${e.queueId}`, class: "qid" }, e.queueId), ` ${fmtTime(e.at)} from ${e.from || "<>"} to ${e.to.join(", ")}`))));
      return;
    }
    let t;
    try {
      t = await get(`/api/trace/${encodeURIComponent(id)}`);
    } catch (err) {
      replace(out, notice("error", err instanceof ApiError ? err.message : String(err)));
      return;
    }
    const accepted = t.events.filter((e) => e.type === "accepted");
    const attempts = t.events.filter((e) => e.type === "delivery" || e.type === "expired");
    const other = t.events.filter((e) => e.type !== "accepted" && e.type !== "delivery" && e.type !== "expired");
    replace(out,
      h("p", {}, `Arrived ${fmtTime(t.arrival)}; `, t.inQueue ? h("a", { href: `#/queue/${id}` }, "still in the queue") : "no longer in the queue", "."),
      accepted.map(acceptedCard),
      h("h2", {}, "Delivery attempts"),
      attempts.length === 0 ? h("p", { class: "muted" }, "None yet.") : attemptRows(attempts),
      h("h2", {}, "Timeline"),
      h("ol", { class: "timeline" }, other.map(otherStep)));
  }

  return {
    el, load,
    onEvent(e) {
      if (!id || (e.queueId !== id)) return;
      reload.poke();
    },
    close() {
      reload.cancel();
    },
  };
}
