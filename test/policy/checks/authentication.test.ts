/**
 * SPF, DKIM, ARC and DMARC as checks of the policy pipeline, built as mta.ts builds them from a
 * config, over a real account store and Petrel's resolver on a loopback DNS server: the content
 * streams through the observers as the intake feeds them (our Received: field first), the
 * runner joins the results into one Authentication-Results field, and the replies are exact.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseConfig } from "../../../src/config/load.ts";
import { FileAccountStore } from "../../../src/accounts/file-account-store.ts";
import { buildChecks } from "../../../src/mta.ts";
import { ManualClock } from "../../../src/mail/clock.ts";
import type { ListenerRole, Mailbox } from "../../../src/mail/envelope.ts";
import { DkimSigner } from "../../../src/mailauth/dkim-sign.ts";
import type { SigningKeys } from "../../../src/mailauth/signing-keys.ts";
import type { MessageDecision } from "../../../src/policy/merge.ts";
import type { TransactionFacts } from "../../../src/policy/check.ts";
import { HeaderSection } from "../../../src/smtp/header-section.ts";
import { replyText } from "../../../src/smtp/reply.ts";
import { createResolver, type ClosableResolver } from "../../../src/dns/resolver.ts";
import { startDnsServer, type TestDnsServer } from "../../support/dns-server.ts";
import { dkimpyArcSign, keyZone, testKey, txtStrings } from "../../mailauth/helpers.ts";
import { AUTHSERV_ID, client, mailbox, noParams, pipelineOf, silent } from "../harness.ts";
import { bTag } from "../../support/dkim-b-tag.ts";

const aRsa = testKey("a.test", "s1", "rsa");
const aEd = testKey("a.test", "s2", "ed25519");
const fwdKey = testKey("fwd.test", "arc", "rsa");
const localKey = testKey("example.test", "sel", "rsa");
const zone = {
  ...keyZone([aRsa, aEd, fwdKey, localKey]),
  "a.test": { TXT: ["v=spf1 ip4:192.0.2.10 -all"] },
  "_dmarc.a.test": { TXT: ["v=DMARC1; p=reject"] },
  "q.test": { TXT: ["v=spf1 ip4:192.0.2.10 -all"] },
  "_dmarc.q.test": { TXT: ["v=DMARC1; p=quarantine"] },
  "none.test": { TXT: ["v=spf1 ip4:192.0.2.10 -all"] },
  "_dmarc.none.test": { TXT: ["v=DMARC1; p=none"] },
  "perm.test": { TXT: ["v=spf1 ip4:192.0.2.10 frobnicate:x -all"] },
  "temp.test": { TXT: ["v=spf1 -all"] },
  "_dmarc.temp.test": { TXT: ["v=DMARC1; p=reject"] },
  // example.test is local: it publishes SPF and a key, no DMARC record.
  "example.test": { TXT: ["v=spf1 ip4:192.0.2.20 -all"] },
  "_dmarc.hosted.test": { TXT: [txtStrings("v=DMARC1; p=none")] },
};

let dir: string;
let dns: TestDnsServer;
let resolver: ClosableResolver;
let accounts: FileAccountStore;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "petrel-auth-checks-"));
  dns = await startDnsServer(zone);
  dns.setBehaviour("temp.test", "servfail");
  dns.setBehaviour("_dmarc.temp.test", "servfail");
  dns.setBehaviour("broken.test", "servfail");
  dns.setBehaviour("_dmarc.broken.test", "servfail");
  resolver = createResolver({ servers: [dns.server], timeout: 500, tries: 1, failureTtl: 0 });
  accounts = new FileAccountStore({ dataDir: dir, configDomains: ["example.test", "hosted.test", "other.test", "broken.test"] });
  await accounts.addUser("bob@example.test", "bob-password-123");
  await accounts.addUser("carol@other.test", "carol-password-12");
  await accounts.addAlias("list@example.test", "someone@elsewhere.test");
});

after(async () => {
  resolver?.close();
  await dns?.close();
  await rm(dir, { recursive: true, force: true });
});

/** Keys that can seal for example.test (only canSeal is asked of them here). */
const sealing = { sealingKeyFor: (d: string) => (d === "example.test" ? localKey : undefined), keysFor: () => [] } as unknown as SigningKeys;

