import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { createHmac } from "node:crypto";
import { ALICE, startPetrel, type TestPetrel } from "../e2e/petrel.ts";
import { messageById, queuedId, splitReceived } from "../e2e/interop-helpers.ts";
import { SmtpClientError, SmtpConnection, networkStatus, type ConnectOptions } from "../../src/client/smtp-connection.ts";
import { closedPort, startFake, type FakeSmtp } from "./fake-smtp.ts";

let p: TestPetrel;
let ca: string;

before(async () => {
  p = await startPetrel();
  ca = await readFile(join(p.dataDir, "tls", "self-signed.crt"), "utf8");
});
after(async () => {
  await p?.stop();
});

function opts(port: number, more: Partial<ConnectOptions> = {}): ConnectOptions {
  return { host: "127.0.0.1", port, tls: "none", verifyCertificate: false, heloName: "client.test", timeouts: { connect: 5000, greeting: 5000, command: 5000 }, ...more };
}

const MESSAGE = Buffer.from(
  "From: a@example.test\r\nTo: bob@example.test\r\nSubject: dots\r\n\r\n.starts with a dot\r\n..two dots\r\n.\r\nend Grüße\r\n",
);

async function rejectsWith(promise: Promise<unknown>, check: (e: SmtpClientError) => void): Promise<SmtpClientError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof SmtpClientError, `not an SmtpClientError: ${err}`);
    check(err);
    return err;
  }
  assert.fail("expected a rejection");
}

