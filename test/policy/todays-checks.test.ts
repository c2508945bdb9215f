/**
 * Petrel's own checks, stage by stage with no socket (Postfix's smtpd_check
 * scripts are the model), built exactly as mta.ts builds them from a
 * config, over a real account store in a temporary directory.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseConfig } from "../../src/config/load.ts";
import { FileAccountStore } from "../../src/accounts/file-account-store.ts";
import { hashPassword } from "../../src/accounts/password.ts";
import { buildChecks } from "../../src/mta.ts";
import { ManualClock } from "../../src/mail/clock.ts";
import type { Config } from "../../src/config/schema.ts";
import { client, pipelineOf, runScript, silent } from "./harness.ts";

let dir: string;
let accounts: FileAccountStore;
let password: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "petrel-policy-"));
  password = await hashPassword("correct horse battery staple");
  accounts = new FileAccountStore({
    dataDir: dir,
    configDomains: ["example.test"],
    configUsers: [{ address: "alice@example.test", password, addresses: ["sales@example.test"] }],
  });
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function config(raw: Record<string, unknown> = {}): Config {
  return parseConfig({ hostname: "mx.example.test", dataDir: dir, domains: ["example.test"], authentication: { verify: false }, ...raw }, "test");
}

function harness(raw: Record<string, unknown> = {}, clock = new ManualClock()) {
  return pipelineOf(buildChecks(config(raw), { accounts, clock }), { clock });
}

test("relay: local recipients that exist, unknown ones (550 5.1.1), other domains only when authenticated (554 5.7.1)", async () => {
  await runScript(harness(), `
    client 192.0.2.1 mx
    connect                            -> ok
    ehlo client.test                   -> ok
    mail <someone@example.org>         -> ok
    rcpt <alice@example.test>          -> ok
    rcpt <Alice+tag@EXAMPLE.test>      -> ok
    rcpt <nobody@example.test>         -> 550 5.1.1 <nobody@example.test>: Recipient address rejected: no such user here
    rcpt <friend@elsewhere.test>       -> 554 5.7.1 <friend@elsewhere.test>: Relay access denied
    data Subject: hi                   -> accept
    close

    client 192.0.2.2 submission tls
    connect                            -> ok
    ehlo laptop.test                   -> ok
    auth alice@example.test            -> ok
    mail <alice@example.test>          -> ok
    rcpt <friend@elsewhere.test>       -> ok
    rcpt <nobody@example.test>         -> 550 5.1.1
  `);
});

test("relay: a lookup that fails is answered 451 4.3.0, never accepted", async () => {
  const broken = join(dir, "broken");
  await rm(broken, { recursive: true, force: true });
  const { mkdir } = await import("node:fs/promises");
  await mkdir(broken);
  await writeFile(join(broken, "accounts.json"), "{ this is not json");
  const store = new FileAccountStore({ dataDir: broken, configDomains: ["example.test"] });
  const h = pipelineOf(buildChecks(config(), { accounts: store }));
  await runScript(h, `
    connect                            -> ok
    helo client.test                   -> ok
    mail <a@example.org>               -> ok
    rcpt <alice@example.test>          -> 451 4.3.0 Error: temporary lookup failure, try again later
  `);
});

test("sender ownership on submission (553 5.7.1), the null sender allowed, not checked on mx, off when configured", async () => {
  const script = `
    client 192.0.2.3 submission tls
    connect                            -> ok
    ehlo laptop.test                   -> ok
    auth alice@example.test            -> ok
    mail <alice@example.test>          -> ok
    rset
    mail <sales@example.test>          -> ok
    rset
    mail <>                            -> ok
    rset
    mail <bob@example.test>            -> %BOB%
    close

    client 192.0.2.4 mx
    connect                            -> ok
    helo client.test                   -> ok
    mail <bob@example.test>            -> ok
  `;
  await runScript(harness(), script.replace("%BOB%", "553 5.7.1 <bob@example.test>: Sender address rejected: not owned by user alice@example.test"));
  await runScript(harness({ submission: { senderMustMatchLogin: false } }), script.replace("%BOB%", "ok"));
});

test("client limits: connections per client and in all at connect (the greeting-time 421s), released on close", async () => {
  const h = harness({ limits: { connectionsPerClient: 2, connections: 3 } });
  const open = async (address: string) => {
    const session = await h.pipeline.open(client(address), silent);
    assert.equal(await session.connect(), undefined, `${address} admitted`);
    return session;
  };
  const a = await open("192.0.2.20");
  const b = await open("192.0.2.20");
  await runScript(h, `
    client 192.0.2.20 mx
    connect  -> 421 4.7.0 Error: too many connections from your address
  `);
  const c = await open("192.0.2.21");
  await runScript(h, `
    client 192.0.2.22 mx
    connect  -> 421 4.3.2 Error: too many connections; try again later
  `);
  await a.close();
  await runScript(h, `
    client 192.0.2.20 mx
    connect  -> ok
  `);
  await b.close();
  await c.close();
});

test("client limits: AUTH failures end the session after authFailuresPerConnection; per client they ban the address until authBanTime passes", async () => {
  const clock = new ManualClock();
  const h = harness({ limits: { authFailuresPerConnection: 2, authFailuresPerClient: 3, authBanTime: 600 } }, clock);
  await runScript(h, `
    client 192.0.2.30 submission tls
    connect                  -> ok
    ehlo laptop.test         -> ok
    auth fail                -> ok
    auth fail                -> 421 4.7.0 Error: too many failed authentication attempts, closing connection
    close
    connect                  -> ok
    auth fail                -> 421 4.7.0
    close
    connect                  -> 421 4.7.0 Error: too many failed authentications from your address; try again later
    client 192.0.2.31 submission tls
    connect                  -> ok
  `);
  clock.advance(601_000);
  await runScript(h, `
    client 192.0.2.30 submission tls
    connect                  -> ok
    auth alice@example.test  -> ok
  `);
});

test("hop count: delivery.maxReceived Received: fields, ours included, are a loop (554 5.4.6)", async () => {
  const received = (n: number) => Array.from({ length: n }, (_, i) => `Received: from hop${i}.test`).join("\\r\\n");
  await runScript(harness({ delivery: { maxReceived: 5 } }), `
    connect                         -> ok
    helo client.test                -> ok
    mail <a@example.org>            -> ok
    rcpt <alice@example.test>       -> ok
    data ${received(3)}\\r\\nSubject: ok  -> accept
    mail <a@example.org>            -> ok
    rcpt <alice@example.test>       -> ok
    data ${received(4)}\\r\\nSubject: x   -> 554 5.4.6 Error: mail forwarding loop: too many hops (5 Received: fields, limit 5)
  `);
});
