/**
 * The web dashboard, served by the admin listener beside the API: its page,
 * script and style (plain ES modules shipped in ./dashboard/, no build
 * step), and the one-message HTML links of html-views.ts. The page and its
 * files need no authentication (they hold no data); everything they show
 * comes from the API with the Authorization header (admin-auth.ts says why
 * that makes cross-site request forgery impossible).
 *
 * The dashboard's pages are served under a CSP that allows only its own
 * files (no inline script, no other origin) and may not be framed; a
 * message's HTML is served under one that blocks everything remote, and is
 * shown in a frame sandboxed without scripts.
 */
import { readdirSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { extname } from "node:path";
import { fileURLToPath } from "node:url";
import { Hono } from "hono";
import type { Logger } from "pino";
import { ApiError } from "./api-common.ts";
import { mailbox, mailboxReader } from "./api-mailboxes.ts";
import { HTML_VIEW_PREFIX, type HtmlViews } from "./html-views.ts";
import { inlineCidImages } from "./inline-images.ts";
import type { AccountStore } from "../accounts/account-store.ts";

const ASSETS = fileURLToPath(new URL("./dashboard/", import.meta.url));

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml",
};

export const DASHBOARD_CSP = [
  "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:", "connect-src 'self'", "frame-src 'self'",
  "object-src 'none'", "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'",
].join("; ");

/** Remote content never loads from a message: no fetch at all but inline images and styles (`sandbox`: no script, an opaque origin). */
export const MESSAGE_HTML_CSP = "default-src 'none'; img-src data: cid:; style-src 'unsafe-inline'; frame-ancestors 'self'; sandbox";

const PAGE_HEADERS = {
  "Content-Security-Policy": DASHBOARD_CSP, "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache",
};

/** Whether the dashboard (not the API) answers `path`. */
export function isDashboardPath(path: string): boolean {
  return path === "/" || path.startsWith("/ui/") || path.startsWith(HTML_VIEW_PREFIX);
}

export function dashboardApp(o: { views: HtmlViews; accounts: AccountStore; maildirRoot: string; log: Logger }): Hono {
  const app = new Hono();
  // The files are fixed when the server starts: only these names are ever read.
  const files = new Set(readdirSync(ASSETS).filter((n) => TYPES[extname(n)] !== undefined));

  const asset = async (name: string): Promise<Response | null> => {
    if (!files.has(name)) return null;
    const body = await readFile(ASSETS + name);
    return new Response(body, { status: 200, headers: { ...PAGE_HEADERS, "Content-Type": TYPES[extname(name)] } });
  };

  app.get("/", async (c) => (await asset("index.html")) ?? c.notFound());
  app.get("/ui/:name", async (c) => (await asset(c.req.param("name"))) ?? c.notFound());

  app.get(`${HTML_VIEW_PREFIX}:key`, async (c) => {
    const ref = o.views.find(c.req.param("key"));
    const headers = { "Content-Security-Policy": MESSAGE_HTML_CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store" };
    if (!ref) return c.text("this link has expired: open the message again\n", 404, headers);
    try {
      const r = await mailboxReader(o, ref.address);
      const m = await mailbox(() => r.html(ref.folder, ref.id));
      return c.body(inlineCidImages(m.html ?? "", m.related), 200, { ...headers, "Content-Type": "text/html; charset=utf-8" });
    } catch (err) {
      if (err instanceof ApiError) return c.text(err.message + "\n", err.status, headers);
      throw err;
    }
  });

  app.notFound((c) => c.text("not found\n", 404, { ...PAGE_HEADERS, "Content-Type": "text/plain; charset=utf-8" }));
  app.onError((err, c) => {
    o.log.error({ err, path: c.req.path }, "dashboard request failed");
    return c.text("internal error (see the server log)\n", 500);
  });
  return app;
}
