// Accounts: local domains, users (add, set a password — the server's
// password policy answers a weak one —, administrator flag, remove) and
// aliases. Every change is the API's, the same services `petrel user`,
// `petrel domain` and `petrel alias` use.

import { api, ApiError, get } from "./api.js";
import { h, notice, replace, table } from "./dom.js";

const enc = encodeURIComponent;

export function accountsView() {
  const messages = h("div", { id: "account-messages" });
  const domains = h("div", {});
  const users = h("div", {});
  const aliases = h("div", {});
  const el = h("section", {}, h("h1", {}, "Accounts"), messages,
    h("h2", {}, "Users"), users, h("h2", {}, "Aliases"), aliases, h("h2", {}, "Domains"), domains);

  /** Run a change; say what happened (the API's own words when refused) and show the lists again. */
  const change = async (what, f) => {
    try {
      await f();
      replace(messages, notice("ok", what));
      await load();
      return true;
    } catch (err) {
      replace(messages, notice("error", err instanceof ApiError ? err.message : String(err)));
      return false;
    }
  };

  function userForm() {
    const address = h("input", { name: "address", type: "email", placeholder: "user@example.org", required: true, autocomplete: "off" });
    const password = h("input", { name: "password", type: "password", placeholder: "password", required: true, autocomplete: "new-password" });
    const admin = h("input", { name: "admin", type: "checkbox" });
    return h("form", { class: "inline", id: "add-user", onsubmit: async (e) => {
      e.preventDefault();
      if (await change(`${address.value} added`, () => api("POST", "/api/users", { address: address.value, password: password.value, admin: admin.checked }))) {
        address.value = "";
        password.value = "";
      }
    } }, address, password, h("label", { class: "check" }, admin, "administrator"), h("button", { type: "submit" }, "Add user"));
  }

  function passwordForm(address) {
    const password = h("input", { name: "password", type: "password", placeholder: "new password", required: true, autocomplete: "new-password" });
    return h("form", { class: "inline password", onsubmit: async (e) => {
      e.preventDefault();
      if (await change(`password of ${address} changed`, () => api("PUT", `/api/users/${enc(address)}/password`, { password: password.value }))) password.value = "";
    } }, password, h("button", { type: "submit" }, "Set password"));
  }

  async function load() {
    const [d, u, a] = await Promise.all([get("/api/domains"), get("/api/users"), get("/api/aliases")]);
    replace(users, userForm(), table(["Address", "Administrator", "Password", ""], u.users.map((x) => h("tr", { "data-user": x.address },
      h("td", {}, x.address, x.source === "config" ? h("div", { class: "muted small" }, "from the configuration file") : null),
      h("td", {}, x.source === "config" ? (x.admin ? "yes" : "no") : h("button", { type: "button", class: "link", onclick: () => void change(`${x.address} ${x.admin ? "is no longer" : "is now"} an administrator`, () => api("PUT", `/api/users/${enc(x.address)}/admin`, { admin: !x.admin })) }, x.admin ? "yes (revoke)" : "no (grant)")),
      h("td", {}, x.source === "config" ? "" : passwordForm(x.address)),
      h("td", {}, x.source === "config" ? "" : h("button", { type: "button", class: "danger", onclick: () => {
        if (confirm(`Remove ${x.address}? Its Maildir stays on disk.`)) void change(`${x.address} removed`, () => api("DELETE", `/api/users/${enc(x.address)}`));
      } }, "Remove")))), { id: "users" }));

    const source = h("input", { name: "source", placeholder: "team@example.org or @example.org", required: true });
    const targets = h("input", { name: "targets", placeholder: "a@example.org, b@example.net", required: true });
    replace(aliases, h("form", { class: "inline", onsubmit: (e) => {
      e.preventDefault();
      void change(`alias ${source.value} saved`, () => api("POST", "/api/aliases", { source: source.value, targets: targets.value.split(/[\s,]+/).filter(Boolean) }));
    } }, source, targets, h("button", { type: "submit" }, "Add alias")),
    table(["Alias", "Targets", ""], a.aliases.map((x) => h("tr", {}, h("td", {}, x.source), h("td", {}, x.targets.join(", ")),
      h("td", {}, h("button", { type: "button", class: "danger", onclick: () => void change(`alias ${x.source} removed`, () => api("DELETE", `/api/aliases/${enc(x.source)}`)) }, "Remove"))))));

    const domain = h("input", { name: "domain", placeholder: "example.org", required: true });
    replace(domains, h("form", { class: "inline", onsubmit: (e) => {
      e.preventDefault();
      void change(`${domain.value} is local`, () => api("POST", "/api/domains", { domain: domain.value }));
    } }, domain, h("button", { type: "submit" }, "Add domain")),
    table(["Domain", ""], d.domains.map((x) => h("tr", {}, h("td", {}, x.domain, x.source === "config" ? h("span", { class: "muted small" }, " (configuration file)") : null),
      h("td", {}, x.source === "config" ? "" : h("button", { type: "button", class: "danger", onclick: () => {
        if (confirm(`Remove ${x.domain}?`)) void change(`${x.domain} removed`, () => api("DELETE", `/api/domains/${enc(x.domain)}`));
      } }, "Remove"))))));
  }

  return { el, load };
}
