// The admin API from the browser: the session token (from the login, or the
// API token pasted) kept in sessionStorage for this tab and sent as
// `Authorization: Bearer` — never a cookie, so no other site's page can make
// the browser send an authenticated request (no CSRF).

const KEY = "petrel.token";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function token() {
  return sessionStorage.getItem(KEY);
}

export function setToken(t) {
  if (t) sessionStorage.setItem(KEY, t);
  else sessionStorage.removeItem(KEY);
}

let onUnauthorized = () => {};
export function whenUnauthorized(f) {
  onUnauthorized = f;
}

async function send(method, path, body) {
  const headers = {};
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store" });
  if (res.status === 401 && path !== "/api/login") onUnauthorized();
  return res;
}

/** JSON from the API, or an ApiError with the API's words. */
export async function api(method, path, body) {
  const res = await send(method, path, body);
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON
  }
  if (!res.ok) throw new ApiError(res.status, json?.error ?? `${res.status} ${res.statusText}`);
  return json;
}

export const get = (path) => api("GET", path);

/** The body as text (raw sources). */
export async function getText(path) {
  const res = await send("GET", path);
  if (!res.ok) throw new ApiError(res.status, `${res.status} ${res.statusText}`);
  return res.text();
}

/** Save what `path` answers as a file (attachments, raw sources): fetched with the token, handed to the browser as a blob. */
export async function download(path, filename) {
  const res = await send("GET", path);
  if (!res.ok) throw new ApiError(res.status, `${res.status} ${res.statusText}`);
  const url = URL.createObjectURL(await res.blob());
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/**
 * The live events (/api/events, Server-Sent Events) read with fetch, since
 * EventSource cannot send the Authorization header. Reconnects with
 * Last-Event-ID after a drop, a little later each time (at most 30 s).
 */
export function liveEvents(onEvent, onState) {
  const stop = new AbortController();
  let last;
  let delay = 1000;
  (async () => {
    while (!stop.signal.aborted) {
      try {
        const headers = { Authorization: `Bearer ${token()}` };
        if (last !== undefined) headers["Last-Event-ID"] = String(last);
        const res = await fetch("/api/events", { headers, signal: stop.signal, cache: "no-store" });
        if (res.status === 401) {
          onUnauthorized();
          return;
        }
        if (!res.ok || !res.body) throw new Error(`${res.status}`);
        onState(true);
        delay = 1000;
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let end;
          while ((end = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, end);
            buf = buf.slice(end + 2);
            const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
            const id = /^id: ?(\d+)$/m.exec(block);
            if (id) last = Number(id[1]);
            if (data) {
              try {
                onEvent(JSON.parse(data));
              } catch {
                // a malformed event is skipped
              }
            }
          }
        }
      } catch {
        // dropped: try again below
      }
      onState(false);
      if (stop.signal.aborted) return;
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 30_000);
    }
  })();
  return () => stop.abort();
}