describe("against Petrel", { timeout: 20_000 }, () => {
  test("plain on mx: SIZE and BODY=8BITMIME sent (advertised), dot-stuffing round-trips into the spool", async () => {
    const c = await SmtpConnection.connect(opts(p.mx));
    assert.equal(c.tls, null);
    assert.equal(c.greeting.code, 220);
    assert.match(c.greeting.lines[0], /^mx\.example\.test /);
    assert.equal(c.capabilities.esmtp, true);
    assert.equal(c.capabilities.pipelining, true);
    assert.equal(c.capabilities.starttls, true);
    assert.equal(c.capabilities.size, 26214400);
    assert.deepEqual(c.remote, { host: "127.0.0.1", address: "127.0.0.1", port: p.mx });
    const r = await c.send({ mailFrom: "sender@remote.test", recipients: [{ address: "bob@example.test" }], message: MESSAGE });
    assert.equal(r.recipients[0].reply.code, 250);
    assert.equal(r.final?.code, 250);
    assert.equal(r.final?.status, "2.0.0");
    const m = await messageById(p, queuedId(r.final!.lines.join(" ")));
    assert.ok(splitReceived(m.body).rest.equals(MESSAGE));
    assert.equal(m.envelope.declaredSize, MESSAGE.length);
    assert.equal(m.envelope.body, "8BITMIME");
    assert.equal(c.usable, true);
    await c.quit();
    assert.equal(c.usable, false);
  });

  test("per-recipient results: relay denied for a foreign domain, the message goes to the others; the null sender", async () => {
    const c = await SmtpConnection.connect(opts(p.mx));
    const r = await c.send({
      mailFrom: "",
      recipients: [{ address: "bob@example.test" }, { address: "x@other.org" }, { address: "carol@example.test" }],
      message: Buffer.from("Subject: t\r\n\r\nhi\r\n"),
    });
    assert.deepEqual(r.recipients.map((x) => [x.address, x.reply.code]), [["bob@example.test", 250], ["x@other.org", 554], ["carol@example.test", 250]]);
    assert.equal(r.recipients[1].reply.status, "5.7.1");
    assert.equal(r.final?.code, 250);
    const m = await messageById(p, queuedId(r.final!.lines.join(" ")));
    assert.deepEqual(m.envelope.recipients.map((x) => x.address), ["bob@example.test", "carol@example.test"]);
    assert.equal(m.envelope.mailFrom, "");
    await c.quit();
  });

  test("no recipient accepted: no final reply, and the connection stays usable for the next transaction", async () => {
    const c = await SmtpConnection.connect(opts(p.mx));
    const r = await c.send({ mailFrom: "a@remote.test", recipients: [{ address: "x@other.org" }], message: MESSAGE });
    assert.equal(r.final, undefined);
    assert.equal(r.recipients[0].reply.code, 554);
    assert.equal(c.usable, true);
    const again = await c.send({ mailFrom: "a@remote.test", recipients: [{ address: "bob@example.test" }], message: MESSAGE });
    assert.equal(again.final?.code, 250);
    assert.equal((await c.noop()).code, 250);
    await c.rset();
    await c.quit();
  });

  test("a streamed message (1 MiB, many dot lines) with back-pressure arrives byte for byte", async () => {
    const line = ".dotted line of text to be stuffed ...............\r\n";
    const body = Buffer.from("Subject: big\r\n\r\n" + line.repeat(Math.ceil((1 << 20) / line.length)));
    const c = await SmtpConnection.connect(opts(p.mx));
    const r = await c.send({
      mailFrom: "a@remote.test", recipients: [{ address: "bob@example.test" }],
      message: () => Readable.from((function* () { for (let i = 0; i < body.length; i += 7001) yield body.subarray(i, i + 7001); })()),
    });
    assert.equal(r.final?.code, 250);
    const m = await messageById(p, queuedId(r.final!.lines.join(" ")));
    assert.ok(splitReceived(m.body).rest.equals(body));
    await c.quit();
  });

  test("opportunistic STARTTLS without verification: encrypted, certificate not authorized; EHLO repeated", async () => {
    const c = await SmtpConnection.connect(opts(p.mx, { tls: "opportunistic" }));
    assert.ok(c.tls);
    assert.match(c.tls.version, /^TLSv1\.[23]$/);
    assert.equal(c.tls.authorized, false);
    assert.ok(c.tls.authorizationError);
    assert.equal(c.capabilities.starttls, false, "capabilities are those of the EHLO after TLS");
    const r = await c.send({ mailFrom: "a@remote.test", recipients: [{ address: "bob@example.test" }], message: MESSAGE });
    assert.equal(r.final?.code, 250);
    await c.quit();
  });

  test("required STARTTLS with Petrel's certificate as CA and servername localhost: verified", async () => {
    const c = await SmtpConnection.connect(opts(p.submission, { tls: "starttls", verifyCertificate: true, ca, servername: "localhost" }));
    assert.equal(c.tls?.authorized, true);
    assert.ok(c.capabilities.auth.includes("PLAIN"));
    await c.quit();
  });

  test("required STARTTLS without the CA: kind tls, the connection is closed", async () => {
    const e = await rejectsWith(SmtpConnection.connect(opts(p.submission, { tls: "starttls", verifyCertificate: true, servername: "localhost" })), (e) => {
      assert.equal(e.kind, "tls");
      assert.equal(e.phase, "STARTTLS");
    });
    assert.match(e.code ?? "", /SELF_SIGNED|UNABLE_TO_VERIFY/);
  });

  test("required STARTTLS, wrong name: kind tls with ERR_TLS_CERT_ALTNAME_INVALID", async () => {
    await rejectsWith(SmtpConnection.connect(opts(p.submission, { tls: "starttls", verifyCertificate: true, ca, servername: "wrong.example" })), (e) => {
      assert.equal(e.kind, "tls");
      assert.equal(e.code, "ERR_TLS_CERT_ALTNAME_INVALID");
    });
  });

  test("implicit TLS on submissions, verified, then AUTH SCRAM-SHA-256 (server signature checked) and a submission", async () => {
    const c = await SmtpConnection.connect(opts(p.submissions, { tls: "implicit", verifyCertificate: true, ca, servername: "localhost" }));
    assert.equal(c.tls?.authorized, true);
    assert.ok(c.capabilities.auth.includes("SCRAM-SHA-256"));
    await c.auth(ALICE.address, ALICE.password);
    const r = await c.send({ mailFrom: ALICE.address, recipients: [{ address: "someone@far.example" }], message: MESSAGE });
    assert.equal(r.final?.code, 250);
    const m = await messageById(p, queuedId(r.final!.lines.join(" ")));
    assert.equal(m.envelope.client.authUser, ALICE.address);
    await c.quit();
  });

  for (const mech of ["PLAIN", "LOGIN", "SCRAM-SHA-256"]) {
    test(`AUTH ${mech}: right password accepted, wrong one refused with 535 (kind auth)`, async () => {
      const c = await SmtpConnection.connect(opts(p.submission, { tls: "opportunistic" }));
      await c.auth(ALICE.address, ALICE.password, [mech]);
      await c.quit();
      const d = await SmtpConnection.connect(opts(p.submission, { tls: "opportunistic" }));
      await rejectsWith(d.auth(ALICE.address, "wrong", [mech]), (e) => {
        assert.equal(e.kind, "auth");
        assert.equal(e.reply?.code, 535);
      });
      await d.quit();
    });
  }

  test("AUTH over plain text is not offered: kind auth without a reply", async () => {
    const c = await SmtpConnection.connect(opts(p.submission));
    assert.deepEqual(c.capabilities.auth, []);
    await rejectsWith(c.auth(ALICE.address, ALICE.password), (e) => {
      assert.equal(e.kind, "auth");
      assert.equal(e.reply, undefined);
      assert.match(e.message, /offers no authentication on this unencrypted connection/);
    });
    await c.quit();
  });

  test("a refused sender throws kind reply phase MAIL; DSN parameters reach the envelope", async () => {
    const c = await SmtpConnection.connect(opts(p.submission, { tls: "opportunistic" }));
    await c.auth(ALICE.address, ALICE.password);
    await rejectsWith(c.send({ mailFrom: "mallory@other.org", recipients: [{ address: "bob@example.test" }], message: MESSAGE }), (e) => {
      assert.equal(e.kind, "reply");
      assert.equal(e.phase, "MAIL");
      assert.equal(e.reply?.code, 553);
    });
    assert.equal(c.usable, true);
    const r = await c.send({
      mailFrom: ALICE.address,
      mailParams: { ret: "HDRS", envid: "id+1=x" },
      recipients: [{ address: "bob@example.test", notify: ["SUCCESS", "FAILURE"], orcpt: "rfc822;Bob+x@Example.test" }],
      message: MESSAGE,
    });
    const m = await messageById(p, queuedId(r.final!.lines.join(" ")));
    assert.equal(m.envelope.ret, "HDRS");
    assert.equal(m.envelope.envid, "id+1=x");
    assert.deepEqual(m.envelope.recipients[0].notify, ["SUCCESS", "FAILURE"]);
    assert.equal(m.envelope.recipients[0].orcpt, "rfc822;Bob+x@Example.test");
    await c.quit();
  });
});

