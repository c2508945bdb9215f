/**
 * What happened: the activity feed (accepted, refused with the check and
 * reason, delivered, deferred, bounced), throughput per minute for charts,
 * one message's whole trace by queue id, the live stream of events (SSE)
 * and the Prometheus metrics.
 */
import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import { streamSSE } from "hono/streaming";
import { ACTIVITY_TYPES, TRACE_TYPES, type PetrelEvent, type PetrelEventType } from "../events/petrel-event.ts";
import { isQueueId, queueIdTime } from "../spool/queue-id.ts";
import { ApiError, errors, ok, type AdminApiOptions, type ApiEnv } from "./api-common.ts";
import type { Metrics } from "./metrics.ts";

const EVENT_TYPES = ["connection", "disconnection", "tls", "auth-failure", "rejected", "accepted", "spool-commit", "queued", "delivery", "expired", "dsn", "admin", "removed"] as const;

/** The events the API shows: those of the trace and the feed (connection-level ones feed only the metrics). */
const STREAMED: ReadonlySet<PetrelEventType> = new Set([...TRACE_TYPES, ...ACTIVITY_TYPES]);

export const eventSchema = z.looseObject({
  seq: z.number().openapi({ description: "Increasing event number (the SSE id; paging cursor)" }),
  at: z.number().openapi({ description: "ms since the epoch" }),
  type: z.enum(EVENT_TYPES),
  queueId: z.string().optional(),
}).openapi("Event", {
  description: "One event; its other fields depend on `type` (src/events/petrel-event.ts): accepted {origin, from, to, size, client {address, helo, role, tls, cipher, authUser}, authResults, findings, held}; " +
    "rejected {check, stage, reason, reply, client, role, from, to}; queued {recipients}; delivery {recipient, original, transport, destination, status, enhanced, reply, remoteMta, remoteAddress, tls, durationMs, attempt, latencyMs, retryAt}; " +
    "expired {recipient, reply}; dsn {dsnId, action, recipients}; admin {action, by}; removed {}",
});

export type EventJson = z.infer<typeof eventSchema>;

/** Events as the schema describes them: JSON objects with `seq`, `at`, `type` and the fields of their type. */
export function eventsJson(events: readonly PetrelEvent[]): EventJson[] {
  return events as unknown as EventJson[];
}

function typesParam(text: string | undefined): PetrelEventType[] | undefined {
  if (!text) return undefined;
  const types = text.split(",").map((t) => t.trim()).filter((t) => t !== "");
  for (const t of types) if (!(EVENT_TYPES as readonly string[]).includes(t)) throw new ApiError(400, `unknown event type ${JSON.stringify(t)}; expected some of ${[...STREAMED].join(", ")}`);
  return types as PetrelEventType[];
}

const security = [{ bearer: [] }];

/** Events waiting for one slow SSE client before it is cut off. */
const SSE_BACKLOG = 1000;

