/**
 * /api/queue: the queue as `mailq` and `qshape` show it, one message with
 * its envelope, each recipient's history and every remote reply the trace
 * holds, and retry, hold, release and delete — the QueueManager's own
 * methods, the ones the control socket calls for the CLI.
 */
import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import { domainOf } from "../mail/address.ts";
import { isQueueId, queueIdTime } from "../spool/queue-id.ts";
import type { QueueListItem } from "../queue/queue-manager.ts";
import { AGE_BUCKET_BOUNDS } from "../queue/queue-report.ts";
import { identityName } from "./admin-auth.ts";
import { ApiError, errors, ok, paging, type AdminApiOptions, type ApiEnv } from "./api-common.ts";
import { eventSchema, eventsJson } from "./api-activity.ts";

const recipientSchema = z.object({
  address: z.string(), original: z.string(),
  status: z.string().openapi({ description: "queued, delivering, deferred, delivered or bounced" }),
  attempts: z.number(), nextAttempt: z.number().openapi({ description: "ms since the epoch" }), lastError: z.string().optional(),
});

export const queueItemSchema = z.object({
  id: z.string(), arrival: z.number().openapi({ description: "ms since the epoch" }), size: z.number().optional(), sender: z.string(),
  held: z.boolean(), heldReason: z.string().optional(), recipients: z.array(recipientSchema).readonly(),
}).openapi("QueueMessage");

const STATES = ["queued", "delivering", "deferred", "held", "active"] as const;

const listQuery = z.object({
  state: z.enum(STATES).optional().openapi({ description: "held: on hold; active: not held; queued, delivering, deferred: with a recipient in that state" }),
  sender: z.string().optional().openapi({ description: "Sender contains this (case-insensitive)" }),
  recipient: z.string().optional().openapi({ description: "A recipient contains this (case-insensitive)" }),
  domain: z.string().optional().openapi({ description: "A waiting recipient is at this domain" }),
  order: z.enum(["oldest", "newest"]).default("oldest"),
  ...paging,
});

const idParam = z.object({ id: z.string().openapi({ param: { name: "id", in: "path" }, example: "01JB3Z6Q8T000000AB" }) });

const security = [{ bearer: [] }];

function matches(item: QueueListItem, q: z.infer<typeof listQuery>): boolean {
  if (q.state === "held" && !item.held) return false;
  if (q.state === "active" && item.held) return false;
  if ((q.state === "queued" || q.state === "delivering" || q.state === "deferred") && !item.recipients.some((r) => r.status === q.state)) return false;
  if (q.sender && !item.sender.toLowerCase().includes(q.sender.toLowerCase())) return false;
  if (q.recipient) {
    const want = q.recipient.toLowerCase();
    if (!item.recipients.some((r) => r.address.toLowerCase().includes(want) || r.original.toLowerCase().includes(want))) return false;
  }
  if (q.domain) {
    const d = q.domain.toLowerCase();
    if (!item.recipients.some((r) => (r.status === "queued" || r.status === "deferred" || r.status === "delivering") && domainOf(r.address).toLowerCase() === d)) return false;
  }
  return true;
}

function queueId(id: string): string {
  if (!isQueueId(id)) throw new ApiError(400, `not a queue id: ${JSON.stringify(id)}`);
  return id;
}