describe("against fake servers", { timeout: 20_000 }, () => {
  async function withFake(options: Parameters<typeof startFake>[0], fn: (f: FakeSmtp) => Promise<void>) {
    const f = await startFake(options);
    try {
      await fn(f);
    } finally {
      await f.close();
    }
  }

  test("PIPELINING: MAIL, every RCPT and DATA in one packet", async () => {
    await withFake({}, async (f) => {
      const c = await SmtpConnection.connect(opts(f.port));
      const r = await c.send({ mailFrom: "a@x.test", recipients: [{ address: "b@y.test" }, { address: "c@y.test" }], message: Buffer.from("Subject: x\r\n\r\n.hi\r\n") });
      assert.equal(r.final?.code, 250);
      assert.ok(f.packets.includes("MAIL FROM:<a@x.test> SIZE=19\r\nRCPT TO:<b@y.test>\r\nRCPT TO:<c@y.test>\r\nDATA\r\n"), JSON.stringify(f.packets));
      assert.equal(f.data[0].toString(), "Subject: x\r\n\r\n..hi\r\n");
      await c.quit();
    });
  });

  test("without PIPELINING one command per packet; without SIZE/8BITMIME no such parameters", async () => {
    await withFake({ ehlo: "250-fake.test\r\n250 HELP\r\n" }, async (f) => {
      const c = await SmtpConnection.connect(opts(f.port));
      assert.equal(c.capabilities.pipelining, false);
      assert.equal(c.capabilities.size, undefined);
      const r = await c.send({ mailFrom: "a@x.test", recipients: [{ address: "b@y.test" }, { address: "c@y.test" }], message: Buffer.from("Subject: ü\r\n\r\nhi\r\n"), mailParams: { smtputf8: true, ret: "FULL", requireTls: true } });
      assert.equal(r.final?.code, 250);
      const cmds = f.packets.filter((x) => /^(MAIL|RCPT|DATA)/.test(x));
      assert.deepEqual(cmds, ["MAIL FROM:<a@x.test>\r\n", "RCPT TO:<b@y.test>\r\n", "RCPT TO:<c@y.test>\r\n", "DATA\r\n"]);
      await c.quit();
    });
  });

  test("pipelined, every RCPT refused but DATA accepted anyway: a lone dot ends it, then RSET; no final", async () => {
    await withFake({ respond: (l) => (l.startsWith("RCPT") ? "550 5.1.1 no such user\r\n" : l === "DATA" ? "354 go\r\n" : undefined), dataReply: "554 5.5.1 no valid recipients\r\n" }, async (f) => {
      const c = await SmtpConnection.connect(opts(f.port));
      const r = await c.send({ mailFrom: "a@x.test", recipients: [{ address: "b@y.test" }], message: Buffer.from("secret\r\n") });
      assert.equal(r.final, undefined);
      assert.equal(r.recipients[0].reply.status, "5.1.1");
      assert.deepEqual(f.data, [Buffer.alloc(0)]);
      assert.equal(f.lines.at(-1), "RSET");
      assert.equal(c.usable, true);
      await c.quit();
    });
  });

  test("opportunistic STARTTLS refused (454): carries on in plain text; required STARTTLS refused: kind tls", async () => {
    const ehlo = "250-fake.test\r\n250 STARTTLS\r\n";
    await withFake({ ehlo, respond: (l) => (l === "STARTTLS" ? "454 4.7.0 TLS not available\r\n" : undefined) }, async (f) => {
      const c = await SmtpConnection.connect(opts(f.port, { tls: "opportunistic" }));
      assert.equal(c.tls, null);
      const r = await c.send({ mailFrom: "a@x.test", recipients: [{ address: "b@y.test" }], message: Buffer.from("x\r\n") });
      assert.equal(r.final?.code, 250);
      await c.quit();
      await rejectsWith(SmtpConnection.connect(opts(f.port, { tls: "starttls" })), (e) => {
        assert.equal(e.kind, "tls");
        assert.equal(e.reply?.code, 454);
      });
    });
  });

  test("a refused message (DATA final 552) is returned, not thrown", async () => {
    await withFake({ dataReply: "552 5.3.4 too big\r\n" }, async (f) => {
      const c = await SmtpConnection.connect(opts(f.port));
      const r = await c.send({ mailFrom: "a@x.test", recipients: [{ address: "b@y.test" }], message: Buffer.from("x\r\n") });
      assert.equal(r.recipients[0].reply.code, 250);
      assert.deepEqual(r.final, { code: 552, status: "5.3.4", lines: ["too big"] });
      await c.quit();
    });
  });

  test("HELO fallback when EHLO gets 502", async () => {
    await withFake({ respond: (l) => (l.startsWith("EHLO") ? "502 5.5.1 what?\r\n" : undefined) }, async (f) => {
      const c = await SmtpConnection.connect(opts(f.port));
      assert.equal(c.capabilities.esmtp, false);
      assert.deepEqual(f.lines.slice(0, 2), ["EHLO client.test", "HELO client.test"]);
      const r = await c.send({ mailFrom: "a@x.test", recipients: [{ address: "b@y.test" }], message: Buffer.from("x\r\n") });
      assert.equal(r.final?.code, 250);
      await c.quit();
    });
  });

  test("STARTTLS required but not offered: kind tls", async () => {
    await withFake({}, async (f) => {
      await rejectsWith(SmtpConnection.connect(opts(f.port, { tls: "starttls" })), (e) => {
        assert.equal(e.kind, "tls");
        assert.equal(e.phase, "STARTTLS");
        assert.match(e.message, /does not offer STARTTLS/);
      });
    });
  });

  test("421 greeting: kind reply phase greeting, with the reply", async () => {
    await withFake({ greeting: "421 4.3.2 too busy\r\n" }, async (f) => {
      await rejectsWith(SmtpConnection.connect(opts(f.port)), (e) => {
        assert.equal(e.kind, "reply");
        assert.equal(e.phase, "greeting");
        assert.equal(e.reply?.code, 421);
        assert.equal(e.reply?.status, "4.3.2");
      });
    });
  });

  test("421 to RCPT ends the session: throws, usable false", async () => {
    await withFake({ respond: (l) => (l.startsWith("RCPT") ? "421 4.3.2 shutting down\r\n" : undefined), ehlo: "250 fake.test\r\n" }, async (f) => {
      const c = await SmtpConnection.connect(opts(f.port));
      await rejectsWith(c.send({ mailFrom: "a@x.test", recipients: [{ address: "b@y.test" }], message: Buffer.from("x\r\n") }), (e) => {
        assert.equal(e.kind, "reply");
        assert.equal(e.phase, "RCPT");
        assert.equal(e.reply?.code, 421);
      });
      assert.equal(c.usable, false);
      await c.quit();
    });
  });

  test("a server that never greets: timeout at greeting (4.4.2)", async () => {
    await withFake({ greeting: null }, async (f) => {
      const e = await rejectsWith(SmtpConnection.connect(opts(f.port, { timeouts: { greeting: 100 } })), (e) => {
        assert.equal(e.kind, "timeout");
        assert.equal(e.phase, "greeting");
        assert.equal(e.timeoutMs, 100);
      });
      assert.equal(networkStatus(e), "4.4.2");
    });
  });

  for (const [silentAt, phase, key] of [["EHLO", "EHLO", "command"], ["MAIL", "MAIL", "command"], ["DATA", "DATA", "dataInit"], ["END", "DATA", "dataTerm"]] as const) {
    test(`a server that stops answering at ${silentAt}: timeout phase ${phase} after the ${key} time`, async () => {
      await withFake({
        ehlo: "250 fake.test\r\n",
        respond: (l) => (l.startsWith(silentAt) ? null : undefined),
        dataReply: silentAt === "END" ? null : undefined,
      }, async (f) => {
        const t = { connect: 5000, greeting: 5000, command: 5000, dataInit: 5000, dataBlock: 5000, dataTerm: 5000, [key]: 100 };
        let c: SmtpConnection | undefined;
        const e = await rejectsWith((async () => {
          c = await SmtpConnection.connect(opts(f.port, { timeouts: t }));
          await c.send({ mailFrom: "a@x.test", recipients: [{ address: "b@y.test" }], message: Buffer.from("x\r\n") });
        })(), (e) => {
          assert.equal(e.kind, "timeout");
          assert.equal(e.phase, phase);
          assert.equal(e.timeoutMs, 100);
        });
        assert.equal(networkStatus(e), "4.4.2");
        if (c) assert.equal(c.usable, false);
      });
    });
  }

  test("connection refused: kind connect, code ECONNREFUSED (4.4.1)", async () => {
    const port = await closedPort();
    const e = await rejectsWith(SmtpConnection.connect(opts(port)), (e) => {
      assert.equal(e.kind, "connect");
      assert.equal(e.phase, "connect");
      assert.equal(e.code, "ECONNREFUSED");
    });
    assert.equal(networkStatus(e), "4.4.1");
  });

  test("the server drops the connection after RCPT: kind connect, phase names the command (4.4.2)", async () => {
    await withFake({ ehlo: "250 fake.test\r\n", respond: (l, s) => (l.startsWith("RCPT") ? (s.destroy(), null) : undefined) }, async (f) => {
      const c = await SmtpConnection.connect(opts(f.port));
      const e = await rejectsWith(c.send({ mailFrom: "a@x.test", recipients: [{ address: "b@y.test" }], message: Buffer.from("x\r\n") }), (e) => {
        assert.equal(e.kind, "connect");
        assert.equal(e.phase, "RCPT");
      });
      assert.equal(networkStatus(e), "4.4.2");
      assert.equal(c.usable, false);
    });
  });

  test("a malformed reply is a protocol error", async () => {
    await withFake({ respond: (l) => (l.startsWith("EHLO") ? "250-ok\r\nbogus\r\n" : undefined) }, async (f) => {
      await rejectsWith(SmtpConnection.connect(opts(f.port)), (e) => {
        assert.equal(e.kind, "protocol");
        assert.equal(e.phase, "EHLO");
      });
    });
  });

  test("CR or LF in an address never reaches the wire", async () => {
    await withFake({}, async (f) => {
      const c = await SmtpConnection.connect(opts(f.port));
      await rejectsWith(c.send({ mailFrom: "a@x.test>\r\nRSET", recipients: [{ address: "b@y.test" }], message: Buffer.from("x\r\n") }), (e) => {
        assert.equal(e.kind, "protocol");
      });
      assert.ok(!f.lines.some((l) => l.startsWith("MAIL")));
      await c.quit();
    });
  });

  test("SCRAM: a server that cannot prove the password is refused (client sends *)", async () => {
    let clientNonce = "";
    await withFake({
      ehlo: "250-fake.test\r\n250 AUTH SCRAM-SHA-256\r\n",
      respond: (l) => {
        if (l.startsWith("AUTH SCRAM-SHA-256 ")) {
          const first = Buffer.from(l.slice(19), "base64").toString();
          clientNonce = /r=([^,]+)/.exec(first)![1];
          return `334 ${Buffer.from(`r=${clientNonce}srv,s=${Buffer.from("salt").toString("base64")},i=4096`).toString("base64")}\r\n`;
        }
        if (l.startsWith("Yz1")) { // c=biws,...
          const fakeSig = createHmac("sha256", "not the key").update("x").digest("base64");
          return `334 ${Buffer.from(`v=${fakeSig}`).toString("base64")}\r\n`;
        }
        if (l === "*") return "501 5.7.0 cancelled\r\n";
        return undefined;
      },
    }, async (f) => {
      const c = await SmtpConnection.connect(opts(f.port));
      await rejectsWith(c.auth("user", "pencil"), (e) => {
        assert.equal(e.kind, "auth");
        assert.match(e.message, /could not prove/);
      });
      assert.equal(f.lines.at(-1), "*");
      await c.quit();
    });
  });
});
