/**
 * Secrets that stand for something for a while: administrators' logins
 * (expire, end with the account's admin flag) and the one-message links of
 * the dashboard's HTML frame (name the message they were made for, expire,
 * bounded in number).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { ManualClock } from "../../src/mail/clock.ts";
import { HtmlViews } from "../../src/admin/html-views.ts";
import { AdminSessions } from "../../src/admin/admin-auth.ts";

const key = (path: string) => path.replace(/^\/view\//, "");

test("a link names its message until it expires; unknown keys name nothing", () => {
  const clock = new ManualClock(Date.UTC(2026, 0, 1));
  const views = new HtmlViews({ clock, lifetime: 60_000 });
  const link = views.create({ address: "alice@example.test", folder: "INBOX", id: "1.M1P1.host" });
  assert.match(link.path, /^\/view\/[A-Za-z0-9_-]{43}$/);
  assert.equal(link.expiresAt, clock.now() + 60_000);
  assert.deepEqual(views.find(key(link.path)), { address: "alice@example.test", folder: "INBOX", id: "1.M1P1.host" });
  assert.equal(views.find("nothing"), null);
  clock.advance(60_000);
  assert.equal(views.find(key(link.path)), null);
});

test("the oldest links go when there are too many", () => {
  const views = new HtmlViews({ clock: new ManualClock(0), max: 2 });
  const [a, b, c] = ["a", "b", "c"].map((id) => views.create({ address: "alice@example.test", folder: "INBOX", id }).path);
  assert.equal(views.find(key(a)), null);
  assert.equal(views.find(key(b))?.id, "b");
  assert.equal(views.find(key(c))?.id, "c");
});

test("a login lasts its lifetime; logging out, or losing the admin flag, ends it", () => {
  const clock = new ManualClock(Date.UTC(2026, 0, 1));
  const sessions = new AdminSessions({ clock, lifetime: 3_600_000 });
  const a = sessions.create("admin@example.test");
  const b = sessions.create("admin@example.test");
  const c = sessions.create("other@example.test");
  assert.notEqual(a.token, b.token);
  assert.equal(sessions.find(a.token), "admin@example.test");
  sessions.revoke(a.token);
  assert.equal(sessions.find(a.token), null);
  sessions.revokeUser("admin@example.test");
  assert.equal(sessions.find(b.token), null);
  assert.equal(sessions.find(c.token), "other@example.test");
  clock.advance(3_600_000);
  assert.equal(sessions.find(c.token), null);
});
