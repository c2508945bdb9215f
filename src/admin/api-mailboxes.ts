/**
 * /api/mailboxes/{address}: a local user's Maildir as a person reads it —
 * folders, messages newest first, one message parsed (headers, text, HTML,
 * attachments), its raw source, an attachment, and delete. The HTML is
 * returned as text for the dashboard to show in a sandboxed frame; raw
 * sources and attachments are sent as downloads under a sandboxing CSP, so
 * nothing in a message ever runs with the API's origin.
 */
import { Readable } from "node:stream";
import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import { maildirPathFor } from "../delivery/local-agent.ts";
import { MailboxError, MaildirReader } from "../delivery/maildir-reader.ts";
import { ApiError, errors, ok, paging, type AdminApiOptions, type ApiEnv } from "./api-common.ts";

const security = [{ bearer: [] }];

const summarySchema = z.object({
  id: z.string().openapi({ description: "The Maildir unique name (stable across flag changes)" }), folder: z.string(), new: z.boolean(), flags: z.string(),
  received: z.string().openapi({ description: "ISO 8601, when it was delivered" }), size: z.number(), from: z.string(), to: z.string(), subject: z.string(), date: z.string().nullable(),
}).openapi("MailboxMessage");

const addressParam = { address: z.string().openapi({ param: { name: "address", in: "path" }, example: "alice@example.org" }) };
const messageParams = z.object({ ...addressParam, id: z.string().openapi({ param: { name: "id", in: "path" } }) });
const folderQuery = z.object({ folder: z.string().default("INBOX").openapi({ description: "INBOX, or a Maildir++ folder such as Junk" }) });

/** Download headers: never rendered in the API's origin. */
const DOWNLOAD = { "Content-Security-Policy": "sandbox; default-src 'none'", "X-Content-Type-Options": "nosniff" };

/** The Maildir of a local user, or the API's 404/400. */
export async function mailboxReader(o: Pick<AdminApiOptions, "accounts" | "maildirRoot">, address: string): Promise<MaildirReader> {
  if (!(await o.accounts.hasMailbox(address))) throw new ApiError(404, `${address} has no mailbox here`);
  const where = maildirPathFor(o.maildirRoot, address);
  if (!where.ok) throw new ApiError(400, where.reason);
  return new MaildirReader(where.path);
}

/** A Maildir operation; its MailboxError becomes the API's error with the matching status. */
export async function mailbox<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (err) {
    if (err instanceof MailboxError) throw new ApiError(err.code === "not-found" ? 404 : err.code === "too-large" ? 413 : 400, err.message);
    throw err;
  }
}