function harness(authentication: Record<string, unknown> = {}) {
  const config = parseConfig({
    hostname: AUTHSERV_ID, dataDir: dir, domains: ["example.test"],
    authentication: { ignoreClients: [], ...authentication },
  }, "test");
  const clock = new ManualClock(Date.UTC(2026, 0, 1));
  return pipelineOf(buildChecks(config, { accounts, clock, log: silent, resolver, signingKeys: sealing }), { clock });
}

const RECEIVED = `Received: from client.test (client.test [192.0.2.10])\r\n\tby ${AUTHSERV_ID} (Petrel) with ESMTP id Q1; Thu, 1 Jan 2026 00:00:00 +0000\r\n`;

function message(from: string, subject = "Report"): string {
  return `From: Alice <${from}>\r\nTo: bob@example.test\r\nSubject: ${subject}\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\nMessage-ID: <m1@a.test>\r\n\r\nHello Bob,\r\nthe figures.\r\n`;
}

async function signed(text: string, keys = [aRsa, aEd]): Promise<string> {
  const s = new DkimSigner(keys, { now: () => Date.UTC(2026, 0, 1) });
  await s.write(Buffer.from(text));
  return (await s.end()) + text;
}

interface Attempt {
  readonly ip?: string;
  readonly role?: ListenerRole;
  readonly helo?: string;
  readonly mailFrom: string;
  readonly to?: readonly string[];
  readonly content?: string;
  readonly authUser?: string;
}

/** One SMTP transaction through the pipeline: the refusal at MAIL, or the decision at the end of data. */
async function attempt(h: ReturnType<typeof harness>, a: Attempt): Promise<{ mail?: string; decision?: MessageDecision }> {
  const session = await h.pipeline.open(client(a.ip ?? "192.0.2.10", a.role ?? "mx"), silent);
  try {
    assert.equal(await session.connect(), undefined);
    const facts = { client: session.client, helo: a.helo ?? "client.test", esmtp: true, tls: null, authUser: a.authUser ?? null };
    assert.equal(await session.helo(facts, facts.helo), undefined);
    const from = mailbox(a.mailFrom);
    const refused = await session.mail(facts, from, noParams);
    if (refused) return { mail: replyText(refused) };
    const tx: { mailFrom: Mailbox | null; mailParams: typeof noParams; recipients: { mailbox: Mailbox; params: object }[]; queueId: string } = {
      mailFrom: from, mailParams: noParams, recipients: [], queueId: "Q1",
    };
    for (const to of a.to ?? ["bob@example.test"]) {
      const box = mailbox(`<${to}>`)!;
      assert.equal(await session.rcpt(facts, tx as TransactionFacts, box, {}), undefined);
      tx.recipients.push({ mailbox: box, params: {} });
    }
    const m = await session.data(facts, tx as TransactionFacts);
    const content = Buffer.from(RECEIVED + (a.content ?? message(a.mailFrom.slice(1, -1))));
    // As the intake streams it: in pieces, the header section among them.
    for (let i = 0; i < content.length; i += 100) await m.observe?.(content.subarray(i, i + 100));
    const header = new HeaderSection({ sizeLimit: 1 << 20, collect: true });
    header.feed(content);
    header.finish();
    return { decision: await m.endOfData(header.collected) };
  } finally {
    await session.close();
  }
}

function accepted(d: MessageDecision | undefined) {
  assert.ok(d && d.action === "accept", d && d.action === "refuse" ? replyText(d.reply) : String(d?.action));
  return d.decided;
}

function refusal(d: MessageDecision | undefined): string {
  assert.ok(d && d.action === "refuse", `expected a refusal, got ${d?.action}`);
  return replyText(d.reply);
}

/** The one Authentication-Results field, unfolded: "authserv-id; resinfo; …". */
function authResults(d: MessageDecision | undefined): string {
  const fields = accepted(d).prepend.filter((f) => f.name === "Authentication-Results");
  assert.equal(fields.length, 1);
  return fields[0].value.replace(/\r\n\t/g, " ");
}

