/**
 * The rate limits, DNS lists and a plugin in the pipeline, built exactly as
 * mta.ts builds them from a config (buildChecks, loadConfiguredPlugins), and
 * driven by scripts with no socket: the order they are asked in, and the
 * runner's answer to a plugin that throws.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseConfig } from "../../src/config/load.ts";
import { ConfigError } from "../../src/config/config-error.ts";
import { FileAccountStore } from "../../src/accounts/file-account-store.ts";
import { buildChecks, loadConfiguredPlugins } from "../../src/mta.ts";
import { ManualClock } from "../../src/mail/clock.ts";
import { createResolver, type ClosableResolver } from "../../src/dns/resolver.ts";
import type { Config } from "../../src/config/schema.ts";
import { startDnsServer, type TestDnsServer } from "../support/dns-server.ts";
import { pipelineOf, runScript, silent } from "./harness.ts";

let dir: string;
let accounts: FileAccountStore;
let dns: TestDnsServer;
let resolver: ClosableResolver;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "petrel-limits-pipeline-"));
  accounts = new FileAccountStore({ dataDir: dir, configDomains: ["example.test"], configUsers: [] });
  await accounts.addAlias("@example.test", "postmaster@example.test");
  dns = await startDnsServer({ "bl.test": { SOA: {} }, "2.2.0.192.bl.test": { A: ["127.0.0.2"] } });
  resolver = createResolver({ servers: [dns.server] });
});

after(async () => {
  resolver.close();
  await dns.close();
  await rm(dir, { recursive: true, force: true });
});

function config(raw: Record<string, unknown> = {}): Config {
  return parseConfig({ hostname: "mx.example.test", dataDir: dir, domains: ["example.test"], authentication: { verify: false }, ...raw }, "test");
}

async function harness(raw: Record<string, unknown>) {
  const clock = new ManualClock();
  const c = config(raw);
  const builtIn = buildChecks(c, { accounts, clock, log: silent, resolver });
  const plugins = await loadConfiguredPlugins(c, { log: silent, clock, resolver, reserved: builtIn.map((x) => x.name) });
  return pipelineOf([...builtIn, ...plugins], { clock });
}

test("the order: rates, then DNS lists, then relay — a listed client learns nothing about recipients, every RCPT is counted", async () => {
  const h = await harness({ dnsbl: { sites: ["bl.test"] }, limits: { rates: { mx: { recipients: 3 } } } });
  assert.deepEqual(h.pipeline.checks.map((c) => c.name), ["client-limits", "rate-limits", "dnsbl", "sender-login", "relay", "hop-count"]);
  await runScript(h, `
    client 192.0.2.2 mx
    connect                 -> ok
    ehlo client.test        -> ok
    mail <a@example.org>    -> ok
    rcpt <x@example.test>   -> 554 5.7.1 Service unavailable; client [192.0.2.2] blocked using bl.test
    rcpt <x@elsewhere.test> -> 554 5.7.1 Service unavailable; client [192.0.2.2] blocked using bl.test
    rcpt <y@example.test>   -> 554 5.7.1
    rcpt <z@example.test>   -> 450 4.7.1 Error: too many recipients from 192.0.2.2; try again later
    close
    client 192.0.2.3 mx
    connect                 -> ok
    mail <a@example.org>    -> ok
    rcpt <x@elsewhere.test> -> 554 5.7.1 <x@elsewhere.test>: Relay access denied
    rcpt <x@example.test>   -> ok
  `);
});

test("a user's rate through the runner: the window slides with the pipeline's clock", async () => {
  const h = await harness({ limits: { rates: { user: { messages: 2, window: "10m" } } }, submission: { senderMustMatchLogin: false } });
  const message = `
    client 192.0.2.9 submission
    connect                      -> ok
    auth alice@example.test      -> ok
    mail <alice@example.test>    -> RESULT
    close`;
  await runScript(h, message.replace("RESULT", "ok"));
  await runScript(h, message.replace("RESULT", "ok"));
  await runScript(h, message.replace("RESULT", "450 4.7.1 Error: too much mail from alice@example.test; try again later"));
  h.clock.advance(20 * 60_000);
  await runScript(h, message.replace("RESULT", "ok"));
});

test("no rate and no list configured: those checks are not in the pipeline at all", async () => {
  const h = await harness({ limits: { rates: { user: { messages: 0, recipients: 0 } } } });
  assert.deepEqual(h.pipeline.checks.map((c) => c.name), ["client-limits", "sender-login", "relay", "hop-count"]);
});

test("a plugin is asked after the built-in checks; when it throws the runner answers 451 4.3.0 and the session goes on", async () => {
  const path = join(dir, "fragile.ts");
  await writeFile(path, `export default () => ({
    name: "fragile",
    open: () => ({
      rcpt(_s: unknown, _tx: unknown, to: { localPart: string }) { if (to.localPart === "boom") throw new Error("boom"); },
      message: () => ({ endOfData() { return Promise.reject(new Error("boom at the end")); } }),
    }),
  });\n`);
  const h = await harness({ plugins: [{ path }] });
  assert.equal(h.pipeline.checks.at(-1)?.name, "fragile");
  await runScript(h, `
    client 192.0.2.4 mx
    connect                   -> ok
    mail <a@example.org>      -> ok
    rcpt <boom@elsewhere.test> -> 554 5.7.1
    rcpt <boom@example.test>  -> 451 4.3.0 Error: temporary failure, try again later
    rcpt <ok@example.test>    -> ok
    data Subject: hi          -> 451 4.3.0 Error: temporary failure, try again later
    mail <a@example.org>      -> ok
  `);
});

test("a plugin that cannot load is a configuration error naming its entry", async () => {
  const c = config({ plugins: [{ path: join(dir, "fragile.ts") }, { path: join(dir, "fragile.ts") }] });
  await assert.rejects(
    loadConfiguredPlugins(c, { log: silent, clock: new ManualClock(), resolver, reserved: [] }),
    (err: unknown) => err instanceof ConfigError && err.path === "plugins[1].path" && /named "fragile", which another check already has/.test(err.message),
  );
});
