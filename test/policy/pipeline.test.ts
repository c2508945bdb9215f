/**
 * The check runner alone: order and short-circuit at each stage, what is
 * kept for the message, merging at the end of data, the dependency step
 * (`after`, `earlier`), and failure — a check that throws, rejects, answers
 * nonsense or takes too long (an injected clock, no sleeping) gets a
 * tempfail, never a crash.
 */
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { reply } from "../../src/smtp/reply.ts";
import type { Check, CheckResult, CheckSession, MessageCheck } from "../../src/policy/check.ts";
import { endOfDataRounds, PolicyPipeline } from "../../src/policy/pipeline.ts";
import { reject, tempfail } from "../../src/policy/replies.ts";
import { ManualClock } from "../../src/mail/clock.ts";
import { AUTHSERV_ID, client, describeDecision, headerOf, mailbox, noParams, pipelineOf, runScript, silent } from "./harness.ts";

/** A check made of the given stage functions, recording the stages it was asked. */
function check(name: string, session: CheckSession & { after?: string[] } = {}, log?: string[]): Check {
  const { after, ...stages } = session;
  const recorded: CheckSession = {};
  for (const [stage, fn] of Object.entries(stages)) {
    (recorded as Record<string, unknown>)[stage] = (...args: unknown[]) => {
      log?.push(`${name}.${stage}`);
      return (fn as (...a: unknown[]) => unknown)(...args);
    };
  }
  return { name, ...(after ? { after } : {}), open: () => recorded };
}

function eod(endOfData: MessageCheck["endOfData"], extra: Partial<MessageCheck> = {}): CheckSession["message"] {
  return () => ({ endOfData, ...extra });
}

const later = <T>(v: T): Promise<T> => new Promise((r) => setImmediate(() => r(v)));

async function session(h: ReturnType<typeof pipelineOf>) {
  const s = await h.pipeline.open(client(), silent);
  const facts = { client: s.client, helo: "c.test", esmtp: true, tls: null, authUser: null };
  return { s, facts };
}

describe("SMTP stages", () => {
  test("checks are asked in order; the first refusal ends the stage and is the reply", async () => {
    const log: string[] = [];
    const h = pipelineOf([
      check("a", { rcpt: () => undefined }, log),
      check("b", { rcpt: async () => reject(550, "5.7.1", "b says no") }, log),
      check("c", { rcpt: () => reject(550, "5.7.2", "c says no") }, log),
      check("d", { mail: () => undefined }, log),
    ]);
    await runScript(h, `
      connect -> ok
      mail <x@y.test> -> ok
      rcpt <z@y.test> -> 550 5.7.1 b says no
    `);
    assert.deepEqual(log, ["d.mail", "a.rcpt", "b.rcpt"]);
  });

  test("a refusal at connect is 421 or 554, whatever the check's code of that class", async () => {
    await runScript(pipelineOf([check("x", { connect: () => tempfail(450, "4.7.1", "slow down") })]), "connect -> 421 4.7.1 slow down");
    await runScript(pipelineOf([check("x", { connect: () => reject(550, "5.7.1", "go away") })]), "connect -> 554 5.7.1 go away");
  });

  test("a check that cannot open refuses the connection for now (421 4.3.0); the others are still closed", async () => {
    let closed = 0;
    const h = pipelineOf([
      { name: "ok", open: () => ({ close: () => void closed++ }) },
      { name: "broken", open: async () => { throw new Error("milter down"); } },
    ]);
    const s = await h.pipeline.open(client(), silent);
    assert.equal((await s.connect())?.code, 421);
    assert.equal((await s.connect())?.status, "4.3.0");
    await s.close();
    assert.equal(closed, 1);
  });

  test("a check that throws, rejects, times out or gives a malformed verdict gets 451 4.3.0; the session goes on", async () => {
    const clock = new ManualClock();
    let stall = false;
    const h = pipelineOf([
      check("flaky", {
        helo: (_s, name) => {
          if (name === "throw.test") throw new Error("bug");
          if (name === "reject.test") return Promise.reject(new Error("async bug"));
          if (name === "bad.test") return { verdict: { action: "reject", reply: reply(250, "2.0.0", "not a refusal") } };
          if (name === "stall.test") {
            stall = true;
            return new Promise<undefined>(() => {});
          }
          return undefined;
        },
      }),
    ], { clock, timeout: 5_000 });
    const { s, facts } = await session(h);
    for (const name of ["throw.test", "reject.test", "bad.test"]) {
      const r = await s.helo(facts, name);
      assert.deepEqual([r?.code, r?.status], [451, "4.3.0"], name);
    }
    const pending = s.helo(facts, "stall.test");
    assert.ok(pending instanceof Promise, "a check that does not answer at once makes the stage wait");
    await new Promise((r) => setImmediate(r));
    assert.ok(stall);
    clock.advance(4_999);
    let done = false;
    void pending.then(() => (done = true));
    await new Promise((r) => setImmediate(r));
    assert.equal(done, false, "not before the timeout");
    clock.advance(1);
    assert.deepEqual([(await pending)?.code, (await pending)?.status], [451, "4.3.0"]);
    assert.equal(await s.helo(facts, "fine.test"), undefined);
    await s.close();
  });
});

