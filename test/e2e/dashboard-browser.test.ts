/**
 * The web dashboard in a real browser (Debian's chromium, driven by
 * playwright-core) against a whole Petrel: an administrator logs in; mail
 * sent with nodemailer appears in the queue view (live, through the event
 * stream) and in the mailbox view; the message's HTML shows in the
 * sandboxed frame without fetching its remote image; a message's trace
 * shows the delivery attempt to another SMTP server with its TLS version; a
 * queued message is held, released, retried and deleted; a user is made and
 * given a password (a weak one refused with the policy's words); logging out
 * ends the login. Screenshots at desktop and phone widths are taken into a
 * temporary directory, or into PETREL_SCREENSHOT_DIR (`npm run screenshots`
 * writes the README's pictures in docs/screenshots/), so that a test run
 * never changes the working tree.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { mkdir, readFile, rm, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { crc32, deflateSync } from "node:zlib";
import nodemailer from "nodemailer";
import { chromium, type Browser, type Page } from "playwright-core";
import { requirePeer } from "../support/peers.ts";
import { until } from "../support/until.ts";
import { issue } from "../support/test-ca.ts";
import { startWithAdmin, type AdminRunning } from "./fixtures/admin-client.ts";
import { startReceiver, type Receiver } from "./fixtures/outbound-tls.ts";
import { freePort } from "./fixtures/robust-helpers.ts";

const SHOTS = process.env.PETREL_SCREENSHOT_DIR ?? mkdtempSync(join(tmpdir(), "petrel-screenshots-"));
const ADMIN = { address: "admin@example.test", password: "petrel dashboard admin 2026" };

let petrel: AdminRunning;
let receiver: Receiver;
let browser: Browser;
let page: Page;
let pixel: http.Server;
let pixelPort = 0;
const pixelRequests: string[] = [];
const cspViolations: string[] = [];
let lmtpPort = 0;

function mailer() {
  return nodemailer.createTransport({
    host: "127.0.0.1", port: petrel.submission, requireTLS: true, tls: { rejectUnauthorized: false },
    auth: { user: "bob@example.test", pass: "bob-password" },
  });
}

async function shot(name: string, fullPage = true): Promise<void> {
  // Caret and animations off: the pictures depend on the data only.
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage, animations: "disabled", caret: "hide" });
}

/** A PNG of one colour (RGB), made here so the test needs no image file. */
function solidPng(width: number, height: number, rgb: [number, number, number]): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
    const out = Buffer.alloc(body.length + 8);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc32(body), body.length + 4);
    return out;
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8); // 8 bits per channel, RGB, no interlace
  const row = Buffer.concat([Buffer.from([0]), Buffer.from(Array.from({ length: width }, () => rgb).flat())]);
  const pixels = deflateSync(Buffer.concat(Array.from({ length: height }, () => row)));
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk("IHDR", header), chunk("IDAT", pixels), chunk("IEND", Buffer.alloc(0))]);
}

/** The width of the laid-out page (more than the viewport: it scrolls sideways). */
async function pageWidth(): Promise<number> {
  return Number(await page.evaluate("document.documentElement.scrollWidth"));
}

async function atWidth(width: number, height: number): Promise<void> {
  await page.setViewportSize({ width, height });
}