export function mailboxRoutes(app: OpenAPIHono<ApiEnv>, o: AdminApiOptions): void {
  const reader = (address: string) => mailboxReader(o, address);

  app.openapi(createRoute({
    method: "get", path: "/api/mailboxes/{address}/folders", tags: ["mailboxes"], security, summary: "A local user's folders: INBOX, then each Maildir++ folder",
    request: { params: z.object(addressParam) },
    responses: { 200: ok(z.object({ folders: z.array(z.string()) }), "The folders"), ...errors(400, 404) },
  }), async (c) => {
    const r = await reader(c.req.valid("param").address);
    return c.json({ folders: await r.folders() }, 200);
  });

  app.openapi(createRoute({
    method: "get", path: "/api/mailboxes/{address}/messages", tags: ["mailboxes"], security, summary: "Messages of a folder, newest first",
    request: { params: z.object(addressParam), query: z.object({ ...folderQuery.shape, ...paging }) },
    responses: { 200: ok(z.object({ total: z.number(), offset: z.number(), limit: z.number(), messages: z.array(summarySchema) }), "One page"), ...errors(400, 404) },
  }), async (c) => {
    const q = c.req.valid("query");
    const r = await reader(c.req.valid("param").address);
    const page = await mailbox(() => r.list(q.folder, { offset: q.offset, limit: q.limit }));
    return c.json({ total: page.total, offset: q.offset, limit: q.limit, messages: page.messages }, 200);
  });

  app.openapi(createRoute({
    method: "get", path: "/api/mailboxes/{address}/messages/{id}", tags: ["mailboxes"], security, summary: "One message, parsed: headers, text, HTML (to show sandboxed), attachments",
    request: { params: messageParams, query: folderQuery },
    responses: {
      200: ok(summarySchema.extend({
        headers: z.array(z.object({ name: z.string(), value: z.string() })).readonly(),
        text: z.string().nullable(), html: z.string().nullable().openapi({ description: "As sent: show it only in a sandboxed frame with remote content blocked" }),
        attachments: z.array(z.object({ index: z.number(), filename: z.string().nullable(), mimeType: z.string(), size: z.number(), disposition: z.string().nullable(), contentId: z.string().nullable() })).readonly(),
      }), "The message"),
      ...errors(400, 404, 413),
    },
  }), async (c) => {
    const { address, id } = c.req.valid("param");
    const r = await reader(address);
    return c.json(await mailbox(() => r.read(c.req.valid("query").folder, id)), 200);
  });

  app.openapi(createRoute({
    method: "post", path: "/api/mailboxes/{address}/messages/{id}/html-view", tags: ["mailboxes"], security,
    summary: "A short-lived link that shows the message's HTML, for a sandboxed frame",
    description: "A frame cannot send the Authorization header, so the dashboard asks for a random link naming this one message (valid for minutes). " +
      "It is served with `Content-Security-Policy: default-src 'none'; img-src data: cid:; style-src 'unsafe-inline'`, so remote images, scripts and fonts are never fetched.",
    request: { params: messageParams, query: folderQuery },
    responses: { 200: ok(z.object({ url: z.string(), expiresAt: z.string().openapi({ description: "ISO 8601" }) }), "The link"), ...errors(400, 404, 413) },
  }), async (c) => {
    const { address, id } = c.req.valid("param");
    const folder = c.req.valid("query").folder;
    const r = await reader(address);
    const m = await mailbox(() => r.read(folder, id));
    if (m.html === null) throw new ApiError(404, `message ${id} has no HTML part`);
    const link = o.views.create({ address, folder, id });
    return c.json({ url: link.path, expiresAt: new Date(link.expiresAt).toISOString() }, 200);
  });

  app.openapi(createRoute({
    method: "get", path: "/api/mailboxes/{address}/messages/{id}/raw", tags: ["mailboxes"], security, summary: "The message as stored (message/rfc822)",
    request: { params: messageParams, query: folderQuery },
    responses: { 200: { description: "The source", content: { "message/rfc822": { schema: z.string() } } }, ...errors(400, 404) },
  }), async (c) => {
    const { address, id } = c.req.valid("param");
    const r = await reader(address);
    const raw = await mailbox(() => r.raw(c.req.valid("query").folder, id));
    return c.body(Readable.toWeb(raw.stream) as ReadableStream, 200, {
      ...DOWNLOAD, "Content-Type": "message/rfc822", "Content-Length": String(raw.size), "Content-Disposition": `attachment; filename="${id.replace(/[^A-Za-z0-9._-]/g, "_")}.eml"`,
    }) as never;
  });

  app.openapi(createRoute({
    method: "get", path: "/api/mailboxes/{address}/messages/{id}/attachments/{index}", tags: ["mailboxes"], security, summary: "One attachment, as a download",
    request: { params: messageParams.extend({ index: z.coerce.number().int().min(0).openapi({ param: { name: "index", in: "path" } }) }), query: folderQuery },
    responses: { 200: { description: "The attachment", content: { "application/octet-stream": { schema: z.string() } } }, ...errors(400, 404, 413) },
  }), async (c) => {
    const { address, id, index } = c.req.valid("param");
    const r = await reader(address);
    const a = await mailbox(() => r.attachment(c.req.valid("query").folder, id, index));
    const name = (a.filename ?? `attachment-${index}`).replace(/[^\w.\- ]/g, "_");
    return c.body(a.content as Uint8Array<ArrayBuffer>, 200, {
      ...DOWNLOAD, "Content-Type": /^[\w.+-]+\/[\w.+-]+$/.test(a.mimeType) ? a.mimeType : "application/octet-stream", "Content-Disposition": `attachment; filename="${name}"`,
    }) as never;
  });

  app.openapi(createRoute({
    method: "delete", path: "/api/mailboxes/{address}/messages/{id}", tags: ["mailboxes"], security, summary: "Delete a message from the mailbox",
    request: { params: messageParams, query: folderQuery },
    responses: { 200: ok(z.object({ ok: z.boolean() }), "Deleted"), ...errors(400, 404) },
  }), async (c) => {
    const { address, id } = c.req.valid("param");
    const r = await reader(address);
    await mailbox(() => r.delete(c.req.valid("query").folder, id));
    return c.json({ ok: true }, 200);
  });
}