describe("what is kept for the message", () => {
  test("results of connect/HELO/AUTH last the session, of MAIL/RCPT the transaction; a refused RCPT's siblings are dropped", async () => {
    const h = pipelineOf([
      check("ip", { connect: () => ({ authResults: ["iprev=pass"] }) }),
      check("spf", { mail: () => ({ authResults: ["spf=pass smtp.mailfrom=y.test"] }) }),
      check("note", { rcpt: (_s, _tx, to) => ({ headers: [{ name: "X-Rcpt", value: to.localPart }] }) }),
      check("gate", { rcpt: (_s, _tx, to) => (to.localPart === "no" ? reject(550, "5.1.1", "no") : undefined) }),
    ]);
    await runScript(h, `
      connect -> ok
      mail <x@y.test> -> ok
      rcpt <yes@y.test> -> ok
      rcpt <no@y.test> -> 550 5.1.1
      data Subject: 1 -> accept
      mail <x@y.test> -> ok
      rset
      mail <x@y.test> -> ok
      data Subject: 2 -> accept
    `);
    const [first, second] = h.decisions;
    assert.ok(first.action === "accept" && second.action === "accept");
    assert.deepEqual(first.decided.prepend, [
      { name: "Authentication-Results", value: `${AUTHSERV_ID};\r\n\tiprev=pass;\r\n\tspf=pass smtp.mailfrom=y.test` },
      { name: "X-Rcpt", value: "yes" },
    ]);
    assert.deepEqual(second.decided.prepend, [
      { name: "Authentication-Results", value: `${AUTHSERV_ID};\r\n\tiprev=pass;\r\n\tspf=pass smtp.mailfrom=y.test` },
    ], "RSET dropped nothing of the session; the new MAIL's result is there once");
  });

  test("a quarantine at RCPT holds the message; a discard at MAIL drops it; both are forgotten with the transaction", async () => {
    const h = pipelineOf([
      check("q", { rcpt: (_s, _tx, to) => (to.localPart === "spamtrap" ? { verdict: { action: "quarantine", reason: "trap hit" } } : undefined) }),
      check("d", { mail: (_s, from) => (from?.localPart === "blackhole" ? { verdict: { action: "discard", reason: "sender" } } : undefined) }),
    ]);
    await runScript(h, `
      connect -> ok
      mail <x@y.test> -> ok
      rcpt <spamtrap@y.test> -> ok
      data Subject: 1 -> accept hold=q: trap hit
      mail <blackhole@y.test> -> ok
      rcpt <a@y.test> -> ok
      data Subject: 2 -> discard
      mail <x@y.test> -> ok
      rcpt <a@y.test> -> ok
      data Subject: 3 -> accept
    `);
  });
});

