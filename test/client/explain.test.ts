import { test } from "node:test";
import assert from "node:assert/strict";
import { explain } from "../../src/client/explain.ts";
import { SmtpClientError } from "../../src/client/smtp-error.ts";
import type { Reply } from "../../src/smtp/reply.ts";

const at = { host: "smtp.example.com", port: 25 };
const reply = (code: number, status: string | undefined, text: string): Reply => ({ code, status, lines: [text] });

test("network failures", () => {
  assert.equal(explain(new SmtpClientError("timeout", "connect", "x", { ...at, timeoutMs: 30_000 })),
    "No answer from smtp.example.com port 25 within 30 s: home and cloud networks usually block outgoing port 25, so your provider probably blocks it, not the server: ask the provider to open port 25, or send through a smarthost on port 587; otherwise a firewall drops the connection.");
  assert.equal(explain(new SmtpClientError("timeout", "connect", "x", { ...at, port: 587, timeoutMs: 30_000 })),
    "No answer from smtp.example.com port 587 within 30 s: a firewall or your provider probably blocks the port (many block port 25; try 587 with STARTTLS or 465 with implicit TLS).");
  assert.equal(explain(new SmtpClientError("connect", "connect", "x", { host: "smtp.exmaple.com", port: 587, code: "ENOTFOUND" })),
    "The name smtp.exmaple.com does not exist in DNS: check the spelling.");
  assert.equal(explain(new SmtpClientError("connect", "connect", "x", { ...at, code: "ECONNREFUSED" })),
    "Nothing is listening on smtp.example.com port 25: the host or port is wrong, or the server is down.");
  assert.match(explain(new SmtpClientError("connect", "connect", "x", { ...at, code: "ENETUNREACH" })), /no network route/);
  assert.match(explain(new SmtpClientError("timeout", "greeting", "x", { ...at, timeoutMs: 300_000 })), /did not greet us within 300 s: if this is an implicit-TLS port \(465\), use --tls implicit/);
  assert.match(explain(new SmtpClientError("connect", "DATA", "x", at)), /closed the connection unexpectedly during DATA/);
  assert.match(explain(new SmtpClientError("timeout", "DATA", "x", { ...at, timeoutMs: 600_000 })), /did not answer DATA within 600 s/);
});

test("TLS failures name the certificate problem and mention --insecure only for testing", () => {
  const tls = (code: string, msg = "cert problem") => explain(new SmtpClientError("tls", "STARTTLS", "x", { ...at, code, cause: Object.assign(new Error(msg), { code }) }));
  assert.match(tls("ERR_TLS_CERT_ALTNAME_INVALID", "Hostname/IP does not match certificate's altnames"), /^The server's certificate is not for the name smtp\.example\.com: .*--insecure skips this check: use it only for testing/);
  assert.match(tls("CERT_HAS_EXPIRED"), /^The server's certificate has expired/);
  assert.match(tls("DEPTH_ZERO_SELF_SIGNED_CERT"), /self-signed/);
  assert.match(tls("UNABLE_TO_GET_ISSUER_CERT_LOCALLY"), /issued by an authority this computer does not know/);
  assert.match(tls("ERR_SSL_WRONG_VERSION_NUMBER", "wrong version number"), /does not speak TLS from the first byte: use --tls starttls/);
  assert.match(explain(new SmtpClientError("tls", "STARTTLS", "x", at)), /does not offer STARTTLS/);
});

test("replies: the server's own words are always quoted", () => {
  const r = (phase: string, rep: Reply) => explain(new SmtpClientError(phase === "AUTH" ? "auth" : "reply", phase, "x", { ...at, reply: rep }));
  assert.equal(r("AUTH", reply(535, "5.7.8", "Authentication credentials invalid")),
    "The server refused the user name or password (535 5.7.8 Authentication credentials invalid): check them; some providers need an app password.");
  assert.match(r("MAIL", reply(530, "5.7.0", "Authentication required")), /requires authentication.*"530 5\.7\.0 Authentication required"/);
  assert.match(r("RCPT", reply(554, "5.7.1", "<a@b.c>: Relay access denied")), /will not relay to that domain without authentication.*"554 5\.7\.1 <a@b\.c>: Relay access denied"/);
  assert.match(r("RCPT", reply(550, "5.1.1", "<nobody@example.com>: no such user")), /recipient does not exist.*"550 5\.1\.1 <nobody@example\.com>: no such user"/);
  assert.match(r("DATA", reply(552, "5.3.4", "message too big")), /too big.*"552 5\.3\.4 message too big"/);
  assert.match(r("MAIL", reply(553, "5.7.1", "sender not owned")), /will not accept mail from that sender address.*"553 5\.7\.1 sender not owned"/);
  assert.match(r("RCPT", reply(450, "4.2.0", "greylisted")), /temporary failure during RCPT.*"450 4\.2\.0 greylisted"/);
  assert.match(r("greeting", reply(421, "4.3.2", "busy")), /not taking mail right now.*"421 4\.3\.2 busy"/);
  assert.match(r("AUTH", reply(538, "5.7.11", "Encryption required")), /requires encryption/);
});

test("other errors: files and plain messages", () => {
  assert.equal(explain(Object.assign(new Error("ENOENT"), { code: "ENOENT", path: "/x/y" })), "The file /x/y does not exist.");
  assert.equal(explain(new Error("plain")), "plain");
});