before(async () => {
  const executablePath = requirePeer("chromium", "chromium");
  await mkdir(SHOTS, { recursive: true });
  // A remote image the message's HTML names: the sandboxed frame must never fetch it.
  pixel = http.createServer((req, res) => {
    pixelRequests.push(req.url ?? "");
    res.writeHead(200, { "Content-Type": "image/gif" });
    res.end();
  });
  await new Promise<void>((resolve) => pixel.listen(0, "127.0.0.1", resolve));
  pixelPort = (pixel.address() as AddressInfo).port;
  receiver = await startReceiver({ hostname: "mx.far.test", domains: ["far.test"], pair: await issue(["mx.far.test"]) });
  lmtpPort = await freePort();
  petrel = await startWithAdmin({
    domains: ["example.test", "store.test"],
    transport: [
      { domains: ["store.test"], type: "lmtp", host: "127.0.0.1", port: lmtpPort },
      { domains: ["far.test"], type: "smtp", host: "127.0.0.1", port: receiver.port, tls: "opportunistic" },
    ],
  });
  assert.equal((await petrel.call("POST", "/api/users", { ...ADMIN, admin: true })).status, 200);
  assert.equal((await petrel.call("POST", "/api/users", { address: "carol@store.test", password: "a long enough passphrase" })).status, 200);
  browser = await chromium.launch({ executablePath, args: process.getuid?.() === 0 ? ["--no-sandbox"] : [] });
  page = await browser.newPage({ viewport: { width: 1280, height: 900 }, acceptDownloads: true, timezoneId: "UTC", locale: "en-GB" });
  page.on("console", (m) => {
    if (m.type() === "error" && /Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
  });
  page.on("dialog", (d) => void d.accept());
});

after(async () => {
  await browser?.close();
  await petrel?.stop();
  if (petrel) await rm(petrel.dir, { recursive: true, force: true });
  await receiver?.stop();
  await new Promise<void>((resolve) => (pixel ? pixel.close(() => resolve()) : resolve()));
  if (process.env.PETREL_SCREENSHOT_DIR === undefined) await rm(SHOTS, { recursive: true, force: true });
});

test("the pages: a strict CSP, no framing; an administrator logs in (a wrong password is refused)", async () => {
  const res = await fetch(`http://127.0.0.1:${petrel.api}/`);
  assert.equal(res.status, 200);
  const csp = res.headers.get("content-security-policy") ?? "";
  assert.match(csp, /default-src 'self'/);
  assert.match(csp, /script-src 'self'(;|$)/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.equal(res.headers.get("x-frame-options"), "DENY");
  assert.doesNotMatch(await res.text(), /<script>|<script [^>]*>[^<]/, "no inline script");

  await page.goto(`http://127.0.0.1:${petrel.api}/`);
  await page.fill("input[name=address]", ADMIN.address);
  await page.fill("input[name=password]", "not the password");
  await page.click("form.login button[type=submit]");
  await page.getByRole("alert").filter({ hasText: "wrong address or password" }).waitFor();
  await page.fill("input[name=password]", ADMIN.password);
  await page.click("form.login button[type=submit]");
  await page.locator("#who", { hasText: ADMIN.address }).waitFor();
  await page.locator("#live.up").waitFor();
});

test("the queue view: a message sent with nodemailer appears live, deferred; held, released, retried and deleted from its page, each in its trace", async () => {
  await page.goto(`http://127.0.0.1:${petrel.api}/#/queue`);
  await page.locator("#queue-empty").waitFor();
  const info = await mailer().sendMail({ from: "bob@example.test", to: "carol@store.test", subject: "waiting", text: "for the store" });
  const id = /queued as (\S+)/.exec(info.response)![1];
  // No reload: the live event stream brings it in.
  const row = page.locator("#queue-list tr", { hasText: id });
  await row.locator(".tag.deferred").waitFor();
  await page.locator("#tile-deferred .value", { hasText: "1" }).waitFor();
  assert.match(await page.locator("table.qshape").innerText(), /store\.test\s+1/);
  await shot("queue");
  await atWidth(390, 844);
  await shot("queue-phone");
  assert.ok(await pageWidth() <= 390, "no sideways scrolling at 390 px");
  await atWidth(1280, 900);

  // The filters: none held; deferred to store.test, it is.
  await page.selectOption("select[name=state]", "held");
  await page.locator("#queue-empty").waitFor();
  await page.selectOption("select[name=state]", "deferred");
  await page.fill("input[name=domain]", "store.test");
  await page.getByRole("button", { name: "Filter" }).click();
  await row.waitFor();
  await page.fill("input[name=domain]", "elsewhere.test");
  await page.getByRole("button", { name: "Filter" }).click();
  await page.locator("#queue-empty").waitFor();
  await page.fill("input[name=domain]", "");
  await page.getByRole("button", { name: "Filter" }).click();
  await row.locator("a.qid").click();
  await page.locator("table.attempts .reply", { hasText: `connect to [127.0.0.1]:${lmtpPort}` }).waitFor();
  await page.getByRole("button", { name: "Hold" }).click();
  await page.getByRole("button", { name: "Release" }).waitFor();
  assert.equal((await petrel.mta.queue.get(id))?.item.held, true);
  await page.getByRole("button", { name: "Release" }).click();
  await page.getByRole("button", { name: "Hold" }).waitFor();
  assert.equal((await petrel.mta.queue.get(id))?.item.held, false);
  await page.locator("#main").getByRole("link", { name: "Trace" }).click();
  await page.locator(".timeline li", { hasText: `hold by ${ADMIN.address}` }).waitFor();
  await page.locator(".timeline li", { hasText: `release by ${ADMIN.address}` }).waitFor();

  // Retry now: a second attempt (the store is still down) shows up on the message's page by itself.
  await page.locator("#main").getByRole("link", { name: "still in the queue" }).click();
  await page.getByRole("button", { name: "Retry now" }).click();
  await page.locator("table.attempts .tag.deferred", { hasText: "deferred #2" }).waitFor();
  // Delete (the confirmation accepted): back to an empty queue, and the trace says who.
  await page.getByRole("button", { name: "Delete" }).click();
  await page.locator("#queue-empty").waitFor();
  assert.equal(await petrel.mta.queue.get(id), null);
  const trace = await petrel.call("GET", `/api/trace/${id}`);
  assert.ok(trace.json.events.some((e: { type: string; action?: string; by?: string }) => e.type === "admin" && e.action === "delete" && e.by === ADMIN.address));
});

test("the mailbox view: paged, the message listed live, its HTML in a sandboxed frame with the remote image never fetched, text, raw source, attachment", async () => {
  // Fifty older messages already in the Maildir: the list has two pages.
  const maildir = join(petrel.dir, "mail", "example.test", "alice");
  for (const sub of ["tmp", "cur", "new"]) await mkdir(join(maildir, sub), { recursive: true });
  const senders = ["newsletter@far.test", "carol@store.test", "bob@example.test"];
  for (let i = 0; i < 50; i++) {
    const file = join(maildir, "cur", `1700000000.M${i}P1.mx.example.test:2,S`);
    await writeFile(file, `From: ${senders[i % 3]}\nTo: alice@example.test\nSubject: Weekly report ${50 - i}\n\nold\n`);
    const when = new Date(Date.now() - (i + 1) * 7 * 60_000);
    await utimes(file, when, when);
  }
  await page.goto(`http://127.0.0.1:${petrel.api}/#/mail/${encodeURIComponent("alice@example.test")}`);
  await page.locator("h1", { hasText: "alice@example.test" }).waitFor();
  await page.locator("[data-range]", { hasText: "50 in all" }).waitFor();
  const remote = `http://127.0.0.1:${pixelPort}/pixel.gif`;
  await mailer().sendMail({
    from: "bob@example.test", to: "alice@example.test", subject: "Quarterly numbers",
    text: "The numbers are attached.\nBob",
    html: `<h1 style="color:#1f5fbf">Quarterly numbers</h1><p><img src="cid:logo@petrel.test" alt="logo"></p><p>The numbers are <b>attached</b>.</p><img src="${remote}" alt="tracker"><p>Bob</p>`,
    attachments: [
      { filename: "numbers.csv", content: "quarter,total\nQ3,42\n", contentType: "text/csv" },
      { filename: "logo.png", content: solidPng(120, 24, [31, 95, 191]), contentType: "image/png", cid: "logo@petrel.test" },
    ],
  });
  // The list follows the delivery without a reload, newest first.
  await page.locator("[data-range]", { hasText: "1–50 of 51" }).waitFor();
  assert.equal(await page.locator("#mail-list a.subject").first().innerText(), "Quarterly numbers");
  await shot("mailbox-list", false);
  await page.getByRole("button", { name: "Next →" }).click();
  await page.locator("[data-range]", { hasText: "51–51 of 51" }).waitFor();
  assert.equal(await page.locator("#mail-list a.subject").count(), 1);
  await page.getByRole("button", { name: "← Previous" }).click();
  await page.locator("#mail-list a.subject", { hasText: "Quarterly numbers" }).click();
  const frame = page.locator("iframe.message-html");
  await frame.waitFor();
  assert.equal(await frame.getAttribute("sandbox"), "", "sandboxed, with no allowance at all");
  const inner = page.frameLocator("iframe.message-html");
  await inner.locator("h1", { hasText: "Quarterly numbers" }).waitFor();
  await inner.locator("img[alt=tracker]").waitFor({ state: "attached" });
  // The inline image (cid:) shows: it came inside the page, as a data: URL.
  const logo = inner.locator("img[alt=logo]");
  await until(async () => (await logo.evaluate((img: { naturalWidth: number }) => img.naturalWidth)) === 120, "the inline image to show");
  assert.match(String(await logo.getAttribute("src")), /^data:image\/png;base64,/);
  // The frame's document is served under a CSP that blocks remote content.
  const src = (await frame.getAttribute("src"))!;
  const served = await fetch(`http://127.0.0.1:${petrel.api}${src}`);
  assert.equal(served.headers.get("content-security-policy"), "default-src 'none'; img-src data: cid:; style-src 'unsafe-inline'; frame-ancestors 'self'; sandbox");
  assert.match(await served.text(), /<img src="http:\/\/127\.0\.0\.1:\d+\/pixel\.gif"/);
  await shot("mailbox");
  await atWidth(390, 844);
  await shot("mailbox-phone");
  await atWidth(1280, 900);

  await page.getByRole("tab", { name: "Text" }).click();
  assert.equal((await page.locator("pre.message-text").innerText()).trim(), "The numbers are attached.\nBob");
  await page.getByRole("tab", { name: "Raw" }).click();
  assert.match(await page.locator("pre.message-raw").innerText(), /^Subject: Quarterly numbers$/m);
  const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "numbers.csv" }).click()]);
  assert.equal(download.suggestedFilename(), "numbers.csv");
  assert.equal(await readFile(await download.path(), "utf8"), "quarter,total\nQ3,42\n");
  // After all of that, nothing reached the image's server.
  assert.deepEqual(pixelRequests, []);
});