test("a message signed with rsa and ed25519 from a permitted address: one Authentication-Results field, every verdict pass, nothing enforced", async () => {
  const content = await signed(message("alice@a.test"));
  const [rsaSig, edSig] = content.split(/\r\n(?=DKIM-Signature)/);
  const { decision } = await attempt(harness(), { mailFrom: "<alice@a.test>", content });
  const d = accepted(decision);
  assert.equal(
    authResults(decision),
    `${AUTHSERV_ID}; ` +
      `spf=pass (${AUTHSERV_ID}: domain of alice@a.test designates 192.0.2.10 as permitted sender) smtp.mailfrom=a.test; ` +
      `dkim=pass header.d=a.test header.i=@a.test header.s=s1 header.a=rsa-sha256 header.b=${bTag(rsaSig)}; ` +
      `dkim=pass header.d=a.test header.i=@a.test header.s=s2 header.a=ed25519-sha256 header.b=${bTag(edSig)}; ` +
      `arc=none smtp.remote-ip=192.0.2.10; ` +
      `dmarc=pass (p=REJECT arc=none) policy.dmarc=reject header.from=a.test`,
  );
  assert.equal(d.prepend[1].name, "Received-SPF");
  assert.match(d.prepend[1].value, /^pass \(mx\.example\.test: domain of alice@a\.test designates 192\.0\.2\.10 as permitted sender\) client-ip=192\.0\.2\.10;/);
  assert.equal(d.folder, undefined);
  assert.equal(d.arcSeal, undefined);
});

test("a forged From of a p=reject domain is refused at the end of data with 550 5.7.1 and the reason; a client in exceptions is not", async () => {
  const h = harness();
  const { decision } = await attempt(h, { ip: "192.0.2.99", mailFrom: "<alice@a.test>" });
  assert.equal(refusal(decision), "550 5.7.1 Message rejected: the DMARC policy of a.test is reject, and this message passed neither SPF nor DKIM for a.test");
  // A tampered signature is no better than none.
  const tampered = (await signed(message("alice@a.test"))).replace("the figures", "the new bank account");
  assert.equal(refusal((await attempt(h, { ip: "192.0.2.99", mailFrom: "<alice@a.test>", content: tampered })).decision), "550 5.7.1 Message rejected: the DMARC policy of a.test is reject, and this message passed neither SPF nor DKIM for a.test");

  const spared = await attempt(harness({ exceptions: ["192.0.2.96/30"] }), { ip: "192.0.2.99", mailFrom: "<alice@a.test>" });
  assert.match(authResults(spared.decision), /; spf=fail .*; dkim=none; arc=none smtp\.remote-ip=192\.0\.2\.99; dmarc=fail \(p=REJECT arc=none\) policy\.dmarc=reject header\.from=a\.test$/);
  // enforce: false records the failure and refuses nothing; per recipient domain as well.
  accepted((await attempt(harness({ dmarc: { enforce: false } }), { ip: "192.0.2.99", mailFrom: "<alice@a.test>" })).decision);
  const perDomain = harness({ domains: { "other.test": { dmarc: { enforce: false } } } });
  accepted((await attempt(perDomain, { ip: "192.0.2.99", mailFrom: "<alice@a.test>", to: ["carol@other.test"] })).decision);
  // A message for both domains is refused only when every recipient's domain enforces.
  accepted((await attempt(perDomain, { ip: "192.0.2.99", mailFrom: "<alice@a.test>", to: ["bob@example.test", "carol@other.test"] })).decision);
  assert.match(refusal((await attempt(perDomain, { ip: "192.0.2.99", mailFrom: "<alice@a.test>" })).decision), /^550 5\.7\.1 /);
});

test("p=quarantine: into the junk folder, or only X-Spam-Flag: YES, as configured", async () => {
  const folder = accepted((await attempt(harness(), { ip: "192.0.2.99", mailFrom: "<alice@q.test>" })).decision);
  assert.equal(folder.folder, "Junk");
  assert.equal(folder.hold, undefined);
  const renamed = accepted((await attempt(harness({ dmarc: { junkFolder: "Spam" } }), { ip: "192.0.2.99", mailFrom: "<alice@q.test>" })).decision);
  assert.equal(renamed.folder, "Spam");
  const header = accepted((await attempt(harness({ dmarc: { quarantine: "header" } }), { ip: "192.0.2.99", mailFrom: "<alice@q.test>" })).decision);
  assert.equal(header.folder, undefined);
  assert.deepEqual(header.prepend.find((f) => f.name === "X-Spam-Flag"), { name: "X-Spam-Flag", value: "YES" });
  // The same message from a permitted address passes and stays in the inbox.
  assert.equal(accepted((await attempt(harness(), { mailFrom: "<alice@q.test>" })).decision).folder, undefined);
});

