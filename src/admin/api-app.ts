/**
 * The admin HTTP API (hono, with the OpenAPI description generated from the
 * same zod schemas that validate requests): authentication, errors as JSON,
 * the routes of api-*.ts, the description at /api/openapi.json. Every
 * change goes through the services the CLI uses — the QueueManager's
 * methods (as the control socket), the AccountStore (as `petrel
 * user|domain|alias`) — so there is one code path for each operation.
 */
import { OpenAPIHono, createRoute, z } from "@hono/zod-openapi";
import { AdminSessions, authenticator, bearerToken, type AdminIdentity } from "./admin-auth.ts";
import { ApiError, errorSchema, jsonBody, ok, type AdminApiOptions, type ApiEnv } from "./api-common.ts";
import { queueRoutes } from "./api-queue.ts";
import { accountRoutes } from "./api-accounts.ts";
import { mailboxRoutes } from "./api-mailboxes.ts";
import { activityRoutes, metricsRoute } from "./api-activity.ts";

export type { AdminApiOptions, ApiEnv } from "./api-common.ts";


export const API_TITLE = "Petrel admin API";

const serverStatusSchema = z.object({
  version: z.string(), pid: z.number(), hostname: z.string(), dataDir: z.string(),
  startedAt: z.string().openapi({ description: "ISO 8601" }), uptimeSeconds: z.number(),
  listeners: z.array(z.object({ role: z.enum(["mx", "submission", "submissions"]), address: z.string(), port: z.number() })).readonly(),
  queue: z.object({
    messages: z.number(), held: z.number(),
    waiting: z.object({ queued: z.number(), delivering: z.number(), deferred: z.number() }),
    oldestAgeSeconds: z.number().nullable(),
    topDestinations: z.array(z.object({ domain: z.string(), recipients: z.number() })).readonly(),
  }),
  certificates: z.array(z.object({ subject: z.string(), names: z.array(z.string()).readonly(), file: z.string(), validTo: z.string(), daysLeft: z.number() })).readonly(),
  cluster: z.object({
    node: z.string().openapi({ description: "The name of the node that answers" }),
    nodes: z.array(z.object({
      name: z.string(), host: z.string(), pid: z.number(), version: z.string(),
      startedAt: z.string().openapi({ description: "ISO 8601" }), heartbeatAt: z.string().openapi({ description: "ISO 8601" }),
      heartbeatAgeSeconds: z.number(), stoppedAt: z.string().nullable().openapi({ description: "ISO 8601, when it stopped cleanly" }),
      health: z.enum(["healthy", "late", "gone"]).openapi({ description: "By the age of the last heartbeat: late after 15 s, gone after 60 s or once stopped" }),
      self: z.boolean(),
    }).openapi("ClusterNode")).readonly(),
  }).nullable().openapi({ description: "The nodes sharing this node's PostgreSQL (storage.kind postgres); null for a single node" }),
  workers: z.array(z.object({
    index: z.number(), pid: z.number().nullable(), state: z.enum(["starting", "running", "restarting", "stopped"]),
    sessions: z.number().openapi({ description: "connections it serves now" }), connections: z.number().openapi({ description: "connections handed to it since start" }),
    receiving: z.number(), restarts: z.number(),
  })).readonly().optional().openapi({ description: "The SMTP worker processes; absent with workers: 1" }),
}).openapi("ServerStatus");