test("the message trace: accepted over TLS with AUTH, the delivery attempt to the other server with its TLS version and reply", async () => {
  const info = await mailer().sendMail({ from: "bob@example.test", to: "postmaster@far.test", subject: "outbound", text: "over there" });
  const id = /queued as (\S+)/.exec(info.response)![1];
  await until(async () => (await receiver.received()).length === 1, "the other server to accept it", {
    ms: 20_000, context: async () => JSON.stringify((await petrel.call("GET", `/api/trace/${id}`)).json),
  });
  await page.goto(`http://127.0.0.1:${petrel.api}/#/trace`);
  await page.locator("a.qid", { hasText: id }).click();
  const accepted = page.locator(".step.accepted");
  await accepted.waitFor();
  const facts = await accepted.innerText();
  assert.match(facts, /From\s+bob@example\.test/);
  assert.match(facts, /TLS\s+TLSv1\.3/);
  assert.match(facts, /AUTH\s+bob@example\.test/);
  const attempt = page.locator("table.attempts tr.attempt.delivered");
  await attempt.waitFor();
  assert.match(await attempt.locator(".remote").innerText(), /127\.0\.0\.1/);
  assert.equal(await attempt.locator(".tls").innerText(), "TLSv1.3");
  assert.match(await attempt.locator(".reply").innerText(), /^250 /);
  await page.locator(".timeline li.removed").waitFor();
  await shot("trace");
  await atWidth(390, 844);
  await shot("trace-phone");
  await atWidth(1280, 900);
});