export function queueRoutes(app: OpenAPIHono<ApiEnv>, o: AdminApiOptions): void {
  app.openapi(createRoute({
    method: "get", path: "/api/queue", tags: ["queue"], security, summary: "Messages in the queue, filtered and paged",
    request: { query: listQuery },
    responses: { 200: ok(z.object({ total: z.number(), offset: z.number(), limit: z.number(), messages: z.array(queueItemSchema).readonly() }), "One page") },
  }), async (c) => {
    const q = c.req.valid("query");
    const all = (await o.queue.list()).filter((m) => matches(m, q));
    if (q.order === "newest") all.reverse();
    return c.json({ total: all.length, offset: q.offset, limit: q.limit, messages: all.slice(q.offset, q.offset + q.limit) }, 200);
  });

  app.openapi(createRoute({
    method: "get", path: "/api/queue/summary", tags: ["queue"], security,
    summary: "Waiting recipients by destination domain and age (qshape), with the counts by state",
    responses: {
      200: ok(z.object({
        messages: z.number(), held: z.number(), oldestArrival: z.number().nullable(),
        recipients: z.object({ queued: z.number(), delivering: z.number(), deferred: z.number() }),
        ageBuckets: z.array(z.object({ minMinutes: z.number(), maxMinutes: z.number().nullable() })).readonly(),
        rows: z.array(z.object({ domain: z.string(), total: z.number(), buckets: z.array(z.number()) })).openapi({ description: "TOTAL first, then each domain, most recipients first" }),
      }), "The shape of the queue"),
    },
  }), async (c) => {
    // The store's aggregates: no message is read, whatever the queue's size.
    const now = o.clock.now();
    const [t, rows] = await Promise.all([o.queue.totals(now), o.queue.summary(now)]);
    return c.json({
      messages: t.messages, held: t.held, oldestArrival: t.oldestArrival, recipients: { ...t.waiting }, ageBuckets: AGE_BUCKET_BOUNDS, rows,
    }, 200);
  });

  app.openapi(createRoute({
    method: "get", path: "/api/queue/{id}", tags: ["queue"], security,
    summary: "One message: its envelope, each recipient's recent history, and every delivery attempt the trace holds (remote host, address, TLS, reply)",
    request: { params: idParam },
    responses: {
      200: ok(z.object({
        message: queueItemSchema,
        envelope: z.object({
          mailFrom: z.string(), recipients: z.array(z.object({ address: z.string(), notify: z.array(z.string()).readonly().optional(), orcpt: z.string().optional() })).readonly(),
          size: z.number().optional(), receivedAt: z.number(), requireTls: z.boolean(), smtputf8: z.boolean(), body: z.string().optional(),
          client: z.object({ address: z.string(), port: z.number(), helo: z.string(), protocol: z.string(), role: z.string(), authUser: z.string().optional(), tls: z.object({ version: z.string(), cipher: z.string() }).optional() }),
          hold: z.string().optional(), folder: z.string().optional(),
        }),
        history: z.record(z.string(), z.array(z.object({ at: z.number(), status: z.string(), enhanced: z.string().optional(), diagnostic: z.string().optional() })).readonly()),
        attempts: z.array(eventSchema).openapi({ description: "Every delivery event of this message in the trace, oldest first" }),
      }), "The message"),
      ...errors(400, 404),
    },
  }), async (c) => {
    const id = queueId(c.req.valid("param").id);
    const m = await o.queue.get(id);
    if (!m) throw new ApiError(404, `no message ${id} in the queue`);
    const e = m.envelope;
    const attempts = (await o.trace.trace(id, queueIdTime(id))).filter((x) => x.type === "delivery" || x.type === "expired");
    return c.json({
      message: m.item,
      envelope: {
        mailFrom: e.mailFrom, recipients: e.recipients.map((r) => ({ address: r.address, ...(r.notify ? { notify: r.notify } : {}), ...(r.orcpt ? { orcpt: r.orcpt } : {}) })),
        ...(e.size !== undefined ? { size: e.size } : {}), receivedAt: e.receivedAt, requireTls: e.requireTls, smtputf8: e.smtputf8, ...(e.body ? { body: e.body } : {}),
        client: { ...e.client }, ...(e.hold !== undefined ? { hold: e.hold } : {}), ...(e.folder !== undefined ? { folder: e.folder } : {}),
      },
      history: m.history,
      attempts: eventsJson(attempts),
    }, 200);
  });

  const action = (verb: "retry" | "hold" | "release", summary: string) => app.openapi(createRoute({
    method: "post", path: `/api/queue/{id}/${verb}`, tags: ["queue"], security, summary, request: { params: idParam },
    responses: { 200: ok(z.object({ ok: z.boolean() }), "Done"), ...errors(400, 404, 409) },
  }), async (c) => {
    const id = queueId(c.req.valid("param").id);
    const by = identityName(c.get("who"));
    if (verb === "retry") {
      const done = await o.queue.retry(id, by);
      if (!done) throw new ApiError(404, `no message ${id} in the queue`);
      if (done.held.length > 0) throw new ApiError(409, `message ${id} is on hold, so nothing was scheduled; release it first`);
    } else if (!(await o.queue[verb](id, by))) throw new ApiError(404, `no message ${id} in the queue`);
    return c.json({ ok: true }, 200);
  });
  action("retry", "Make its waiting recipients due now (postqueue -i)");
  action("hold", "Hold it: no delivery attempts until released (postsuper -h)");
  action("release", "Release it from hold (postsuper -H)");

  app.openapi(createRoute({
    method: "post", path: "/api/queue/retry", tags: ["queue"], security, summary: "Make every waiting recipient of every message not held due now (postqueue -f)",
    responses: { 200: ok(z.object({ scheduled: z.number(), held: z.array(z.string()).readonly() }), "What was scheduled, and which messages were left on hold") },
  }), async (c) => c.json((await o.queue.retry("all", identityName(c.get("who"))))!, 200));

  app.openapi(createRoute({
    method: "delete", path: "/api/queue/{id}", tags: ["queue"], security, summary: "Delete it without a bounce (postsuper -d)", request: { params: idParam },
    responses: { 200: ok(z.object({ ok: z.boolean() }), "Deleted"), ...errors(400, 404) },
  }), async (c) => {
    const id = queueId(c.req.valid("param").id);
    if (!(await o.queue.delete(id, identityName(c.get("who"))))) throw new ApiError(404, `no message ${id} in the queue`);
    return c.json({ ok: true }, 200);
  });
}
