/**
 * A table-driven harness for the policy pipeline with no socket, in the
 * spirit of Postfix's smtpd_check test scripts: a script of SMTP stages,
 * one per line, each with the answer expected of the checks.
 *
 *   client 192.0.2.1 mx              who connects (address, role; "tls" for port 465)
 *   connect            -> ok
 *   helo client.test   -> ok
 *   auth fail          -> ok         a failed AUTH ("ok": the session goes on)
 *   auth alice@x.test  -> ok         a successful one
 *   mail <a@x.test>    -> 553 5.7.1  the reply's code and enhanced code (and, optionally, text)
 *   rcpt <b@y.test>    -> ok
 *   data Subject: hi   -> accept     the header section (\r\n written as "\r\n"); accept | discard |
 *                                    accept hold=REASON | accept folder=NAME | a reply
 *   rset
 *   close
 *
 * Lines starting with "#" and blank lines are ignored. `runScript` throws
 * naming the line that answered otherwise.
 */
import assert from "node:assert/strict";
import pino from "pino";
import { ManualClock } from "../../src/mail/clock.ts";
import type { ListenerRole, Mailbox, MailParameters } from "../../src/mail/envelope.ts";
import type { Check, ClientFacts, SessionFacts, TransactionFacts } from "../../src/policy/check.ts";
import { PolicyPipeline, type PolicySession } from "../../src/policy/pipeline.ts";
import type { MessageDecision } from "../../src/policy/merge.ts";
import { replyText, type Reply } from "../../src/smtp/reply.ts";
import { parsePath } from "../../src/smtp/address.ts";
import { HeaderSection } from "../../src/smtp/header-section.ts";
import type { ReceivedField } from "../../src/mail/header-field.ts";

export const AUTHSERV_ID = "mx.example.test";

export interface Harness {
  readonly clock: ManualClock;
  readonly pipeline: PolicyPipeline;
  /** The decisions of every `data` line, in order. */
  readonly decisions: MessageDecision[];
}

export function pipelineOf(checks: readonly Check[], options: { timeout?: number; clock?: ManualClock } = {}): Harness {
  const clock = options.clock ?? new ManualClock();
  const pipeline = new PolicyPipeline({ checks, authservId: AUTHSERV_ID, timeout: options.timeout ?? 30_000, timer: clock });
  return { clock, pipeline, decisions: [] };
}

export const silent = pino({ level: "silent" });

export function client(address = "192.0.2.1", role: ListenerRole = "mx", tls = false): ClientFacts {
  return {
    address, port: 40000, localAddress: "198.51.100.1", localPort: role === "mx" ? 25 : role === "submission" ? 587 : 465, role,
    tls: tls ? { version: "TLSv1.3", cipher: "TLS_AES_128_GCM_SHA256" } : null,
  };
}

export const noParams: MailParameters = { smtputf8: false, requireTls: false };

export function mailbox(path: string): Mailbox | null {
  const p = parsePath(path, { allowUtf8: true, allowNull: true });
  if (!p.ok) throw new Error(`bad path in script: ${path}`);
  return p.mailbox;
}

/** The header section as the intake gives it to the checks: our Received: field first. */
export function headerOf(text: string): ReceivedField[] {
  const h = new HeaderSection({ sizeLimit: 1 << 20, collect: true });
  h.feed(Buffer.from(`Received: from client.test (client.test [192.0.2.1])\r\n\tby ${AUTHSERV_ID} (Petrel) with ESMTP id TESTID; Mon, 1 Jan 2024 00:00:00 +0000\r\n${text}`, "utf8"));
  h.finish();
  return h.collected;
}

/** "ok", a reply's short form ("550 5.1.1" plus its text), or a message decision in words. */
function describe(r: Reply | undefined): string {
  return r === undefined ? "ok" : replyText(r);
}

