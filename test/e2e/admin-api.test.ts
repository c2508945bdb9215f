/**
 * The admin HTTP API against a whole Petrel: the token, a message traced
 * from the 250 to the Maildir, the activity feed with a refusal's check and
 * reason, exact metrics after real mail, the queue operations on a deferred
 * message, accounts with the password policy and administrator logins, a
 * local mailbox read and deleted, and the live event stream.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { stat } from "node:fs/promises";
import { smtp, until } from "./fixtures/mta-helpers.ts";
import { withAdmin } from "./fixtures/admin-client.ts";
import { freePort } from "./fixtures/robust-helpers.ts";

function queuedId(transcript: string): string {
  const id = /250 2\.0\.0 Ok: queued as (\S+)/.exec(transcript)?.[1];
  assert.ok(id, transcript);
  return id;
}

/** The value of one sample line of a Prometheus text exposition. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(series + " "));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

test("the token: made at first start (0600); without it 401, with it the API answers", async () => {
  await withAdmin({}, async (r) => {
    assert.equal((await stat(`${r.dir}/admin.token`)).mode & 0o777, 0o600);
    assert.ok(r.token.length >= 40);
    const none = await r.call("GET", "/api/status", undefined, null);
    assert.equal(none.status, 401);
    assert.match(none.json.error, /authentication required/);
    assert.equal(none.headers.get("www-authenticate"), 'Bearer realm="petrel"');
    assert.equal((await r.call("GET", "/api/status", undefined, "x".repeat(43))).status, 401);
    assert.equal((await r.call("GET", "/metrics", undefined, null)).status, 401);
    const st = await r.call("GET", "/api/status");
    assert.equal(st.status, 200);
    assert.equal(st.json.hostname, "mx.example.test");
    assert.deepEqual(st.json.listeners.map((l: { role: string }) => l.role), ["mx", "submission"]);
    assert.equal(st.headers.get("x-content-type-options"), "nosniff");
    // No cookie is ever set: the browser attaches nothing on its own (no CSRF).
    assert.equal(st.headers.get("set-cookie"), null);
    assert.equal((await r.call("GET", "/api/openapi.json", undefined, null)).status, 200);
    assert.equal((await r.call("GET", "/api/nothing-here")).status, 404);
  });
});

test("a message traced from the 250 to the Maildir; the refusal of a recipient in the feed; exact metrics", async () => {
  await withAdmin({}, async (r) => {
    const t = await smtp(r.mx, [
      "EHLO client.test", "MAIL FROM:<sender@far.test>", "RCPT TO:<nobody@example.test>", "RCPT TO:<alice@example.test>", "DATA",
      "Subject: traced\r\n\r\nhello\r\n.", "QUIT",
    ]);
    const id = queuedId(t);
    await until(async () => (await r.maildir("alice@example.test")).length === 1, "delivery");
    const trace = await until(async () => {
      const got = await r.call("GET", `/api/trace/${id}`);
      return got.json.events?.some((e: { type: string }) => e.type === "removed") && got;
    }, "the trace to end");
    assert.equal(trace.status, 200);
    assert.equal(trace.json.inQueue, false);
    const types = trace.json.events.map((e: { type: string }) => e.type);
    assert.deepEqual(types, ["accepted", "queued", "delivery", "removed"]);
    const [accepted, , delivery] = trace.json.events;
    assert.equal(accepted.from, "sender@far.test");
    assert.deepEqual(accepted.to, ["alice@example.test"]);
    assert.deepEqual(accepted.client, { address: "127.0.0.1", helo: "client.test", role: "mx" });
    assert.equal(delivery.recipient, "alice@example.test");
    assert.equal(delivery.transport, "local");
    assert.equal(delivery.status, "delivered");
    assert.equal(delivery.attempt, 1);
    assert.ok(delivery.durationMs >= 0 && delivery.latencyMs >= delivery.durationMs);
    assert.match(delivery.reply, /delivered to maildir/);

    const feed = await r.call("GET", "/api/activity?types=rejected");
    assert.equal(feed.json.events.length, 1);
    const refusal = feed.json.events[0];
    assert.deepEqual(
      { check: refusal.check, stage: refusal.stage, reason: refusal.reason, to: refusal.to, client: refusal.client },
      { check: "relay", stage: "rcpt", reason: "no such user here", to: "nobody@example.test", client: "127.0.0.1" },
    );
    assert.match(refusal.reply, /^550 5\.1\.1 <nobody@example\.test>/);
    const all = await r.call("GET", "/api/activity?limit=2");
    assert.equal(all.json.events.length, 2);
    const older = await r.call("GET", `/api/activity?before=${all.json.events[1].seq}`);
    assert.ok(older.json.events.every((e: { seq: number }) => e.seq < all.json.events[1].seq));
    assert.equal((await r.call("GET", `/api/activity?q=${id}&types=accepted`)).json.events[0].queueId, id);

    const m = await r.call("GET", "/metrics");
    assert.equal(m.status, 200);
    assert.match(m.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    assert.equal(sample(m.text, 'petrel_connections_total{role="mx"}'), 1);
    assert.equal(sample(m.text, 'petrel_connections_current{role="mx"}'), 0);
    assert.equal(sample(m.text, 'petrel_messages_accepted_total{origin="smtp",role="mx"}'), 1);
    assert.equal(sample(m.text, 'petrel_rejections_total{check="relay",stage="rcpt"}'), 1);
    assert.equal(sample(m.text, 'petrel_deliveries_total{transport="local",status="delivered"}'), 1);
    assert.equal(sample(m.text, 'petrel_delivery_latency_seconds_count{transport="local"}'), 1);
    assert.equal(sample(m.text, "petrel_spool_commit_seconds_count"), 1);
    assert.equal(sample(m.text, 'petrel_queue_messages{state="active"}'), 0);

    const series = await r.call("GET", "/api/activity/series?minutes=5");
    assert.equal(series.json.minutes.length, 5);
    const total = (k: string) => series.json.minutes.reduce((n: number, x: Record<string, number>) => n + x[k], 0);
    assert.deepEqual([total("accepted"), total("rejected"), total("delivered")], [1, 1, 1]);
  });
});

test("the queue: a deferred message listed, detailed with its attempts, held, released, retried and deleted — in its trace", async () => {
  const port = await freePort();
  await withAdmin({
    domains: ["example.test", "store.test"],
    transport: [{ domains: ["store.test"], type: "lmtp", host: "127.0.0.1", port }],
  }, async (r) => {
    assert.equal((await r.call("POST", "/api/users", { address: "carol@store.test", password: "a long enough passphrase" })).status, 200);
    const id = queuedId(await smtp(r.mx, ["EHLO c", "MAIL FROM:<s@far.test>", "RCPT TO:<carol@store.test>", "DATA", "Subject: wait\r\n\r\nx\r\n.", "QUIT"]));
    await until(async () => (await r.call("GET", "/api/queue?state=deferred")).json.total === 1, "the deferral");
    const list = await r.call("GET", "/api/queue?state=deferred&domain=store.test");
    assert.equal(list.json.messages[0].id, id);
    assert.equal((await r.call("GET", "/api/queue?state=held")).json.total, 0);
    assert.equal((await r.call("GET", "/api/queue?recipient=nobody")).json.total, 0);
    const detail = await r.call("GET", `/api/queue/${id}`);
    assert.equal(detail.status, 200);
    assert.equal(detail.json.envelope.mailFrom, "s@far.test");
    assert.equal(detail.json.envelope.client.helo, "c");
    assert.equal(detail.json.history["carol@store.test"][0].status, "deferred");
    const attempt = detail.json.attempts[0];
    assert.deepEqual([attempt.type, attempt.transport, attempt.status, attempt.enhanced], ["delivery", "lmtp", "deferred", "4.4.1"]);
    assert.match(attempt.reply, new RegExp(`connect to \\[127\\.0\\.0\\.1\\]:${port}: ECONNREFUSED`));
    assert.ok(attempt.retryAt);
    const summary = await r.call("GET", "/api/queue/summary");
    assert.equal(summary.json.messages, 1);
    assert.equal(summary.json.recipients.deferred, 1);
    assert.deepEqual(summary.json.rows.map((x: { domain: string }) => x.domain), ["TOTAL", "store.test"]);
    // The queue gauges read the same counts as the summary (the store's aggregates and the active set).
    const waiting = (await r.call("GET", "/metrics")).text;
    assert.equal(sample(waiting, 'petrel_queue_messages{state="active"}'), 1);
    assert.equal(sample(waiting, 'petrel_queue_messages{state="held"}'), 0);
    assert.equal(sample(waiting, 'petrel_queue_recipients{state="deferred"}'), 1);
    assert.equal(sample(waiting, 'petrel_queue_recipients_by_age{le="5"}'), 1);
    assert.equal(sample(waiting, 'petrel_queue_recipients_by_age{le="+Inf"}'), 0);
    assert.ok(sample(waiting, "petrel_queue_oldest_message_age_seconds")! >= 0);

    assert.equal((await r.call("POST", `/api/queue/${id}/hold`)).status, 200);
    assert.equal((await r.call("GET", "/api/queue?state=held")).json.total, 1);
    assert.equal(sample((await r.call("GET", "/metrics")).text, 'petrel_queue_messages{state="held"}'), 1);
    const retryHeld = await r.call("POST", `/api/queue/${id}/retry`);
    assert.equal(retryHeld.status, 409);
    assert.match(retryHeld.json.error, /on hold/);
    assert.equal((await r.call("POST", `/api/queue/${id}/release`)).status, 200);
    assert.equal((await r.call("POST", `/api/queue/${id}/retry`)).status, 200);
    assert.equal((await r.call("GET", "/api/queue/not-an-id")).status, 400);
    assert.equal((await r.call("DELETE", `/api/queue/${id}`)).status, 200);
    assert.equal((await r.call("GET", `/api/queue/${id}`)).status, 404);
    assert.equal((await r.call("DELETE", `/api/queue/${id}`)).status, 404);
    const trace = await r.call("GET", `/api/trace/${id}`);
    const admin = trace.json.events.filter((e: { type: string }) => e.type === "admin").map((e: { action: string; by: string }) => `${e.action} by ${e.by}`);
    assert.deepEqual(admin, ["hold by api-token", "release by api-token", "retry by api-token", "delete by api-token"]);
  });
});

test("accounts through the API: the password policy, duplicates, aliases, domains; administrator logins", async () => {
  await withAdmin({}, async (r) => {
    const weak = await r.call("POST", "/api/users", { address: "dave@example.test", password: "short" });
    assert.equal(weak.status, 422);
    assert.match(weak.json.error, /^password refused: /);
    assert.equal((await r.call("POST", "/api/users", { address: "dave@nowhere.test", password: "a long enough passphrase" })).status, 422);
    const made = await r.call("POST", "/api/users", { address: "Dave@example.test", password: "a long enough passphrase", quota: 1000000 });
    assert.equal(made.status, 200);
    assert.deepEqual({ ...made.json, createdAt: 0 }, { address: "dave@example.test", quota: 1000000, createdAt: 0, source: "store", admin: false });
    assert.equal((await r.call("POST", "/api/users", { address: "dave@example.test", password: "a long enough passphrase" })).status, 409);
    assert.equal((await r.call("POST", "/api/users", { address: "dave@example.test" })).status, 400);
    assert.ok((await r.call("GET", "/api/users?domain=example.test")).json.users.some((u: { address: string }) => u.address === "dave@example.test"));

    // Not an administrator yet: a right password is not enough.
    const login = { address: "dave@example.test", password: "a long enough passphrase" };
    assert.equal((await r.call("POST", "/api/login", { ...login, password: "wrong" }, null)).status, 401);
    assert.equal((await r.call("POST", "/api/login", login, null)).status, 403);
    assert.equal((await r.call("PUT", "/api/users/dave@example.test/admin", { admin: true })).status, 200);
    const session = await r.call("POST", "/api/login", login, null);
    assert.equal(session.status, 200);
    assert.equal(session.json.user, "dave@example.test");
    const who = await r.call("GET", "/api/session", undefined, session.json.token);
    assert.deepEqual(who.json, { kind: "user", user: "dave@example.test" });
    // The login's token is the administrator's: their operations are recorded under their name.
    assert.equal((await r.call("POST", "/api/domains", { domain: "new.test" }, session.json.token)).status, 200);
    assert.deepEqual((await r.call("GET", "/api/domains")).json.domains, [{ domain: "example.test", source: "config" }, { domain: "new.test", source: "store" }]);
    assert.equal((await r.call("PUT", "/api/users/dave@example.test/admin", { admin: false })).status, 200);
    assert.equal((await r.call("GET", "/api/session", undefined, session.json.token)).status, 401);

    assert.equal((await r.call("PUT", "/api/users/dave@example.test/password", { password: "tiny" })).status, 422);
    assert.equal((await r.call("PUT", "/api/users/dave@example.test/password", { password: "another long passphrase" })).status, 200);
    assert.equal(await r.mta.accounts.verifyPlain("dave@example.test", "another long passphrase"), "dave@example.test");

    assert.equal((await r.call("POST", "/api/aliases", { source: "crew@example.test", targets: ["dave@example.test", "alice@example.test"] })).status, 200);
    const loop = await r.call("POST", "/api/aliases", { source: "crew@example.test", targets: ["crew@example.test"] });
    assert.equal(loop.status, 422);
    assert.ok((await r.call("GET", "/api/aliases")).json.aliases.some((a: { source: string; targets: string[] }) => a.source === "crew@example.test" && a.targets.length === 2));
    assert.equal((await r.call("DELETE", "/api/aliases/crew@example.test?target=dave@example.test")).status, 200);
    assert.equal((await r.call("DELETE", "/api/users/dave@example.test")).status, 200);
    assert.equal((await r.call("GET", "/api/users/dave@example.test")).status, 404);
    const inUse = await r.call("DELETE", "/api/domains/example.test");
    assert.equal(inUse.status, 409);
    assert.match(inUse.json.error, /config file/);
  });
});

test("a local user's mailbox: listed, read parsed, raw, an attachment, deleted", async () => {
  await withAdmin({}, async (r) => {
    const body = [
      "From: Sender <sender@far.test>", "To: alice@example.test", "Subject: with a file", "MIME-Version: 1.0",
      'Content-Type: multipart/mixed; boundary="b1"', "", "--b1", "Content-Type: text/plain", "", "plain words", "--b1",
      "Content-Type: text/html", "", "<p>rich <img src=\"http://tracker.test/x.png\"></p>", "--b1",
      'Content-Type: application/octet-stream; name="data.bin"', 'Content-Disposition: attachment; filename="data.bin"', "Content-Transfer-Encoding: base64", "",
      Buffer.from("binary\x00content").toString("base64"), "--b1--", "",
    ].join("\r\n");
    queuedId(await smtp(r.mx, ["EHLO c", "MAIL FROM:<sender@far.test>", "RCPT TO:<alice@example.test>", "DATA", body + ".", "QUIT"]));
    await until(async () => (await r.maildir("alice@example.test")).length === 1, "delivery");
    assert.deepEqual((await r.call("GET", "/api/mailboxes/alice@example.test/folders")).json, { folders: ["INBOX"] });
    const list = await r.call("GET", "/api/mailboxes/alice@example.test/messages");
    assert.equal(list.json.total, 1);
    const m = list.json.messages[0];
    assert.deepEqual([m.subject, m.from, m.to, m.new], ["with a file", "Sender <sender@far.test>", "alice@example.test", true]);
    const read = await r.call("GET", `/api/mailboxes/alice@example.test/messages/${encodeURIComponent(m.id)}`);
    assert.equal(read.status, 200);
    assert.match(read.json.text, /^plain words\n/);
    assert.match(read.json.html, /<p>rich/);
    assert.deepEqual(read.json.attachments, [{ index: 0, filename: "data.bin", mimeType: "application/octet-stream", size: 14, disposition: "attachment", contentId: null }]);
    assert.ok(read.json.headers.some((h: { name: string; value: string }) => h.name === "Delivered-To" && h.value === "alice@example.test"));
    const raw = await r.call("GET", `/api/mailboxes/alice@example.test/messages/${encodeURIComponent(m.id)}/raw`);
    assert.equal(raw.headers.get("content-type"), "message/rfc822");
    assert.match(raw.headers.get("content-security-policy") ?? "", /sandbox/);
    assert.match(raw.text, /^Return-Path: <sender@far\.test>\n/);
    const file = await fetch(`http://127.0.0.1:${r.api}/api/mailboxes/alice@example.test/messages/${encodeURIComponent(m.id)}/attachments/0`, { headers: { Authorization: `Bearer ${r.token}` } });
    assert.equal(file.headers.get("content-disposition"), 'attachment; filename="data.bin"');
    assert.deepEqual(Buffer.from(await file.arrayBuffer()), Buffer.from("binary\x00content"));
    assert.equal((await r.call("GET", "/api/mailboxes/alice@example.test/messages/..%2F..%2Faccounts.json")).status, 404);
    assert.equal((await r.call("GET", "/api/mailboxes/nobody@example.test/messages")).status, 404);
    assert.equal((await r.call("GET", "/api/mailboxes/alice@example.test/messages?folder=..")).status, 400);
    assert.equal((await r.call("DELETE", `/api/mailboxes/alice@example.test/messages/${encodeURIComponent(m.id)}`)).status, 200);
    assert.equal((await r.call("GET", "/api/mailboxes/alice@example.test/messages")).json.total, 0);
  });
});

test("live events: the SSE stream shows a message accepted and delivered; Last-Event-ID replays what was missed", async () => {
  await withAdmin({}, async (r) => {
    const controller = new AbortController();
    const res = await fetch(`http://127.0.0.1:${r.api}/api/events?types=accepted,delivery`, { headers: { Authorization: `Bearer ${r.token}` }, signal: controller.signal });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/event-stream/);
    const reader = res.body!.getReader();
    const id = queuedId(await smtp(r.mx, ["EHLO c", "MAIL FROM:<s@far.test>", "RCPT TO:<alice@example.test>", "DATA", "Subject: live\r\n\r\nx\r\n.", "QUIT"]));
    let text = "";
    const deadline = Date.now() + 10_000;
    while (!/event: delivery\n/.test(text) && Date.now() < deadline) {
      const { value, done } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString();
    }
    controller.abort();
    const frames = text.split("\n\n").filter((f) => f.startsWith("id: ") || f.includes("\nid: "));
    const parsed = frames.map((f) => JSON.parse(/^data: (.*)$/m.exec(f)![1]));
    assert.deepEqual(parsed.map((e) => [e.type, e.queueId]), [["accepted", id], ["delivery", id]]);
    // Reconnecting after the first event gets the second one first.
    const again = new AbortController();
    const res2 = await fetch(`http://127.0.0.1:${r.api}/api/events?types=delivery`, { headers: { Authorization: `Bearer ${r.token}`, "Last-Event-ID": String(parsed[0].seq) }, signal: again.signal });
    const first = Buffer.from((await res2.body!.getReader().read()).value!).toString();
    again.abort();
    assert.match(first, new RegExp(`^event: delivery\\ndata: \\{"type":"delivery","queueId":"${id}".*\\}\\nid: ${parsed[1].seq}\\n\\n$`));
  });
});