test("accounts: a user made and given a password (a weak one refused with the policy's words), an alias to it", async () => {
  await page.goto(`http://127.0.0.1:${petrel.api}/#/accounts`);
  const form = page.locator("#add-user");
  await form.locator("input[name=address]").fill("dave@example.test");
  await form.locator("input[name=password]").fill("short");
  await form.locator("button[type=submit]").click();
  await page.locator("#account-messages .notice.error", { hasText: /^password refused: / }).waitFor();
  assert.equal(await page.locator("tr[data-user='dave@example.test']").count(), 0);
  await form.locator("input[name=password]").fill("a long enough passphrase");
  await form.locator("button[type=submit]").click();
  const row = page.locator("tr[data-user='dave@example.test']");
  await row.waitFor();
  await row.locator("input[name=password]").fill("dave");
  await row.getByRole("button", { name: "Set password" }).click();
  await page.locator("#account-messages .notice.error", { hasText: /^password refused: / }).waitFor();
  await row.locator("input[name=password]").fill("dave's new passphrase 2026");
  await row.getByRole("button", { name: "Set password" }).click();
  await page.locator("#account-messages .notice.ok", { hasText: "password of dave@example.test changed" }).waitFor();
  // The new password is the one in force: a login gets past it (and is refused only for not being an administrator).
  const login = await petrel.call("POST", "/api/login", { address: "dave@example.test", password: "dave's new passphrase 2026" }, null);
  assert.equal(login.status, 403);
  // An alias to the new user.
  await page.locator("input[name=source]").fill("sales@example.test");
  await page.locator("input[name=targets]").fill("dave@example.test, alice@example.test");
  await page.getByRole("button", { name: "Add alias" }).click();
  await page.locator("tr", { hasText: "sales@example.test" }).waitFor();
  assert.deepEqual((await petrel.mta.accounts.listAliases()).find((a) => a.source === "sales@example.test")?.targets, ["dave@example.test", "alice@example.test"]);
  await shot("accounts");
  await atWidth(390, 844);
  await shot("accounts-phone");
  assert.ok(await pageWidth() <= 390, "no sideways scrolling at 390 px");
  await atWidth(1280, 900);
});