describe("end of data", () => {
  test("merge: reject > tempfail > discard > quarantine > accept; the first of equals gives the reply", async () => {
    const verdicts: Record<string, CheckResult | undefined> = {
      q: { verdict: { action: "quarantine", reason: "q" } },
      d: { verdict: { action: "discard", reason: "d" } },
      t: tempfail(451, "4.7.1", "t"),
      r1: reject(550, "5.7.1", "first"),
      r2: reject(554, "5.7.1", "second"),
    };
    const run = async (names: string[]) => {
      const h = pipelineOf(names.map((n) => check(n, { message: eod(() => verdicts[n]) })));
      await runScript(h, "connect -> ok\nmail <a@b.test> -> ok\nrcpt <c@b.test> -> ok\ndata X: 1");
      return describeDecision(h.decisions[0]);
    };
    assert.equal(await run(["q", "d", "t", "r1", "r2"]), "550 5.7.1 first");
    assert.equal(await run(["r2", "r1"]), "554 5.7.1 second");
    assert.equal(await run(["q", "t", "d"]), "451 4.7.1 t");
    assert.equal(await run(["q", "d"]), "discard");
    assert.equal(await run(["q"]), "accept hold=q: q");
    assert.equal(await run([]), "accept");
  });

  test("headers, edits, recipients and A-R fragments add up in check order; the first folder wins", async () => {
    const h = pipelineOf([
      check("one", { message: eod(() => ({ headers: [{ name: "X-One", value: "1" }], authResults: ["dkim=pass header.d=b.test"], folder: "Junk", recipients: { add: ["new@b.test"] } })) }),
      check("two", { message: eod(() => ({ headers: [{ name: "X-Two", value: "2" }], authResults: ["dmarc=pass\r\n"], folder: "Other", headerEdits: [{ op: "delete", name: "X-Old", index: 1 }], recipients: { remove: ["c@b.test"] } })) }),
    ]);
    await runScript(h, "connect -> ok\nmail <a@b.test> -> ok\nrcpt <c@b.test> -> ok\ndata X-Old: 1 -> accept folder=Junk");
    const d = h.decisions[0];
    assert.ok(d.action === "accept");
    assert.deepEqual(d.decided.prepend.map((f) => f.name), ["Authentication-Results", "X-One", "X-Two"]);
    assert.equal(d.decided.prepend[0].value, `${AUTHSERV_ID};\r\n\tdkim=pass header.d=b.test;\r\n\tdmarc=pass`);
    assert.deepEqual(d.decided.headerEdits, [{ op: "delete", name: "X-Old", index: 1 }]);
    assert.deepEqual(d.decided.recipients, { add: ["new@b.test"], remove: ["c@b.test"] });
  });

  test("an Authentication-Results field that claims our authserv-id is removed (RFC 8601 §5); others stay; no fragments, no field", async () => {
    const h = pipelineOf([]);
    await runScript(h, `connect -> ok\nmail <a@b.test> -> ok\nrcpt <c@b.test> -> ok\ndata Authentication-Results: other.test; spf=pass\\r\\nAuthentication-Results: (forged) ${AUTHSERV_ID.toUpperCase()}; dkim=pass\\r\\nAuthentication-Results: "${AUTHSERV_ID}" 1; none -> accept`);
    const d = h.decisions[0];
    assert.ok(d.action === "accept");
    assert.deepEqual(d.decided.prepend, []);
    assert.deepEqual(d.decided.headerEdits, [
      { op: "delete", name: "Authentication-Results", index: 2 },
      { op: "delete", name: "Authentication-Results", index: 3 },
    ]);
  });

  test("after: checks without it run at once; a dependent gets the results of the checks it names, after them", async () => {
    const order: string[] = [];
    let seen: Map<string, CheckResult> | undefined;
    const finish = (name: string, result?: CheckResult) => async () => {
      order.push(`${name} start`);
      await later(null);
      order.push(`${name} end`);
      return result;
    };
    const h = pipelineOf([
      check("dmarc", { after: ["spf", "dkim"], message: eod(async (_h, earlier) => {
        order.push("dmarc");
        seen = new Map(earlier);
        return { authResults: ["dmarc=pass"] };
      }) }),
      check("spf", { message: eod(finish("spf", { authResults: ["spf=pass"] })) }),
      check("dkim", { message: eod(finish("dkim", { authResults: ["dkim=pass"] })) }),
      check("arc", { after: ["dmarc"], message: eod(() => void order.push("arc")) }),
    ]);
    assert.deepEqual(h.pipeline.rounds, [["spf", "dkim"], ["dmarc"], ["arc"]]);
    await runScript(h, "connect -> ok\nmail <a@b.test> -> ok\nrcpt <c@b.test> -> ok\ndata X: 1 -> accept");
    assert.deepEqual(order, ["spf start", "dkim start", "spf end", "dkim end", "dmarc", "arc"]);
    assert.deepEqual([...seen!.keys()].sort(), ["dkim", "spf"]);
    const d = h.decisions[0];
    assert.ok(d.action === "accept");
    assert.equal(d.decided.prepend[0].value, `${AUTHSERV_ID};\r\n\tdmarc=pass;\r\n\tspf=pass;\r\n\tdkim=pass`, "fragments in check order");
  });

  test("a refusal in one round stops the later rounds; their observers are told to abort", async () => {
    const aborted: string[] = [];
    const h = pipelineOf([
      check("first", { message: eod(() => reject(550, "5.7.1", "no"), { abort: () => void aborted.push("first") }) }),
      check("second", { after: ["first"], message: eod(() => { throw new Error("must not run"); }, { abort: () => void aborted.push("second") }) }),
    ]);
    await runScript(h, "connect -> ok\nmail <a@b.test> -> ok\nrcpt <c@b.test> -> ok\ndata X: 1 -> 550 5.7.1 no");
    assert.deepEqual(aborted, ["second"]);
  });

  test("after naming no configured check, or a cycle, is refused when the pipeline is built", () => {
    assert.throws(() => endOfDataRounds([check("dmarc", { after: ["spf"] })]), /runs after "spf", which is not configured/);
    assert.throws(() => endOfDataRounds([check("a", { after: ["b"] }), check("b", { after: ["a"] })]), /cycle/);
    assert.throws(() => endOfDataRounds([check("a"), check("a")]), /two checks are named "a"/);
  });
});

