/**
 * admin: and metrics: in the configuration — the defaults, and the refusal
 * to serve either without authentication on an address other machines can
 * reach (a configuration error naming the key; `petrel serve` exits 78).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseConfig, parseConfigText } from "../../src/config/load.ts";
import { configError } from "./expect-config-error.ts";
import { runPetrel, tempDir, writeConfig } from "../e2e/fixtures/robust-helpers.ts";

test("defaults: the API on 127.0.0.1:8025 with a token, metrics on it, a week of trace", () => {
  const c = parseConfig({}, "test", { baseDir: "/srv/petrel" });
  assert.deepEqual(c.admin, {
    enabled: true, listen: { address: "127.0.0.1", port: 8025 }, auth: "token", sessionLifetime: 12 * 3600_000,
    traceRetention: 7 * 24 * 3600_000, traceMaxSize: 1024 ** 3,
  });
  assert.deepEqual(c.metrics, { enabled: true, auth: "token" });
  assert.equal(parseConfig({ admin: { tokenFile: "secrets/admin.token" } }, "test", { baseDir: "/srv/petrel" }).admin.tokenFile, "/srv/petrel/secrets/admin.token");
});

test("no authentication is refused off loopback, for the API and for metrics; allowed on loopback", () => {
  const api = configError(() => parseConfigText("admin:\n  listen: { address: 0.0.0.0 }\n  auth: none\n", "petrel.yaml"));
  assert.equal(api.path, "admin.auth");
  assert.match(api.message, /^petrel\.yaml:3:3: admin\.auth: got "none"; expected "token" when admin\.listen\.address is not a loopback address \(0\.0\.0\.0\)/);
  const metrics = configError(() => parseConfig({ metrics: { listen: { address: "::", port: 9154 }, auth: "none" } }, "test"));
  assert.equal(metrics.path, "metrics.auth");
  // Metrics on the admin listener inherit its address.
  assert.equal(configError(() => parseConfig({ admin: { listen: { address: "192.0.2.10" } }, metrics: { auth: "none" } }, "test")).path, "metrics.auth");
  assert.equal(parseConfig({ admin: { auth: "none", listen: { address: "::1" } }, metrics: { auth: "none", listen: { address: "127.0.0.2", port: 9154 } } }, "test").metrics.auth, "none");
});

test("petrel serve with an unauthenticated API on a public address: exit 78, nothing started", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const path = await writeConfig(dir, { dataDir: `${dir}/data`, listeners: [{ address: "127.0.0.1", port: 0, role: "mx" }], admin: { listen: { address: "0.0.0.0", port: 0 }, auth: "none" } });
    const p = runPetrel(["serve", "--config", path]);
    const exit = await p.exited;
    assert.equal(exit.code, 78, p.stderr());
    assert.match(p.stderr(), /admin\.auth: got "none"; expected "token"/);
  } finally {
    await cleanup();
  }
});
