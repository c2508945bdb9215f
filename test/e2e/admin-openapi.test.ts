/**
 * /api/openapi.json against the routes the server really serves: every
 * route is described, every described route exists, and a described GET
 * without parameters answers what its description says.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import { startWithAdmin } from "./fixtures/admin-client.ts";

test("every route is in the OpenAPI description and every described route exists", async () => {
  const r = await startWithAdmin();
  try {
    const doc = await r.call("GET", "/api/openapi.json", undefined, null);
    assert.equal(doc.status, 200);
    assert.equal(doc.json.openapi, "3.1.0");
    assert.equal(doc.json.components.securitySchemes.bearer.scheme, "bearer");
    const described = new Set<string>();
    for (const [path, ops] of Object.entries(doc.json.paths as Record<string, Record<string, unknown>>)) {
      for (const method of Object.keys(ops)) described.add(`${method.toUpperCase()} ${path}`);
    }
    const app = r.mta.admin.api!;
    const served = new Set(app.routes.filter((x) => x.method !== "ALL").map((x) => `${x.method} ${x.path.replace(/:(\w+)/g, "{$1}")}`));
    const undocumented = [...served].filter((x) => !described.has(x));
    const missing = [...described].filter((x) => !served.has(x));
    assert.deepEqual(undocumented, [], "routes without a description");
    assert.deepEqual(missing, [], "described routes that do not exist");
    // The dashboard's needs, named: a sample of what must be there.
    for (const route of ["GET /api/queue", "GET /api/queue/{id}", "POST /api/queue/{id}/hold", "DELETE /api/queue/{id}", "GET /api/trace/{id}", "GET /api/events",
      "GET /api/activity", "GET /api/mailboxes/{address}/messages/{id}/raw", "POST /api/users", "POST /api/login", "GET /metrics", "GET /api/openapi.json"]) {
      assert.ok(described.has(route), `${route} is described`);
    }
    // Every GET without path parameters answers 200 with the content type it is described with.
    for (const entry of described) {
      const [method, path] = entry.split(" ");
      if (method !== "GET" || path.includes("{") || path === "/api/events") continue;
      const res = await fetch(`http://127.0.0.1:${r.api}${path}`, { headers: { Authorization: `Bearer ${r.token}` } });
      assert.equal(res.status, 200, path);
      const types = Object.keys((doc.json.paths[path].get.responses["200"].content ?? {}) as Record<string, unknown>);
      const got = (res.headers.get("content-type") ?? "").split(";")[0];
      assert.ok(types.includes(got) || (got === "text/plain" && types.includes("text/plain")), `${path}: ${got} is one of ${types.join(", ")}`);
      await res.arrayBuffer();
    }
  } finally {
    await r.stop();
    await rm(r.dir, { recursive: true, force: true });
  }
});
