// Local users' mailboxes, as Mailpit shows them: the messages of a folder,
// one message's text, its HTML in a frame sandboxed without scripts and
// served with remote content blocked, its headers, its raw source, and its
// attachments as downloads.

import { api, ApiError, download, get, getText } from "./api.js";
import { coalesce, facts, fmtSize, fmtTime, h, notice, pager, replace, table } from "./dom.js";

let folder = "INBOX";

/** Messages per page of a mailbox. */
const PAGE = 50;

const enc = encodeURIComponent;
const base = (address) => `/api/mailboxes/${enc(address)}`;

export function mailboxesView() {
  const list = h("div", {});
  const el = h("section", {}, h("h1", {}, "Mailboxes"), list);
  return {
    el,
    async load() {
      const { users } = await get("/api/users");
      replace(list, users.length === 0 ? h("p", { class: "muted" }, "No local user yet: add one under Accounts.") :
        h("ul", { class: "plain users" }, users.map((u) => h("li", {}, h("a", { href: `#/mail/${enc(u.address)}` }, u.address)))));
    },
  };
}

export function mailboxView(address) {
  let offset = 0;
  const folders = h("select", { name: "folder", onchange: () => {
    folder = folders.value;
    offset = 0;
    void load();
  } });
  const list = h("div", {});
  const el = h("section", {}, h("h1", {}, address), h("p", {}, h("a", { href: "#/mail" }, "← mailboxes"), " ", folders), list);
  const reload = coalesce(() => load(), 300);

  async function load() {
    const f = await get(`${base(address)}/folders`);
    if (!f.folders.includes(folder)) folder = "INBOX";
    replace(folders, f.folders.map((name) => h("option", { value: name, selected: name === folder }, name)));
    const page = await get(`${base(address)}/messages?folder=${enc(folder)}&offset=${offset}&limit=${PAGE}`);
    const go = (to) => {
      offset = to;
      void load();
    };
    replace(list, page.total === 0 ? h("p", { class: "muted" }, "No message in this folder.") : [
      pager(page.total, offset, PAGE, go),
      table(["Received", "From", "Subject", "Size"], page.messages.map((m) => h("tr", { class: m.new ? "unread" : "" },
        h("td", {}, fmtTime(Date.parse(m.received))),
        h("td", {}, m.from),
        h("td", {}, h("a", { href: `#/mail/${enc(address)}/${enc(m.id)}`, class: "subject" }, m.subject || "(no subject)")),
        h("td", { class: "num" }, fmtSize(m.size)))), { id: "mail-list" }),
    ]);
  }

  return {
    el, load,
    onEvent(e) {
      if (e.type !== "delivery" || e.status !== "delivered" || e.recipient?.toLowerCase() !== address.toLowerCase()) return;
      reload.poke();
    },
    close() {
      reload.cancel();
    },
  };
}

export function mailMessageView(address, id) {
  const out = h("div", {});
  const el = h("section", {}, h("p", {}, h("a", { href: `#/mail/${enc(address)}` }, `← ${address}`)), out);
  const path = `${base(address)}/messages/${enc(id)}`;
  const q = `?folder=${enc(folder)}`;

  async function load() {
    const m = await get(path + q);
    const panes = {};
    const tabs = h("div", { class: "tabs", role: "tablist" });
    const pane = h("div", { class: "pane" });
    const show = async (name) => {
      for (const b of tabs.children) b.setAttribute("aria-selected", String(b.dataset.tab === name));
      replace(pane, await panes[name]());
    };
    if (m.html !== null) {
      panes.HTML = async () => {
        const link = await api("POST", `${path}/html-view${q}`);
        // No allow-scripts, no allow-same-origin: the message runs nothing and reaches nothing of the dashboard.
        return h("iframe", { class: "message-html", sandbox: "", referrerpolicy: "no-referrer", src: link.url, title: "The message's HTML" });
      };
    }
    panes.Text = async () => h("pre", { class: "message-text wrap" }, m.text ?? "(no text part)");
    panes.Headers = async () => table(["Name", "Value"], m.headers.map((x) => h("tr", {}, h("td", {}, x.name), h("td", { class: "wrap" }, x.value))));
    panes.Raw = async () => h("pre", { class: "message-raw wrap" }, await getText(`${path}/raw${q}`));
    for (const name of Object.keys(panes)) tabs.append(h("button", { type: "button", role: "tab", "data-tab": name, onclick: () => void show(name).catch((err) => replace(pane, notice("error", String(err.message ?? err)))) }, name));

    replace(out,
      h("h1", { class: "subject" }, m.subject || "(no subject)"),
      h("div", { class: "card" }, facts([["From", m.from], ["To", m.to], ["Date", m.date ?? ""], ["Received", fmtTime(Date.parse(m.received))], ["Size", fmtSize(m.size)]])),
      m.attachments.length === 0 ? null : h("div", { class: "attachments" }, h("h2", {}, "Attachments"), h("ul", { class: "plain" }, m.attachments.map((a) => h("li", {},
        h("button", { type: "button", class: "link", onclick: () => void download(`${path}/attachments/${a.index}${q}`, a.filename ?? `attachment-${a.index}`) }, a.filename ?? `attachment ${a.index}`),
        ` ${a.mimeType}, ${fmtSize(a.size)}`)))),
      h("div", { class: "actions" },
        h("button", { type: "button", onclick: () => void download(`${path}/raw${q}`, `${id}.eml`) }, "Download .eml"),
        h("button", { type: "button", class: "danger", onclick: async () => {
          if (!confirm("Delete this message from the mailbox?")) return;
          try {
            await api("DELETE", path + q);
            location.hash = `#/mail/${enc(address)}`;
          } catch (err) {
            out.prepend(notice("error", err instanceof ApiError ? err.message : String(err)));
          }
        } }, "Delete")),
      tabs, pane);
    await show(m.html !== null ? "HTML" : "Text");
  }

  return { el, load };
}