test("the overview: counts, charts of the last hour, the activity feed; no CSP violation by the dashboard itself", async () => {
  await page.goto(`http://127.0.0.1:${petrel.api}/#/`);
  await page.locator("#feed li.delivery", { hasText: "postmaster@far.test" }).waitFor();
  const charts = page.locator("svg.chart");
  assert.equal(await charts.count(), 3);
  // The minute's accepted messages are bars of the throughput chart.
  assert.ok(await page.locator("svg.chart rect.bar.accepted").count() >= 1);
  await shot("overview");
  await atWidth(390, 844);
  await shot("overview-phone");
  assert.ok(await pageWidth() <= 390, "no sideways scrolling at 390 px");
  await atWidth(1280, 900);
  // The frame's blocked image is the only refusal the browser reported.
  assert.deepEqual(cspViolations.filter((t) => !t.includes(`127.0.0.1:${pixelPort}`)), []);
});

test("logging out ends the login: the page asks for it again and the old token is refused", async () => {
  const token = String(await page.evaluate("sessionStorage.getItem('petrel.token')"));
  assert.equal((await petrel.call("GET", "/api/session", undefined, token)).status, 200);
  await page.getByRole("button", { name: "Log out" }).click();
  await page.locator("form.login").waitFor();
  assert.equal(await page.evaluate("sessionStorage.getItem('petrel.token')"), null);
  assert.equal((await petrel.call("GET", "/api/session", undefined, token)).status, 401);
});

test("with admin.auth none (loopback only) the dashboard opens without a login", async () => {
  const open = await startWithAdmin({ admin: { listen: { address: "127.0.0.1", port: 0 }, auth: "none" } });
  const tab = await browser.newPage();
  try {
    await tab.goto(`http://127.0.0.1:${open.api}/#/queue`);
    await tab.locator("#queue-empty").waitFor();
    assert.equal(await tab.locator("form.login").count(), 0);
    assert.equal(await tab.locator("#who").innerText(), "API token");
  } finally {
    await tab.close();
    await open.stop();
    await rm(open.dir, { recursive: true, force: true });
  }
});