test("SPF at the pipeline: a fail is refused at MAIL (550 5.7.23) only with rejectFail; temperror and permerror never are", async () => {
  const strict = harness({ spf: { rejectFail: true } });
  assert.deepEqual(await attempt(strict, { ip: "192.0.2.99", mailFrom: "<alice@none.test>" }), {
    mail: "550 5.7.23 <alice@none.test>: SPF check failed: 192.0.2.99 may not send mail for none.test",
  });
  // Not refused without rejectFail: DMARC (p=none) decides, and the fail is recorded.
  const lenient = await attempt(harness(), { ip: "192.0.2.99", mailFrom: "<alice@none.test>" });
  assert.match(authResults(lenient.decision), /; spf=fail \(mx\.example\.test: domain of alice@none\.test does not designate 192\.0\.2\.99 as permitted sender\) smtp\.mailfrom=none\.test;/);
  // An exception is not refused at MAIL either.
  assert.equal((await attempt(harness({ spf: { rejectFail: true }, exceptions: ["192.0.2.99"] }), { ip: "192.0.2.99", mailFrom: "<alice@none.test>" })).mail, undefined);

  // SERVFAIL: temperror, not refused (even with rejectFail); DMARC's lookup fails too: accepted, recorded.
  const temp = await attempt(strict, { ip: "192.0.2.99", mailFrom: "<alice@temp.test>", content: message("alice@none.test") });
  assert.match(authResults(temp.decision), /; spf=temperror .*smtp\.mailfrom=temp\.test;/);
  // A syntax error in the record: permerror, not refused.
  const perm = await attempt(strict, { mailFrom: "<alice@perm.test>", content: message("alice@none.test") });
  assert.match(authResults(perm.decision), /; spf=permerror .*smtp\.mailfrom=perm\.test;/);
  const received = accepted(perm.decision).prepend.find((f) => f.name === "Received-SPF");
  assert.match(received?.value ?? "", /^permerror /);

  // A bounce (null reverse-path) is checked as postmaster@HELO.
  const bounce = await attempt(harness(), { mailFrom: "<>", helo: "a.test", content: message("mailer-daemon@a.test") });
  assert.match(authResults(bounce.decision), /; spf=pass .*smtp\.helo=a\.test;/);
});

test("a DMARC lookup that fails (SERVFAIL) for a p=reject domain is recorded as temperror, never a refusal", async () => {
  const { decision } = await attempt(harness(), { ip: "192.0.2.99", mailFrom: "<alice@elsewhere.test>", content: message("alice@temp.test") });
  assert.match(authResults(decision), /; dmarc=temperror header\.from=temp\.test$/);
});

test("spoofing a local domain: refused without a DMARC record or with p=none, unless SPF or DKIM passes for it; localDomains: policy leaves it to the record", async () => {
  const h = harness();
  const spoofed = "550 5.7.1 Message rejected: example.test is a domain of this server; mail from it must be authenticated (SMTP AUTH) or pass SPF or DKIM for it";
  // example.test publishes no DMARC record.
  assert.equal(refusal((await attempt(h, { ip: "192.0.2.99", mailFrom: "<ceo@example.test>" })).decision), spoofed);
  // The envelope sender elsewhere makes no difference: the reader sees From.
  assert.equal(refusal((await attempt(h, { ip: "192.0.2.99", mailFrom: "<bulk@none.test>", content: message("ceo@example.test") })).decision), spoofed);
  // A subdomain of a local domain, and a local domain whose record says p=none.
  assert.match(refusal((await attempt(h, { ip: "192.0.2.99", mailFrom: "<x@none.test>", content: message("ceo@mail.example.test") })).decision), /^550 5\.7\.1 Message rejected: mail\.example\.test is a domain of this server/);
  assert.match(refusal((await attempt(h, { ip: "192.0.2.99", mailFrom: "<x@none.test>", content: message("ceo@hosted.test") })).decision), /^550 5\.7\.1 Message rejected: hosted\.test is a domain/);
  // A local domain whose DNS does not answer: not known to fail, so not refused for good.
  assert.equal(refusal((await attempt(h, { ip: "192.0.2.99", mailFrom: "<ceo@broken.test>" })).decision),
    "451 4.4.3 Temporary authentication failure: the DNS did not answer for broken.test, try again later");
  // Its own SPF passes (a server the domain names), or its key signs: delivered.
  accepted((await attempt(h, { ip: "192.0.2.20", mailFrom: "<ceo@example.test>" })).decision);
  accepted((await attempt(h, { ip: "192.0.2.99", mailFrom: "<bulk@none.test>", content: await signed(message("ceo@example.test"), [localKey]) })).decision);
  // Logged in, or from a client Petrel ignores (loopback by default): not checked at all.
  accepted((await attempt(h, { ip: "192.0.2.99", mailFrom: "<ceo@example.test>", authUser: "bob@example.test" })).decision);
  const ignoring = harness({ ignoreClients: ["192.0.2.99"] });
  const ignored = accepted((await attempt(ignoring, { ip: "192.0.2.99", mailFrom: "<ceo@example.test>" })).decision);
  assert.deepEqual(ignored.prepend, [], "no Authentication-Results, no Received-SPF");
  // Exceptions, and the choice to follow only the domain's record.
  accepted((await attempt(harness({ exceptions: ["192.0.2.99"] }), { ip: "192.0.2.99", mailFrom: "<ceo@example.test>" })).decision);
  accepted((await attempt(harness({ dmarc: { localDomains: "policy" } }), { ip: "192.0.2.99", mailFrom: "<ceo@example.test>" })).decision);
  // Submission is signed, not verified: the checks are not asked there.
  accepted((await attempt(h, { role: "submission", ip: "192.0.2.99", mailFrom: "<bob@example.test>", authUser: "bob@example.test", content: message("ceo@example.test") })).decision);
});