export function adminApi(o: AdminApiOptions): OpenAPIHono<ApiEnv> {
  const app = new OpenAPIHono<ApiEnv>({
    // A request that does not match its schema: 400 with what was wrong, in the API's error shape.
    defaultHook: (result, c) => {
      if (!result.success) {
        const issues = result.error.issues.map((i) => `${i.path.join(".") || "request"}: ${i.message}`);
        return c.json({ error: `invalid request: ${issues.join("; ")}` }, 400);
      }
    },
  });
  const sessions = new AdminSessions({ lifetime: o.sessionLifetime, clock: o.clock });
  const stillAdmin = async (address: string) => (await o.accounts.getUser(address))?.admin === true;
  const auth = authenticator(o.token, sessions, stillAdmin);
  const open = new Set(["/api/login", "/api/openapi.json"]);

  app.use("*", async (c, next) => {
    await next();
    // JSON and files only: nothing the API serves is a page a browser should render or sniff.
    c.header("X-Content-Type-Options", "nosniff");
    c.header("Cache-Control", "no-store");
    if (!c.res.headers.has("Content-Security-Policy")) c.header("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'");
  });
  app.use("*", async (c, next) => {
    const path = c.req.path;
    const needsToken = path === "/metrics" ? o.metrics?.auth === "token" : o.auth === "token" && !open.has(path);
    if (o.auth === "none" && path !== "/metrics") c.set("who", { kind: "token" });
    if (needsToken) {
      const who = await auth.identify(c.req.header("Authorization"));
      if (!who) {
        c.header("WWW-Authenticate", 'Bearer realm="petrel"');
        return c.json({ error: "authentication required: send Authorization: Bearer <token> (the admin token file, or POST /api/login)" }, 401);
      }
      c.set("who", who);
    }
    return next();
  });
  app.onError((err, c) => {
    if (err instanceof ApiError) return c.json({ error: err.message }, err.status);
    o.log.error({ err, path: c.req.path }, "admin API request failed");
    return c.json({ error: "internal error (see the server log)" }, 500);
  });
  app.notFound((c) => c.json({ error: `no such route: ${c.req.method} ${c.req.path}` }, 404));

  app.openAPIRegistry.registerComponent("securitySchemes", "bearer", {
    type: "http", scheme: "bearer",
    description: "The token in admin.tokenFile, or the token POST /api/login returns for an administrator account.",
  });

  app.openapi(createRoute({
    method: "post", path: "/api/login", tags: ["session"], summary: "Log in with an administrator account (`petrel user admin ADDRESS on`)",
    description: "Returns a session token to send as `Authorization: Bearer <token>` until it expires. Accounts without the admin flag are refused (403).",
    request: { body: jsonBody(z.object({ address: z.string(), password: z.string() })) },
    responses: {
      200: ok(z.object({ token: z.string(), expiresAt: z.string().openapi({ description: "ISO 8601" }), user: z.string() }), "Logged in"),
      401: { description: "Wrong address or password", content: { "application/json": { schema: errorSchema } } },
      403: { description: "Not an administrator", content: { "application/json": { schema: errorSchema } } },
    },
  }), async (c) => {
    const { address, password } = c.req.valid("json");
    const user = await o.accounts.verifyPlain(address, password);
    if (user === null) {
      o.log.warn({ user: address }, "admin login failed");
      return c.json({ error: "wrong address or password" }, 401);
    }
    if (!(await stillAdmin(user))) return c.json({ error: `${user} is not an administrator (petrel user admin ${user} on)` }, 403);
    const s = sessions.create(user);
    o.log.info({ user }, "admin login");
    return c.json({ token: s.token, expiresAt: new Date(s.expiresAt).toISOString(), user }, 200);
  });

  app.openapi(createRoute({
    method: "post", path: "/api/logout", tags: ["session"], summary: "End this login", security: [{ bearer: [] }],
    responses: { 200: ok(z.object({ ok: z.boolean() }), "Logged out") },
  }), (c) => {
    const token = bearerToken(c.req.header("Authorization"));
    if (token) sessions.revoke(token);
    return c.json({ ok: true }, 200);
  });

  app.openapi(createRoute({
    method: "get", path: "/api/session", tags: ["session"], summary: "Who this request is", security: [{ bearer: [] }],
    responses: { 200: ok(z.object({ kind: z.enum(["token", "user"]), user: z.string().nullable() }), "The identity") },
  }), (c) => {
    const who: AdminIdentity = c.get("who");
    return c.json({ kind: who.kind, user: who.kind === "user" ? who.address : null }, 200);
  });

  app.openapi(createRoute({
    method: "get", path: "/api/status", tags: ["server"], summary: "The server: version, uptime, listeners, queue summary, certificates, the cluster's nodes", security: [{ bearer: [] }],
    responses: { 200: ok(serverStatusSchema, "As `petrel status --json`") },
  }), async (c) => c.json(await o.status(), 200));

  queueRoutes(app, o);
  accountRoutes(app, o, (address: string) => sessions.revokeUser(address));
  mailboxRoutes(app, o);
  activityRoutes(app, o);
  if (o.metrics) metricsRoute(app, o.metrics.registry);

  app.openAPIRegistry.registerPath({
    method: "get", path: "/api/openapi.json", tags: ["server"], summary: "This description (OpenAPI 3.1); needs no token",
    responses: { 200: { description: "The description", content: { "application/json": { schema: z.object({ openapi: z.string() }).loose() } } } },
  });
  app.doc31("/api/openapi.json", {
    openapi: "3.1.0",
    info: { title: API_TITLE, version: "1", description: "Operate a running Petrel: queue, accounts, local mailboxes, activity, message trace, live events, metrics." },
  });
  return app;
}
