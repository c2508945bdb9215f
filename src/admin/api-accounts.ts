/**
 * /api/domains, /api/users, /api/aliases: the account store through the
 * very methods `petrel domain|user|alias` call, with the same password
 * policy (`passwords:`) checked before a password is stored.
 */
import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import { checkPassword } from "../accounts/password-policy.ts";
import { accountCall, ApiError, errors, jsonBody, ok, type AdminApiOptions, type ApiEnv } from "./api-common.ts";

const security = [{ bearer: [] }];
const done = ok(z.object({ ok: z.boolean() }), "Done");

const userSchema = z.object({
  address: z.string(), quota: z.number().optional().openapi({ description: "Bytes" }), createdAt: z.number().optional(),
  source: z.enum(["config", "store"]).openapi({ description: "config: from the configuration file, read-only here" }), admin: z.boolean(),
}).openapi("User");

const pathParam = (name: string, example: string) => z.object({ [name]: z.string().openapi({ param: { name, in: "path" }, example }) });

export function accountRoutes(app: OpenAPIHono<ApiEnv>, o: AdminApiOptions, loggedOut: (address: string) => void): void {
  const policy = (password: string, address: string) => {
    const check = checkPassword(password, o.passwords(), address);
    if (!check.ok) throw new ApiError(422, `password refused: ${check.reason}`);
  };

  app.openapi(createRoute({
    method: "get", path: "/api/domains", tags: ["accounts"], security, summary: "Local domains",
    responses: { 200: ok(z.object({ domains: z.array(z.object({ domain: z.string(), source: z.enum(["config", "store"]) })) }), "Sorted by name") },
  }), async (c) => {
    const config = new Set(o.accounts.configDomains());
    const domains = await accountCall(() => o.accounts.listDomains());
    return c.json({ domains: domains.map((d) => ({ domain: d, source: config.has(d) ? "config" as const : "store" as const })) }, 200);
  });

  app.openapi(createRoute({
    method: "post", path: "/api/domains", tags: ["accounts"], security, summary: "Make a domain local (petrel domain add)",
    request: { body: jsonBody(z.object({ domain: z.string() })) },
    responses: { 200: done, ...errors(400, 409) },
  }), async (c) => {
    await accountCall(() => o.accounts.addDomain(c.req.valid("json").domain));
    return c.json({ ok: true }, 200);
  });

  app.openapi(createRoute({
    method: "delete", path: "/api/domains/{domain}", tags: ["accounts"], security, summary: "Remove a local domain (petrel domain remove); force also removes its users and aliases",
    request: { params: pathParam("domain", "example.org"), query: z.object({ force: z.enum(["true", "false"]).default("false") }) },
    responses: { 200: done, ...errors(400, 404, 409) },
  }), async (c) => {
    await accountCall(() => o.accounts.removeDomain(c.req.valid("param").domain, { force: c.req.valid("query").force === "true" }));
    return c.json({ ok: true }, 200);
  });

  app.openapi(createRoute({
    method: "get", path: "/api/users", tags: ["accounts"], security, summary: "Users, of one domain when asked",
    request: { query: z.object({ domain: z.string().optional() }) },
    responses: { 200: ok(z.object({ users: z.array(userSchema) }), "Sorted by address"), ...errors(400, 422) },
  }), async (c) => c.json({ users: await accountCall(() => o.accounts.listUsers(c.req.valid("query").domain)) }, 200));

  app.openapi(createRoute({
    method: "post", path: "/api/users", tags: ["accounts"], security, summary: "Add a user (petrel user add); the password policy applies",
    request: { body: jsonBody(z.object({ address: z.string(), password: z.string(), quota: z.number().int().min(0).optional(), admin: z.boolean().optional() })) },
    responses: { 200: ok(userSchema, "The new user"), ...errors(400, 409, 422) },
  }), async (c) => {
    const b = c.req.valid("json");
    policy(b.password, b.address);
    await accountCall(() => o.accounts.addUser(b.address, b.password, { ...(b.quota !== undefined ? { quota: b.quota } : {}), ...(b.admin ? { admin: true } : {}) }));
    return c.json((await o.accounts.getUser(b.address))!, 200);
  });

  app.openapi(createRoute({
    method: "get", path: "/api/users/{address}", tags: ["accounts"], security, summary: "One user",
    request: { params: pathParam("address", "alice@example.org") },
    responses: { 200: ok(userSchema, "The user"), ...errors(404) },
  }), async (c) => {
    const address = c.req.valid("param").address;
    const user = await o.accounts.getUser(address);
    if (!user) throw new ApiError(404, `no such user: ${address}`);
    return c.json(user, 200);
  });

  app.openapi(createRoute({
    method: "delete", path: "/api/users/{address}", tags: ["accounts"], security, summary: "Remove a user (petrel user remove); its Maildir stays",
    request: { params: pathParam("address", "alice@example.org") },
    responses: { 200: done, ...errors(400, 404, 409) },
  }), async (c) => {
    const address = c.req.valid("param").address;
    await accountCall(() => o.accounts.removeUser(address));
    loggedOut(address.trim().toLowerCase());
    return c.json({ ok: true }, 200);
  });

  app.openapi(createRoute({
    method: "put", path: "/api/users/{address}/password", tags: ["accounts"], security, summary: "Change a password (petrel user passwd); the password policy applies",
    request: { params: pathParam("address", "alice@example.org"), body: jsonBody(z.object({ password: z.string() })) },
    responses: { 200: done, ...errors(400, 404, 409, 422) },
  }), async (c) => {
    const address = c.req.valid("param").address;
    const { password } = c.req.valid("json");
    if (!(await o.accounts.getUser(address))) throw new ApiError(404, `no such user: ${address}`);
    policy(password, address);
    await accountCall(() => o.accounts.setPassword(address, password));
    return c.json({ ok: true }, 200);
  });

  app.openapi(createRoute({
    method: "put", path: "/api/users/{address}/admin", tags: ["accounts"], security, summary: "Let a user log in to this API, or no longer (petrel user admin ADDRESS on|off)",
    request: { params: pathParam("address", "alice@example.org"), body: jsonBody(z.object({ admin: z.boolean() })) },
    responses: { 200: done, ...errors(400, 404, 409) },
  }), async (c) => {
    const address = c.req.valid("param").address;
    const { admin } = c.req.valid("json");
    await accountCall(() => o.accounts.setAdmin(address, admin));
    if (!admin) loggedOut(address.trim().toLowerCase());
    return c.json({ ok: true }, 200);
  });

  app.openapi(createRoute({
    method: "get", path: "/api/aliases", tags: ["accounts"], security, summary: "Aliases (\"@domain\" is a catch-all)",
    responses: { 200: ok(z.object({ aliases: z.array(z.object({ source: z.string(), targets: z.array(z.string()).readonly() })) }), "Sorted by source") },
  }), async (c) => c.json({ aliases: await accountCall(() => o.accounts.listAliases()) }, 200));

  app.openapi(createRoute({
    method: "post", path: "/api/aliases", tags: ["accounts"], security, summary: "Add targets to an alias, made when new (petrel alias add)",
    request: { body: jsonBody(z.object({ source: z.string(), targets: z.array(z.string()).min(1) })) },
    responses: { 200: done, ...errors(400, 404, 409, 422) },
  }), async (c) => {
    const b = c.req.valid("json");
    await accountCall(() => o.accounts.addAlias(b.source, b.targets));
    return c.json({ ok: true }, 200);
  });

  app.openapi(createRoute({
    method: "delete", path: "/api/aliases/{source}", tags: ["accounts"], security, summary: "Remove one target of an alias, or the whole alias (petrel alias remove)",
    request: { params: pathParam("source", "team@example.org"), query: z.object({ target: z.string().optional() }) },
    responses: { 200: done, ...errors(400, 404) },
  }), async (c) => {
    await accountCall(() => o.accounts.removeAlias(c.req.valid("param").source, c.req.valid("query").target));
    return c.json({ ok: true }, 200);
  });
}