describe("body observers", () => {
  test("no observer: nothing to call per chunk (observe is undefined)", async () => {
    const h = pipelineOf([check("eod-only", { message: eod(() => undefined) })]);
    const { s, facts } = await session(h);
    const m = await s.data(facts, { mailFrom: mailbox("<a@b.test>"), mailParams: noParams, recipients: [] });
    assert.equal(m.observe, undefined);
  });

  test("observers get every chunk in order; a promise holds the stream until it resolves (back-pressure)", async () => {
    const got: string[] = [];
    let release!: () => void;
    const h = pipelineOf([
      check("sync", { message: () => ({ body: (c) => void got.push(`sync:${c}`), endOfData: () => undefined }) }),
      check("slow", { message: () => ({ body: (c) => new Promise<void>((r) => { got.push(`slow:${c}`); release = r; }), endOfData: () => undefined }) }),
    ]);
    const { s, facts } = await session(h);
    const m = await s.data(facts, { mailFrom: null, mailParams: noParams, recipients: [] });
    const waiting = m.observe!(Buffer.from("A"));
    assert.ok(waiting instanceof Promise);
    let resolved = false;
    void waiting.then(() => (resolved = true));
    await new Promise((r) => setImmediate(r));
    assert.equal(resolved, false, "held until the slow observer is ready");
    release();
    await waiting;
    assert.deepEqual(got, ["sync:A", "slow:A"]);
    assert.equal((await m.endOfData(headerOf("X: 1\r\n"))).action, "accept");
  });

  test("an observer that throws or stalls is not fed again, and the message is refused for now at its end", async () => {
    const clock = new ManualClock();
    let fed = 0;
    const h = pipelineOf([
      check("stall", { message: () => ({ body: () => { fed++; return new Promise<void>(() => {}); }, endOfData: () => undefined }) }),
    ], { clock, timeout: 1000 });
    const { s, facts } = await session(h);
    const m = await s.data(facts, { mailFrom: null, mailParams: noParams, recipients: [] });
    const first = m.observe!(Buffer.from("A"));
    clock.advance(1000);
    await first;
    assert.equal(m.observe!(Buffer.from("B")), undefined);
    assert.equal(fed, 1);
    assert.equal(describeDecision(await m.endOfData(headerOf(""))), "451 4.3.0 Error: temporary failure, try again later");

    const h2 = pipelineOf([check("throws", { message: () => ({ body: () => { throw new Error("x"); }, endOfData: () => undefined }) })]);
    const s2 = await session(h2);
    const m2 = await s2.s.data(s2.facts, { mailFrom: null, mailParams: noParams, recipients: [] });
    assert.equal(m2.observe!(Buffer.from("A")), undefined);
    assert.equal((await m2.endOfData(headerOf(""))).action, "refuse");
  });
});

test("close tells every check even when one fails; reset reaches every check", async () => {
  const told: string[] = [];
  const h = new PolicyPipeline({
    checks: [
      { name: "a", open: () => ({ reset: () => { throw new Error("x"); }, close: async () => { throw new Error("y"); } }) },
      { name: "b", open: () => ({ reset: () => void told.push("b.reset"), close: () => void told.push("b.close") }) },
    ],
    authservId: AUTHSERV_ID, timeout: 1000, timer: new ManualClock(),
  });
  const s = await h.open(client(), silent);
  s.reset();
  await s.close();
  await s.close();
  assert.deepEqual(told, ["b.reset", "b.close"]);
});
