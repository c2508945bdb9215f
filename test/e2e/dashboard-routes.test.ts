/**
 * What the admin listener serves for the dashboard besides the API: the
 * page and its files (without a token, under a strict CSP, no framing; no
 * other file of the server), and a message's HTML through a link that only
 * an authenticated request can make, served under a CSP that blocks
 * everything remote.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { smtp, until } from "./fixtures/mta-helpers.ts";
import { withAdmin } from "./fixtures/admin-client.ts";
import { servePetrel, stopPetrel, tempDir, writeConfig } from "./fixtures/robust-helpers.ts";

test("the page and its files; nothing else from the server's directory", async () => {
  await withAdmin({}, async (r) => {
    const get = (path: string) => fetch(`http://127.0.0.1:${r.api}${path}`);
    const page = await get("/");
    assert.equal(page.status, 200);
    assert.equal(page.headers.get("content-type"), "text/html; charset=utf-8");
    assert.equal(page.headers.get("x-frame-options"), "DENY");
    assert.match(page.headers.get("content-security-policy")!, /^default-src 'self'; script-src 'self'; style-src 'self';.*frame-ancestors 'none'$/);
    assert.match(await page.text(), /<script type="module" src="\/ui\/app\.js"><\/script>/);
    const js = await get("/ui/app.js");
    assert.equal(js.status, 200);
    assert.equal(js.headers.get("content-type"), "text/javascript; charset=utf-8");
    assert.match(await js.text(), /^import /m);
    assert.equal((await get("/ui/style.css")).headers.get("content-type"), "text/css; charset=utf-8");
    for (const path of ["/ui/nothing.js", "/ui/..%2Fadmin-auth.ts", "/ui/index.html.ts", "/ui/"]) assert.equal((await get(path)).status, 404, path);
    // Dot segments are resolved before routing: this one leaves /ui/ for the API, which wants the token.
    assert.equal((await get("/ui/%2E%2E/dashboard-app.ts")).status, 401);
    assert.equal((await get("/view/not-a-link")).status, 404);
  });
});

test("a message's HTML: a link only with the token, served without it under a CSP that blocks remote content", async () => {
  await withAdmin({}, async (r) => {
    await smtp(r.mx, [
      "EHLO c", "MAIL FROM:<s@far.test>", "RCPT TO:<alice@example.test>", "DATA",
      'Subject: html\r\nContent-Type: text/html\r\n\r\n<p>hi <img src="http://192.0.2.1/x.gif"></p>\r\n.', "QUIT",
    ]);
    await until(async () => (await r.maildir("alice@example.test")).length === 1, "delivery");
    const list = await r.call("GET", "/api/mailboxes/alice@example.test/messages");
    const id = list.json.messages[0].id as string;
    const path = `/api/mailboxes/alice@example.test/messages/${encodeURIComponent(id)}/html-view`;
    assert.equal((await r.call("POST", path, undefined, null)).status, 401);
    const made = await r.call("POST", path);
    assert.equal(made.status, 200);
    assert.match(made.json.url, /^\/view\/[\w-]{43}$/);
    const html = await fetch(`http://127.0.0.1:${r.api}${made.json.url}`);
    assert.equal(html.status, 200);
    assert.equal(html.headers.get("content-type"), "text/html; charset=utf-8");
    assert.equal(html.headers.get("content-security-policy"), "default-src 'none'; img-src data: cid:; style-src 'unsafe-inline'; frame-ancestors 'self'; sandbox");
    assert.match(await html.text(), /<p>hi <img src="http:\/\/192\.0\.2\.1\/x\.gif"><\/p>/);
    assert.equal((await r.call("POST", "/api/mailboxes/alice@example.test/messages/nope/html-view")).status, 404);
  });
});

test("petrel serve logs the dashboard's address, and serves it there", { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  const path = await writeConfig(dir, { dataDir: `${dir}/data`, listeners: [{ address: "127.0.0.1", port: 0, role: "mx" }], admin: { listen: { address: "127.0.0.1", port: 0 } } });
  const p = await servePetrel(path, 1);
  try {
    const line = p.logs().find((l) => l.msg === "admin API listening");
    assert.ok(line, p.stderr());
    assert.equal(line.url, `http://127.0.0.1:${line.port}/`);
    const page = await fetch(String(line.url));
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<title>Petrel<\/title>/);
  } finally {
    await stopPetrel(p);
    await cleanup();
  }
});
