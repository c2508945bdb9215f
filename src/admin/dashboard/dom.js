// Building the page from data: elements made one by one, text always set
// as text (never parsed as HTML), so nothing a message or a client sent
// can become markup in the dashboard.

const SVG_NS = "http://www.w3.org/2000/svg";

function fill(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.setAttribute("class", v);
    else if (k === "text") el.textContent = String(v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** An HTML element: h("a", { href: "#/" }, "text", child…). */
export function h(tag, attrs, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

/** An SVG element. */
export function s(tag, attrs, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function replace(el, ...children) {
  el.replaceChildren();
  return fill(el, {}, children);
}

export function fmtTime(ms) {
  if (ms === null || ms === undefined) return "";
  const d = new Date(ms);
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

/** "3m", "2h 5m", "4d 1h", as qshape's buckets read. */
export function fmtAge(ms) {
  if (ms === null || ms === undefined) return "—";
  const m = Math.max(0, Math.floor(ms / 60000));
  if (m < 60) return m < 1 ? `${Math.max(0, Math.floor(ms / 1000))}s` : `${m}m`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${hours}h ${m % 60}m`;
  return `${Math.floor(hours / 24)}d ${hours % 24}h`;
}

export function fmtSize(n) {
  if (n === undefined || n === null) return "";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** A message shown at the top of a view: "error" or "ok". */
export function notice(kind, text) {
  return h("p", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
}

/** A labelled value list: [["From", "a@b"], …]. */
export function facts(rows) {
  return h("dl", { class: "facts" }, rows.filter((r) => r[1] !== undefined && r[1] !== null && r[1] !== "").map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

export function table(headers, rows, attrs = {}) {
  // Each cell knows its column's name: on a phone the rows are stacked, each value under its label.
  for (const row of rows) [...row.children].forEach((cell, i) => cell.setAttribute("data-label", headers[i] ?? ""));
  return h("div", { class: "scroll" },
    h("table", attrs, h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))), h("tbody", {}, rows)));
}

/** A big number with its label (counts at the top of a view). */
export function tile(label, value, id) {
  return h("div", { class: "tile", id: id ? `tile-${id}` : undefined }, h("span", { class: "value" }, String(value)), h("span", { class: "label" }, label));
}

/** `f`, run once `ms` after the first of a burst of pokes (live events): one reload for many events. */
export function coalesce(f, ms) {
  let timer = null;
  return {
    poke() {
      timer ??= setTimeout(() => {
        timer = null;
        Promise.resolve().then(f).catch(() => {});
      }, ms);
    },
    cancel() {
      clearTimeout(timer);
      timer = null;
    },
  };
}

/** Where a paged list is: "51–100 of 340", and buttons to the previous and next pages (`go(offset)`). */
export function pager(total, offset, limit, go) {
  if (total <= limit && offset === 0) return h("p", { class: "muted", "data-range": "" }, `${total} in all`);
  return h("p", { class: "pager" },
    h("button", { type: "button", disabled: offset === 0, onclick: () => go(Math.max(0, offset - limit)) }, "← Previous"),
    h("span", { class: "muted", "data-range": "" }, ` ${offset + 1}–${Math.min(total, offset + limit)} of ${total} `),
    h("button", { type: "button", disabled: offset + limit >= total, onclick: () => go(offset + limit) }, "Next →"));
}