export function activityRoutes(app: OpenAPIHono<ApiEnv>, o: AdminApiOptions): void {
  app.openapi(createRoute({
    method: "get", path: "/api/activity", tags: ["activity"], security, summary: "Recent events, newest first: accepted, rejected (with check and reason), deliveries, expiries, DSNs, administrators' operations",
    request: {
      query: z.object({
        before: z.coerce.number().int().optional().openapi({ description: "Only events older than this seq (the next page: the seq of the last event of this one)" }),
        after: z.coerce.number().int().optional().openapi({ description: "Only events newer than this seq" }),
        limit: z.coerce.number().int().min(1).max(500).default(50),
        types: z.string().optional().openapi({ description: "Comma-separated event types", example: "rejected,delivery" }),
        q: z.string().optional().openapi({ description: "Only events whose text contains this (an address, a queue id, a client IP)" }),
      }),
    },
    responses: { 200: ok(z.object({ events: z.array(eventSchema) }), "Newest first"), ...errors(400) },
  }), (c) => {
    const q = c.req.valid("query");
    return c.json({ events: eventsJson(o.trace.activity({ before: q.before, after: q.after, limit: q.limit, types: typesParam(q.types), text: q.q })) }, 200);
  });

  app.openapi(createRoute({
    method: "get", path: "/api/activity/series", tags: ["activity"], security, summary: "Per-minute counts (accepted, rejected, delivered, deferred, bounced) and queue size, for charts",
    request: { query: z.object({ minutes: z.coerce.number().int().min(1).max(1440).default(60) }) },
    responses: {
      200: ok(z.object({
        minutes: z.array(z.object({
          start: z.number().openapi({ description: "The minute, ms since the epoch" }),
          accepted: z.number(), rejected: z.number(), delivered: z.number(), deferred: z.number(), bounced: z.number(),
          queue: z.number().nullable().openapi({ description: "Messages in the queue at the end of the minute (null: not sampled)" }),
        })),
      }), "Oldest first, the current minute last"),
    },
  }), async (c) => {
    await o.series.sample();
    return c.json({ minutes: o.series.last(c.req.valid("query").minutes) }, 200);
  });

  app.openapi(createRoute({
    method: "get", path: "/api/trace/{id}", tags: ["activity"], security,
    summary: "One message's whole path by queue id: accepted from whom (client, HELO, TLS, AUTH), check findings and Authentication-Results, every delivery attempt, DSNs, administrators' operations",
    description: "Kept for admin.traceRetention after the message arrived, whether it is still queued or not.",
    request: { params: z.object({ id: z.string().openapi({ param: { name: "id", in: "path" } }) }) },
    responses: {
      200: ok(z.object({ queueId: z.string(), arrival: z.number(), inQueue: z.boolean(), events: z.array(eventSchema) }), "Oldest first"),
      ...errors(400, 404),
    },
  }), async (c) => {
    const id = c.req.valid("param").id;
    if (!isQueueId(id)) throw new ApiError(400, `not a queue id: ${JSON.stringify(id)}`);
    const events = await o.trace.trace(id, queueIdTime(id));
    const inQueue = (await o.queue.get(id)) !== null;
    if (events.length === 0 && !inQueue) throw new ApiError(404, `nothing is known of ${id}: no such message, or its trace is older than admin.traceRetention`);
    return c.json({ queueId: id, arrival: queueIdTime(id), inQueue, events: eventsJson(events) }, 200);
  });

  app.openapi(createRoute({
    method: "get", path: "/api/events", tags: ["activity"], security,
    summary: "Live events as Server-Sent Events (one `data:` JSON event each, `id:` its seq, `event:` its type)",
    description: "Send `Last-Event-ID` (or `?after=`) to get the feed's events after that one first. Browsers: EventSource cannot send the Authorization header, so read it with fetch() and a stream reader.",
    request: {
      query: z.object({ types: z.string().optional().openapi({ description: "Comma-separated event types" }), after: z.coerce.number().int().optional() }),
    },
    responses: { 200: { description: "The stream", content: { "text/event-stream": { schema: z.string() } } }, ...errors(400) },
  }), (c) => {
    const q = c.req.valid("query");
    const only = typesParam(q.types);
    const wanted = (e: PetrelEvent) => STREAMED.has(e.type) && (!only || only.includes(e.type));
    const last = c.req.header("Last-Event-ID");
    const after = q.after ?? (last !== undefined && /^\d+$/.test(last) ? Number(last) : undefined);
    return streamSSE(c, async (stream) => {
      const waiting: PetrelEvent[] = [];
      let wake: (() => void) | null = null;
      let overflow = false;
      const unsubscribe = o.bus.subscribe((e) => {
        if (!wanted(e)) return;
        if (waiting.length >= SSE_BACKLOG) overflow = true;
        else waiting.push(e);
        wake?.();
      });
      let closed = false;
      stream.onAbort(() => {
        closed = true;
        wake?.();
      });
      try {
        if (after !== undefined) {
          const missed = o.trace.activity({ after, limit: 500 }).filter(wanted).reverse();
          for (const e of missed) await stream.writeSSE({ id: String(e.seq), event: e.type, data: JSON.stringify(e) });
        }
        let sentUpTo = after ?? 0;
        while (!closed) {
          if (overflow) {
            await stream.writeSSE({ event: "overflow", data: JSON.stringify({ error: "too slow: events were dropped; reconnect with Last-Event-ID" }) });
            break;
          }
          const e = waiting.shift();
          if (e) {
            if (e.seq > sentUpTo) await stream.writeSSE({ id: String(e.seq), event: e.type, data: JSON.stringify(e) });
            sentUpTo = Math.max(sentUpTo, e.seq);
            continue;
          }
          // A comment line every 15 s keeps proxies from closing an idle stream.
          await new Promise<void>((resolve) => {
            const t = setTimeout(resolve, 15_000);
            wake = () => {
              clearTimeout(t);
              resolve();
            };
          });
          wake = null;
          if (waiting.length === 0 && !closed) await stream.write(": keep-alive\n\n");
        }
      } finally {
        unsubscribe();
      }
    });
  });
}

export function metricsRoute(app: OpenAPIHono<ApiEnv>, metrics: Metrics): void {
  app.openapi(createRoute({
    method: "get", path: "/metrics", tags: ["metrics"], security,
    summary: "Prometheus metrics (text format 0.0.4); needs the token unless metrics.auth is none",
    responses: { 200: { description: "The metrics", content: { "text/plain": { schema: z.string() } } } },
  }), async (c) => c.body(await metrics.text(), 200, { "Content-Type": metrics.contentType }) as never);
}
