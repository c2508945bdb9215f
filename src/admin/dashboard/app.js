// The dashboard's shell: the login, the views by location hash
// (#/queue/ID, #/trace/ID, #/mail/ADDRESS/ID …) and the live event stream
// each view may follow.

import { api, ApiError, get, liveEvents, setToken, token, whenUnauthorized } from "./api.js";
import { h, notice, replace } from "./dom.js";
import { overviewView } from "./overview.js";
import { queueView, queueMessageView } from "./queue.js";
import { traceView } from "./trace.js";
import { mailboxesView, mailboxView, mailMessageView } from "./mail.js";
import { accountsView } from "./accounts.js";

/** Stands for "no token needed" (the API ignores the header when it wants none). */
const NO_AUTH = "none";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
const logout = document.getElementById("logout");
const live = document.getElementById("live");

/** The view shown: it may take live events (onEvent) and clean up (close). */
let current = null;
let stopEvents = null;

const ROUTES = [
  [/^#?\/?$/, () => overviewView()],
  [/^#\/queue$/, () => queueView()],
  [/^#\/queue\/([^/]+)$/, (m) => queueMessageView(m[1])],
  [/^#\/trace(?:\/([^/]+))?$/, (m) => traceView(m[1] ?? "")],
  [/^#\/mail$/, () => mailboxesView()],
  [/^#\/mail\/([^/]+)$/, (m) => mailboxView(decodeURIComponent(m[1]))],
  [/^#\/mail\/([^/]+)\/([^/]+)$/, (m) => mailMessageView(decodeURIComponent(m[1]), decodeURIComponent(m[2]))],
  [/^#\/accounts$/, () => accountsView()],
];

async function route() {
  if (!token()) return showLogin();
  current?.close?.();
  current = null;
  const hash = location.hash || "#/";
  for (const a of nav.querySelectorAll("a")) a.classList.toggle("active", hash === a.getAttribute("href") || (a.getAttribute("href") !== "#/" && hash.startsWith(a.getAttribute("href") + "/")));
  const found = ROUTES.find(([re]) => re.test(hash));
  if (!found) {
    replace(main, notice("error", `No such view: ${hash}`));
    return;
  }
  const view = found[1](found[0].exec(hash));
  current = view;
  replace(main, view.el);
  try {
    await view.load?.();
  } catch (err) {
    view.el.prepend(notice("error", err instanceof ApiError ? err.message : String(err)));
  }
}

function showLogin(message) {
  current?.close?.();
  current = null;
  stopEvents?.();
  stopEvents = null;
  nav.hidden = true;
  logout.hidden = true;
  live.hidden = true;
  who.textContent = "";
  const error = h("div", {});
  const address = h("input", { name: "address", type: "email", autocomplete: "username", required: true, placeholder: "admin@example.org" });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
  const apiToken = h("input", { name: "token", type: "password", autocomplete: "off", placeholder: "contents of admin.token" });
  const form = h("form", { class: "card login", onsubmit: async (e) => {
    e.preventDefault();
    replace(error);
    try {
      if (apiToken.value.trim()) {
        setToken(apiToken.value.trim());
        await get("/api/session");
      } else {
        const r = await api("POST", "/api/login", { address: address.value, password: password.value });
        setToken(r.token);
      }
      await start();
    } catch (err) {
      setToken(null);
      replace(error, notice("error", err instanceof ApiError ? err.message : String(err)));
    }
  } },
  h("h1", {}, "Log in"),
  message ? notice("error", message) : null,
  error,
  h("label", {}, "Administrator address", address),
  h("label", {}, "Password", password),
  h("details", {}, h("summary", {}, "Or use the API token"), h("label", {}, "API token", apiToken)),
  h("button", { type: "submit" }, "Log in"));
  replace(main, form);
}

async function start() {
  const session = await get("/api/session");
  who.textContent = session.kind === "user" ? session.user : "API token";
  nav.hidden = false;
  logout.hidden = false;
  stopEvents?.();
  stopEvents = liveEvents((e) => current?.onEvent?.(e), (up) => {
    live.hidden = false;
    live.classList.toggle("up", up);
    live.textContent = up ? "live" : "reconnecting";
  });
  await route();
}

whenUnauthorized(() => {
  // While logging in, the form shows the refusal itself.
  if (nav.hidden) return;
  setToken(null);
  showLogin("Your session has ended: log in again.");
});

logout.addEventListener("click", async () => {
  try {
    await api("POST", "/api/logout");
  } catch {
    // logged out here either way
  }
  setToken(null);
  showLogin();
});

window.addEventListener("hashchange", () => void (token() ? route() : showLogin()));

/** With `admin.auth: none` (loopback only) the API answers without a token: no login to ask for. */
async function boot() {
  if (!token()) {
    const res = await fetch("/api/session", { cache: "no-store" });
    if (!res.ok) return showLogin();
    setToken(NO_AUTH);
  }
  await start();
}

boot().catch(() => showLogin());