export function describeDecision(d: MessageDecision): string {
  if (d.action === "refuse") return replyText(d.reply);
  if (d.action === "discard") return "discard";
  const parts = ["accept"];
  if (d.decided.hold !== undefined) parts.push(`hold=${d.decided.hold}`);
  if (d.decided.folder !== undefined) parts.push(`folder=${d.decided.folder}`);
  return parts.join(" ");
}

/** A session as the reception keeps it: the facts each stage is asked with. */
class ScriptSession {
  facts: SessionFacts;
  tx: { mailFrom: Mailbox | null; mailParams: MailParameters; recipients: { mailbox: Mailbox; params: object }[] } | null = null;
  readonly policy: PolicySession;

  constructor(policy: PolicySession) {
    this.policy = policy;
    this.facts = { client: policy.client, helo: null, esmtp: false, tls: policy.client.tls, authUser: null };
  }
}

export async function runScript(h: Harness, script: string): Promise<void> {
  let facts = client();
  let s: ScriptSession | null = null;
  const lines = script.split("\n").map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("#"));
  for (const line of lines) {
    const [command, expected] = line.split(/\s+->\s+/);
    const [verb, ...rest] = command.split(/\s+/);
    const arg = rest.join(" ");
    let got: string;
    switch (verb) {
      case "client": {
        const [address, role, tls] = rest;
        facts = client(address, (role ?? "mx") as ListenerRole, tls === "tls");
        if (s) await s.policy.close();
        s = null;
        continue;
      }
      case "connect":
        s = new ScriptSession(await h.pipeline.open(facts, silent));
        got = describe(await s.policy.connect());
        break;
      case "helo":
      case "ehlo": {
        const r = await need(s, line).policy.helo(s!.facts, arg);
        if (!r) s!.facts = { ...s!.facts, helo: arg, esmtp: verb === "ehlo" };
        got = describe(r);
        break;
      }
      case "auth": {
        const user = arg === "fail" ? null : arg;
        const r = await need(s, line).policy.auth(s!.facts, "PLAIN", user);
        if (!r && user !== null) s!.facts = { ...s!.facts, authUser: user };
        got = describe(r);
        break;
      }
      case "mail": {
        const from = mailbox(arg);
        const r = await need(s, line).policy.mail(s!.facts, from, noParams);
        if (!r) s!.tx = { mailFrom: from, mailParams: noParams, recipients: [] };
        got = describe(r);
        break;
      }
      case "rcpt": {
        const to = mailbox(arg)!;
        const ss = need(s, line);
        const r = await ss.policy.rcpt(ss.facts, ss.tx as TransactionFacts, to, {});
        if (!r) ss.tx!.recipients.push({ mailbox: to, params: {} });
        got = describe(r);
        break;
      }
      case "data": {
        const ss = need(s, line);
        const message = await ss.policy.data(ss.facts, ss.tx as TransactionFacts);
        const header = headerOf(arg.replace(/\\r\\n/g, "\r\n") + (arg === "" ? "" : "\r\n"));
        for (const f of header) await message.observe?.(f.raw);
        const d = await message.endOfData(header);
        h.decisions.push(d);
        ss.policy.reset();
        ss.tx = null;
        got = describeDecision(d);
        break;
      }
      case "rset":
        need(s, line).policy.reset();
        s!.tx = null;
        continue;
      case "close":
        await need(s, line).policy.close();
        s = null;
        continue;
      default:
        throw new Error(`unknown script command: ${line}`);
    }
    if (expected === undefined) continue;
    // A reply may be given by its code and enhanced code only; anything else must match exactly.
    const matches = got === expected || (/^\d{3} /.test(expected) && got.startsWith(expected + " "));
    assert.ok(matches, `${line}\n  answered: ${got}`);
  }
  if (s) await s.policy.close();
}

function need(s: ScriptSession | null, line: string): ScriptSession {
  if (!s) throw new Error(`"${line}" before connect`);
  return s;
}