test("a forged Authentication-Results claiming our authserv-id is deleted; another server's is kept", async () => {
  const content = `Authentication-Results: ${AUTHSERV_ID}; dmarc=pass header.from=a.test\r\nAuthentication-Results: other.test; spf=pass\r\n` + message("alice@a.test");
  const d = accepted((await attempt(harness(), { mailFrom: "<alice@a.test>", content })).decision);
  assert.deepEqual(d.headerEdits, [{ op: "delete", name: "Authentication-Results", index: 1 }]);
  assert.equal(d.prepend.filter((f) => f.name === "Authentication-Results").length, 1);
});

test("ARC: a list that breaks DKIM and seals is trusted only when it is in arc.trustedSealers and recorded dmarc=pass", async () => {
  // a.test's message, changed by the list (a Subject tag), sealed by fwd.test with what it saw.
  const original = await signed(message("alice@a.test"));
  const listed = original.replace("Subject: Report", "Subject: [list] Report");
  const sealedWith = async (dmarc: string) => {
    const atList = `Authentication-Results: fwd.test; spf=pass smtp.mailfrom=a.test; dkim=pass header.d=a.test; dmarc=${dmarc} header.from=a.test\r\n${listed}`;
    return (await dkimpyArcSign(atList, fwdKey, "fwd.test")) + atList;
  };
  const viaList = await sealedWith("pass");
  const from = { ip: "192.0.2.50", mailFrom: "<list-bounces@fwd.test>", content: viaList };
  assert.match(refusal((await attempt(harness(), from)).decision), /^550 5\.7\.1 Message rejected: the DMARC policy of a\.test is reject/);
  const trusted = await attempt(harness({ arc: { trustedSealers: ["fwd.test"] } }), from);
  assert.match(
    authResults(trusted.decision),
    /; dkim=fail .*; arc=pass \(i=1 spf=pass dkim=pass dmarc=pass fromdomain=a\.test\) smtp\.remote-ip=192\.0\.2\.50; dmarc=fail \(p=REJECT arc=pass\) policy\.dmarc=reject header\.from=a\.test$/,
  );
  // A trusted sealer that saw the failure itself vouches for nothing.
  const sawFail = { ...from, content: await sealedWith("fail") };
  assert.match(refusal((await attempt(harness({ arc: { trustedSealers: ["fwd.test"] } }), sawFail)).decision), /^550 5\.7\.1 /);
});

test("ARC seal: asked for when a recipient is an alias forwarded outside and its domain has a key; not otherwise", async () => {
  const content = await signed(message("alice@a.test"));
  const forwarded = accepted((await attempt(harness(), { mailFrom: "<alice@a.test>", to: ["list@example.test"], content })).decision);
  assert.equal(forwarded.arcSeal?.domain, "example.test");
  assert.equal(forwarded.arcSeal?.chainValidation, "none");
  assert.match(forwarded.arcSeal?.bodyHash ?? "", /^[A-Za-z0-9+/]{43}=$/);
  // The set records exactly the Authentication-Results field the runner wrote.
  assert.equal(forwarded.arcSeal?.authResults, forwarded.prepend[0].value);
  assert.equal(accepted((await attempt(harness(), { mailFrom: "<alice@a.test>", content })).decision).arcSeal, undefined, "not forwarded");
  assert.equal(accepted((await attempt(harness({ arc: { seal: false } }), { mailFrom: "<alice@a.test>", to: ["list@example.test"], content })).decision).arcSeal, undefined);
});
