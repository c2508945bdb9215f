/**
 * Plugins: modules loaded from the paths in `plugins:`, their factories
 * given a narrow context and their options, and every way loading can go
 * wrong reported as one PluginLoadError naming the entry.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { ManualClock } from "../../src/mail/clock.ts";
import { createResolver, type ClosableResolver } from "../../src/dns/resolver.ts";
import { loadPlugins, PluginLoadError, type PluginEntry, type PluginHost } from "../../src/policy/plugins.ts";
import type { PluginContext } from "../../src/policy/plugin-api.ts";
import refuseDomains from "../../contrib/plugins/refuse-domains.ts";
import { startDnsServer, type TestDnsServer } from "../support/dns-server.ts";
import { client, mailbox, memoryLogger, noParams, session } from "./stage-facts.ts";
import { replyText } from "../../src/smtp/reply.ts";

const CONTRIB = resolve(import.meta.dirname, "../../contrib/plugins/refuse-domains.ts");
let dir: string;
let dns: TestDnsServer;
let resolver: ClosableResolver;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "petrel-plugins-"));
  dns = await startDnsServer({ "policy.example": { TXT: ["v=test1"] } });
  resolver = createResolver({ servers: [dns.server] });
});

after(async () => {
  resolver.close();
  await dns.close();
  await rm(dir, { recursive: true, force: true });
});

function host(over: Partial<PluginHost> = {}) {
  const { log, lines } = memoryLogger();
  return { lines, host: { log, resolver, clock: new ManualClock(), hostname: "mx.example.test", ...over } satisfies PluginHost };
}

let files = 0;
async function pluginFile(source: string, ext = "ts"): Promise<string> {
  const path = join(dir, `plugin-${++files}.${ext}`);
  await writeFile(path, source);
  return path;
}

async function loadError(entries: PluginEntry[], over: Partial<PluginHost> = {}): Promise<PluginLoadError> {
  try {
    await loadPlugins(entries, host(over).host);
  } catch (err) {
    assert.ok(err instanceof PluginLoadError, `a PluginLoadError, not ${String(err)}`);
    return err;
  }
  assert.fail("loading should have failed");
}

async function mailFrom(check: Awaited<ReturnType<typeof loadPlugins>>[number], from: string | null): Promise<string> {
  const c = client("192.0.2.1");
  const r = await (await check.open(c)).mail?.(session(c), mailbox(from === null ? "<>" : `<${from}>`), noParams);
  const v = r?.verdict;
  return v && (v.action === "reject" || v.action === "tempfail") ? `${replyText(v.reply)} (${r?.reason})` : "accept";
}

test("contrib/plugins/refuse-domains.ts: refuses senders at the listed domains and below, with 550 5.7.1", async () => {
  const { host: h, lines } = host();
  const [check] = await loadPlugins([{ path: CONTRIB, options: { domains: ["Spam.Example", "bulk.example"] } }], h);
  assert.equal(check.name, "refuse-domains");
  assert.equal(await mailFrom(check, "x@spam.example"), "550 5.7.1 <x@spam.example>: Sender address rejected: access denied (sender domain spam.example is refused (listed: spam.example))");
  assert.match(await mailFrom(check, "x@news.bulk.example"), /^550 5\.7\.1 <x@news\.bulk\.example>: .*listed: bulk\.example/);
  assert.equal(await mailFrom(check, "x@example.org"), "accept");
  assert.equal(await mailFrom(check, "x@notspam.example"), "accept");
  assert.equal(await mailFrom(check, null), "accept", "bounces are never refused");
  assert.deepEqual(lines.map((l) => [l.plugin, l.msg]), [["refuse-domains.ts", "refusing mail from the listed sender domains"]]);

  const exact = await loadPlugins([{ path: CONTRIB, options: { domains: ["bulk.example"], subdomains: false } }], host().host);
  assert.equal(await mailFrom(exact[0], "x@news.bulk.example"), "accept");
  assert.match(await mailFrom(exact[0], "x@bulk.example"), /^550 /);
  // The same module imported statically: its type is the CheckFactory of the API.
  assert.equal(typeof refuseDomains, "function");
});

test("bad options stop loading with the plugin's own message", async () => {
  const err = await loadError([{ path: CONTRIB, options: { domains: "spam.example" } }]);
  assert.equal(err.index, 0);
  assert.equal(err.reason, 'its factory failed: options.domains must be a list of domain names such as ["spam.example"]');
});

test("the context is narrow: a logger child, the resolver's lookups (through the real resolver), the clock, the host name", async () => {
  const path = await pluginFile(`
    export default function (context: any, options: unknown) {
      (globalThis as any).__pluginSeen = { context, options };
      return { name: "seen", open: () => ({}) };
    }
  `);
  const clock = new ManualClock(1_000_000);
  const { host: h, lines } = host({ clock });
  await loadPlugins([{ path, options: { a: 1 } }], h);
  const { context, options } = (globalThis as { __pluginSeen?: { context: PluginContext; options: unknown } }).__pluginSeen!;
  assert.deepEqual(options, { a: 1 });
  assert.deepEqual(Object.keys(context).sort(), ["clock", "hostname", "log", "resolver"]);
  assert.deepEqual(Object.keys(context.resolver).sort(), ["resolveAddresses", "resolveMx", "resolveRecords", "resolveTxt"]);
  assert.equal("close" in context.resolver, false);
  assert.deepEqual(await context.resolver.resolveTxt("policy.example"), { kind: "txt", records: ["v=test1"] });
  const rr = await context.resolver.resolveRecords("policy.example", "TXT");
  assert.deepEqual(rr, { kind: "records", records: [["v=test1"]] });
  assert.equal(context.clock.now(), 1_000_000);
  assert.equal(context.hostname, "mx.example.test");
  assert.ok(Object.isFrozen(context));
  context.log.warn({ x: 1 }, "from the plugin");
  assert.equal(lines.at(-1)?.plugin, path.split("/").at(-1));
});

test("the loaded check is a frozen wrapper: its name and `after` cannot change once checked; open keeps its this", async () => {
  const path = await pluginFile(`
    export default () => ({
      name: "stateful", after: ["spf"], prefix: "seen:",
      open(client: { address: string }) { return { connect: () => ({ reason: this.prefix + client.address }) }; },
    });
  `);
  const [check] = await loadPlugins([{ path }], host().host);
  assert.ok(Object.isFrozen(check));
  assert.deepEqual(check.after, ["spf"]);
  const s = await check.open(client("192.0.2.9"));
  assert.deepEqual(await s.connect?.(), { reason: "seen:192.0.2.9" });
});

test("JavaScript modules and async factories load too", async () => {
  const path = await pluginFile(`export default async function (ctx) { await new Promise((r) => setImmediate(r)); return { name: "js-" + ctx.hostname.split(".")[0], open() { return {}; } }; }`, "mjs");
  const [check] = await loadPlugins([{ path }], host().host);
  assert.equal(check.name, "js-mx");
});

test("every way loading fails is a PluginLoadError naming the entry", async () => {
  const missing = join(dir, "nope.ts");
  assert.match((await loadError([{ path: missing }])).reason, /^cannot be loaded: Cannot find module .*nope\.ts.*\(ERR_MODULE_NOT_FOUND\)$/);
  const syntax = await pluginFile("export default function ( {");
  assert.match((await loadError([{ path: syntax }])).reason, /^cannot be loaded: /);
  const enumPlugin = await pluginFile("enum Color { Red }\nexport default () => ({ name: 'e', open: () => ({}) });");
  assert.match((await loadError([{ path: enumPlugin }])).reason, /cannot be loaded: .*only erasable syntax, no enums/);
  const throwsAtImport = await pluginFile("throw new Error('broken at import');");
  assert.equal((await loadError([{ path: throwsAtImport }])).reason, "cannot be loaded: broken at import");
  const noDefault = await pluginFile("export const factory = () => ({});");
  assert.match((await loadError([{ path: noDefault }])).reason, /^has no default export that is a function/);
  const throws = await pluginFile("export default () => { throw new Error('no database'); };");
  assert.equal((await loadError([{ path: throws }])).reason, "its factory failed: no database");
  const rejects = await pluginFile("export default async () => { throw new TypeError('later'); };");
  assert.equal((await loadError([{ path: rejects }])).reason, "its factory failed: later");
  const notCheck = await pluginFile("export default () => 42;");
  assert.equal((await loadError([{ path: notCheck }])).reason, "its factory did not return a Check: got number");
  const badName = await pluginFile("export default () => ({ name: 'Has Spaces', open() { return {}; } });");
  assert.match((await loadError([{ path: badName }])).reason, /its name must be a string of lower-case letters.*"Has Spaces"/);
  const noOpen = await pluginFile("export default () => ({ name: 'x' });");
  assert.equal((await loadError([{ path: noOpen }])).reason, "its factory did not return a Check: it has no open(client) method");
  const badAfter = await pluginFile("export default () => ({ name: 'x', after: 'spf', open() { return {}; } });");
  assert.equal((await loadError([{ path: badAfter }])).reason, "its factory did not return a Check: its `after` must be a list of check names");
});

test("a factory that never answers stops loading after loadTimeout", async () => {
  const path = await pluginFile("export default () => { (globalThis as any).__factoryCalled(); return new Promise(() => {}); };");
  const called = new Promise<void>((r) => ((globalThis as { __factoryCalled?: () => void }).__factoryCalled = r));
  const clock = new ManualClock();
  const pending = loadPlugins([{ path }], host({ clock, loadTimeout: 5000 }).host).catch((e: unknown) => e);
  await called;
  clock.advance(4999);
  clock.advance(1);
  const err = await pending;
  assert.ok(err instanceof PluginLoadError);
  assert.equal(err.reason, "its factory failed: no answer within 5 s");
});

test("check names are unique: a plugin cannot take a built-in check's name or another plugin's", async () => {
  const err = await loadError([{ path: CONTRIB, options: { domains: ["a.example"] } }], { reserved: ["refuse-domains"] });
  assert.match(err.reason, /named "refuse-domains", which another check already has/);
  const twice = await loadError([
    { path: CONTRIB, options: { domains: ["a.example"] } },
    { path: CONTRIB, options: { domains: ["b.example"] } },
  ]);
  assert.equal(twice.index, 1);
});

test("the README shows contrib/plugins/refuse-domains.ts as it is (but for its header comment)", async () => {
  const { readFile } = await import("node:fs/promises");
  const readme = await readFile(resolve(import.meta.dirname, "../../README.md"), "utf8");
  const shown = /`contrib\/plugins\/refuse-domains\.ts`, which refuses[^\n]*\n\n```ts\n([\s\S]*?)```/.exec(readme)?.[1];
  const source = await readFile(CONTRIB, "utf8");
  assert.equal(shown, source.slice(source.indexOf("import type")));
});
