/**
 * Protocol edge cases over real TCP and TLS sockets with a tiny line client:
 * PIPELINING, BDAT, SCRAM-SHA-256, STARTTLS plaintext injection, garbage on
 * the port, SMTP smuggling.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import * as tls from "node:tls";
import { ScramSha256Client } from "../../src/client/scram-client.ts";
import { ALICE, startPetrel, type TestPetrel } from "./petrel.ts";
import {
  b64, greet, LineClient, messageById, queuedId, run, runPy, spoolMessages, splitReceived, type SmtpReply, type StoredMessage,
} from "./interop-helpers.ts";

let p: TestPetrel;

before(async () => {
  p = await startPetrel({ limits: { shutdownGrace: 2 } });
});
after(async () => {
  await p?.stop();
});

const codes = (rs: SmtpReply[]) => rs.map((r) => r.code);

async function ids(server: TestPetrel): Promise<Set<string>> {
  return new Set(await server.server.spool.list());
}

/** Messages committed since `before` was taken. */
async function added(server: TestPetrel, before: Set<string>): Promise<StoredMessage[]> {
  const all = await spoolMessages(server);
  return all.filter((m) => !before.has(m.id));
}

/** A smtplib send on the mx port: proves the server is still serving. */
async function stillServing(port: number): Promise<void> {
  const msg = "Subject: alive\r\n\r\nstill here\r\n";
  const r = await runPy([
    { op: "connect", port, helo_name: "alive.test" },
    { op: "sendmail", from: "a@alive.test", to: ["bob@example.test"], msg_b64: b64(msg) },
    { op: "quit" },
  ]);
  assert.ok(r[1].ok, JSON.stringify(r[1]));
  assert.equal(r[1].value.data_reply[0], 250);
}

async function startTls(c: LineClient): Promise<void> {
  const r = await c.cmd("STARTTLS");
  assert.deepEqual(r.lines, ["220 2.0.0 Ready to start TLS"]);
  await c.startTls();
}

describe("PIPELINING", { timeout: 30_000 }, () => {
  test("MAIL/RCPT/RCPT/DATA in one write: 250/250/250/354, then the message is stored", async () => {
    const before = await ids(p);
    const { c } = await greet(p.mx, { helo: "pipe.test" });
    try {
      c.write("MAIL FROM:<carol@sender.test>\r\nRCPT TO:<bob@example.test>\r\nRCPT TO:<dave@example.test>\r\nDATA\r\n");
      const rs = await c.readN(4);
      assert.deepEqual(rs.map((r) => r.lines[0]), [
        "250 2.1.0 Ok", "250 2.1.5 Ok", "250 2.1.5 Ok", "354 End data with <CR><LF>.<CR><LF>",
      ]);
      const content = "Subject: pipelined\r\n\r\nbody\r\n..stuffed\r\n";
      c.write(content + ".\r\nQUIT\r\n");
      const [done, bye] = await c.readN(2);
      assert.equal(done.code, 250);
      assert.equal(bye.code, 221);
      const m = await messageById(p, queuedId(done.text));
      assert.equal(splitReceived(m.body).rest.toString(), "Subject: pipelined\r\n\r\nbody\r\n.stuffed\r\n");
      assert.deepEqual(m.envelope.recipients.map((r) => r.address), ["bob@example.test", "dave@example.test"]);
      assert.deepEqual([...(await added(p, before))].map((x) => x.id), [m.id]);
    } finally {
      c.destroy();
    }
  });

  test("a refused recipient inside a pipelined group: 250/554/250/354", async () => {
    const { c } = await greet(p.mx);
    try {
      c.write("MAIL FROM:<carol@sender.test>\r\nRCPT TO:<x@foreign.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n");
      assert.deepEqual(codes(await c.readN(4)), [250, 554, 250, 354]);
      c.write("Subject: x\r\n\r\ny\r\n.\r\n");
      const done = await c.read();
      const m = await messageById(p, queuedId(done.text));
      assert.deepEqual(m.envelope.recipients, [{ address: "bob@example.test" }]);
    } finally {
      c.destroy();
    }
  });

  test("the body sent before 354 (not waiting after DATA): 554 5.5.0, nothing stored", async () => {
    const before = await ids(p);
    const { c } = await greet(p.mx);
    try {
      c.write("MAIL FROM:<carol@sender.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nSubject: eager\r\n\r\nx\r\n.\r\n");
      const rs = await c.readN(3);
      assert.deepEqual(rs.map((r) => r.lines[0]), ["250 2.1.0 Ok", "250 2.1.5 Ok", "554 5.5.0 Error: improper use of SMTP command pipelining"]);
      assert.deepEqual(codes([await c.cmd("NOOP")]), [250]);
      assert.deepEqual(await added(p, before), []);
    } finally {
      c.destroy();
    }
  });
});

describe("BDAT (CHUNKING)", { timeout: 30_000 }, () => {
  test("chunks in separate writes, split inside CRLF, LAST: stored exactly", async () => {
    const { c, ehlo } = await greet(p.mx);
    try {
      assert.ok(ehlo.lines.includes("250-CHUNKING"));
      assert.equal((await c.cmd("MAIL FROM:<carol@sender.test>")).code, 250);
      assert.equal((await c.cmd("RCPT TO:<bob@example.test>")).code, 250);
      const content = "Subject: chunked\r\n\r\nline with .\r\n.\r\nnot an end in BDAT\r\n";
      const cut1 = 19; // between "\r" and "\n" of the first line's CRLF
      const cut2 = 40;
      const parts = [content.slice(0, cut1), content.slice(cut1, cut2), content.slice(cut2)];
      c.write(`BDAT ${parts[0].length}\r\n${parts[0]}`);
      assert.deepEqual((await c.read()).lines, [`250 2.0.0 ${parts[0].length} octets received`]);
      c.write(`BDAT ${parts[1].length}\r\n${parts[1]}`);
      assert.deepEqual((await c.read()).lines, [`250 2.0.0 ${cut2} octets received`]);
      c.write(`BDAT ${parts[2].length} LAST\r\n${parts[2]}`);
      const done = await c.read();
      assert.match(done.lines[0], /^250 2\.0\.0 Ok: queued as \S+$/);
      const m = await messageById(p, queuedId(done.text));
      assert.equal(splitReceived(m.body).rest.toString(), content);
    } finally {
      c.destroy();
    }
  });

  test("whole transaction pipelined in one write, then BDAT 0 LAST", async () => {
    const { c } = await greet(p.mx);
    try {
      const a = "Subject: one write\r\n\r\nfirst chunk\r\n";
      const b = "second chunk\r\n";
      c.write(`MAIL FROM:<carol@sender.test>\r\nRCPT TO:<bob@example.test>\r\nBDAT ${a.length}\r\n${a}BDAT ${b.length}\r\n${b}BDAT 0 LAST\r\nQUIT\r\n`);
      const rs = await c.readN(6);
      assert.deepEqual(codes(rs), [250, 250, 250, 250, 250, 221]);
      const m = await messageById(p, queuedId(rs[4].text));
      assert.equal(splitReceived(m.body).rest.toString(), a + b);
    } finally {
      c.destroy();
    }
  });

  test("BDAT without MAIL: 503, the chunk is swallowed, the session goes on", async () => {
    const { c } = await greet(p.mx);
    try {
      // The 10-octet chunk looks like commands; none of them may run.
      c.write("BDAT 10 LAST\r\nNOOP\r\nQUIT");
      assert.deepEqual((await c.read()).lines, ["503 5.5.1 Error: need MAIL command"]);
      assert.deepEqual((await c.cmd("NOOP")).lines, ["250 2.0.0 Ok"]);
    } finally {
      c.destroy();
    }
  });
});

describe("SCRAM-SHA-256 over a real socket", { timeout: 30_000 }, () => {
  async function scram(c: LineClient, password: string): Promise<{ final: SmtpReply; verified: boolean | null }> {
    const client = new ScramSha256Client(ALICE.address, password);
    c.write(`AUTH SCRAM-SHA-256 ${client.clientFirst().toString("base64")}\r\n`);
    const first = await c.read();
    assert.equal(first.code, 334, first.lines.join("|"));
    const serverFirst = Buffer.from(first.text, "base64");
    assert.match(serverFirst.toString(), /^r=[^,]+,s=[A-Za-z0-9+/=]+,i=\d+$/);
    c.write(client.clientFinal(serverFirst).toString("base64") + "\r\n");
    const second = await c.read();
    if (second.code !== 334) return { final: second, verified: null };
    const serverFinal = Buffer.from(second.text, "base64");
    assert.match(serverFinal.toString(), /^v=[A-Za-z0-9+/=]+$/);
    const verified = client.verifyServerFinal(serverFinal);
    // RFC 4954 §4: the server-final rides on a 334; the client answers with an empty line.
    const final = await c.cmd("");
    return { final, verified };
  }

  test("STARTTLS then SCRAM: 334 server-first, 334 v=..., empty line, 235 2.7.0; then a send", async () => {
    const { c } = await greet(p.submission, { helo: "scram.test" });
    try {
      await startTls(c);
      const ehlo = await c.cmd("EHLO scram.test");
      assert.ok(ehlo.lines.includes("250-AUTH SCRAM-SHA-256 PLAIN LOGIN"));
      const { final, verified } = await scram(c, ALICE.password);
      assert.equal(verified, true);
      assert.deepEqual(final.lines, ["235 2.7.0 Authentication successful"]);
      assert.equal((await c.cmd(`MAIL FROM:<${ALICE.address}>`)).code, 250);
      assert.equal((await c.cmd("RCPT TO:<friend@foreign.test>")).code, 250);
      const body = "Subject: scram\r\nMessage-ID: <s@c>\r\nDate: Tue, 2 Jan 2024 10:00:00 +0000\r\n\r\nhi\r\n";
      c.write(`BDAT ${body.length} LAST\r\n${body}`);
      const done = await c.read();
      const m = await messageById(p, queuedId(done.text));
      assert.equal(m.envelope.client.authUser, ALICE.address);
      assert.equal(m.envelope.client.protocol, "ESMTPSA");
      assert.equal(splitReceived(m.body).rest.toString(), body);
    } finally {
      c.destroy();
    }
  });

  test("SCRAM with the wrong password: 535 5.7.8 after the client-final", async () => {
    const { c } = await greet(p.submissions, { tls: true });
    try {
      const { final, verified } = await scram(c, "wrong password");
      assert.equal(verified, null);
      assert.deepEqual(final.lines, ["535 5.7.8 Authentication credentials invalid"]);
    } finally {
      c.destroy();
    }
  });
});

describe("STARTTLS plaintext injection (CVE-2011-0411)", { timeout: 30_000 }, () => {
  test("a MAIL pipelined after STARTTLS is discarded; EHLO is needed again", async () => {
    const before = await ids(p);
    const { c } = await greet(p.mx, { helo: "inject.test" });
    try {
      c.write("STARTTLS\r\nMAIL FROM:<x@y.test>\r\n");
      assert.deepEqual((await c.read()).lines, ["220 2.0.0 Ready to start TLS"]);
      await c.startTls();
      // Had the injected MAIL run, this RCPT would be accepted.
      assert.deepEqual((await c.cmd("RCPT TO:<bob@example.test>")).lines, ["503 5.5.1 Error: need MAIL command"]);
      assert.deepEqual((await c.cmd("MAIL FROM:<x@y.test>")).lines, ["503 5.5.1 Error: send HELO/EHLO first"]);
      const ehlo = await c.cmd("EHLO inject.test");
      assert.equal(ehlo.code, 250);
      assert.ok(!ehlo.lines.some((l) => l.includes("STARTTLS")));
      assert.equal((await c.cmd("MAIL FROM:<x@y.test>")).code, 250);
      assert.equal((await c.cmd("RCPT TO:<bob@example.test>")).code, 250);
      assert.equal((await c.cmd("DATA")).code, 354);
      const done = await c.cmd("Subject: after tls\r\n\r\nok\r\n.");
      const m = await messageById(p, queuedId(done.text));
      assert.equal(m.envelope.client.protocol, "ESMTPS");
      assert.deepEqual((await added(p, before)).map((x) => x.id), [m.id]);
    } finally {
      c.destroy();
    }
  });
});

describe("garbage on the port", { timeout: 30_000 }, () => {
  test("a TLS ClientHello on the plaintext mx port fails; the server keeps serving", async () => {
    await assert.rejects(new Promise<void>((resolve, reject) => {
      const s = tls.connect({ host: "127.0.0.1", port: p.mx, rejectUnauthorized: false }, () => {
        s.destroy();
        resolve();
      });
      s.once("error", reject);
    }));
    await stillServing(p.mx);
  });

  test("the server answers a raw ClientHello with 554 5.5.0 and closes", async () => {
    const c = await LineClient.connect(p.mx);
    try {
      assert.equal((await c.read()).code, 220);
      // The first bytes of a TLS 1.2 ClientHello record.
      c.write(Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03]));
      const rs = await c.readUntilClosed();
      assert.deepEqual(rs.map((r) => r.lines[0]), ["554 5.5.0 Error: this is an SMTP server, not a web or TLS endpoint; closing connection"]);
    } finally {
      c.destroy();
    }
  });

  test("an HTTP request gets 554 and the connection is closed", async () => {
    const c = await LineClient.connect(p.mx);
    try {
      assert.equal((await c.read()).code, 220);
      c.write("GET / HTTP/1.1\r\nHost: mx.example.test\r\n\r\n");
      const rs = await c.readUntilClosed();
      assert.deepEqual(codes(rs), [554]);
      assert.match(rs[0].lines[0], /^554 5\.5\.0 /);
      assert.ok(c.isClosed);
    } finally {
      c.destroy();
    }
    await stillServing(p.mx);
  });

  test("10 KB of random bytes: errors, then 421 and close; the server keeps serving", async () => {
    const c = await LineClient.connect(p.mx);
    try {
      assert.equal((await c.read()).code, 220);
      let junk = randomBytes(10 * 1024);
      if (junk[0] === 0x16) junk[0] = 0x17; // not a TLS record (tested above)
      // Random bytes hold ~40 LFs; 25 more bare-LF lines make sure the error limit (20) is reached.
      junk = Buffer.concat([junk, Buffer.from("junk\n".repeat(25))]);
      c.write(junk);
      const rs = await c.readUntilClosed();
      assert.ok(c.isClosed);
      assert.ok(rs.length > 0);
      for (const r of rs.slice(0, -1)) assert.ok(r.code >= 500 && r.code < 600, r.lines[0]);
      // Normally the hard error limit ends it; a random line that starts with an HTTP verb would end it with 554.
      const last = rs[rs.length - 1].lines[0];
      assert.ok(last === "421 4.7.0 Error: too many errors, closing connection" || last.startsWith("554 5.5.0 "), last);
    } finally {
      c.destroy();
    }
    await stillServing(p.mx);
  });

  test("a command ending in a bare LF: 500 5.5.2", async () => {
    const { c } = await greet(p.mx);
    try {
      c.write("NOOP\n");
      assert.match((await c.read()).lines[0], /^500 5\.5\.2 Error: bare <LF> received/);
      assert.equal((await c.cmd("NOOP")).code, 250);
    } finally {
      c.destroy();
    }
  });
});

describe("SMTP smuggling", { timeout: 30_000 }, () => {
  const smuggled =
    "Subject: carrier\r\n" +
    "\r\n" +
    "part one\n" +
    ".\n" +
    "MAIL FROM:<evil@attacker.test>\r\n" +
    "RCPT TO:<victim@example.test>\r\n" +
    "DATA\r\n" +
    "Subject: smuggled A\r\n" +
    "\r\n" +
    "evil A\r\n" +
    ".\n" +
    "MAIL FROM:<evil2@attacker.test>\r\n" +
    "RCPT TO:<victim@example.test>\r\n" +
    "DATA\r\n" +
    "Subject: smuggled B\r\n" +
    "\r\n" +
    "evil B\n" +
    ".\r\n" +
    "RSET\r\n" +
    "last line\r\n";

  async function sendSmuggled(server: TestPetrel): Promise<SmtpReply[]> {
    const { c } = await greet(server.mx, { helo: "smuggler.test" });
    try {
      assert.equal((await c.cmd("MAIL FROM:<carrier@sender.test>")).code, 250);
      assert.equal((await c.cmd("RCPT TO:<bob@example.test>")).code, 250);
      assert.equal((await c.cmd("DATA")).code, 354);
      c.write(smuggled + ".\r\nQUIT\r\n");
      return await c.readUntilClosed();
    } finally {
      c.destroy();
    }
  }

  test("'\\n.\\n', '\\r\\n.\\n' and '\\n.\\r\\n' are content: exactly one message, holding the smuggled text", async () => {
    const before = await ids(p);
    const rs = await sendSmuggled(p);
    assert.deepEqual(codes(rs), [250, 221]);
    const got = await added(p, before);
    assert.equal(got.length, 1);
    assert.equal(got[0].id, queuedId(rs[0].text));
    assert.deepEqual(got[0].envelope.recipients, [{ address: "bob@example.test" }]);
    assert.equal(got[0].envelope.mailFrom, "carrier@sender.test");
    // bareNewline "normalize": each bare LF became CRLF; the dot lines stay as content.
    assert.equal(splitReceived(got[0].body).rest.toString(), smuggled.replace(/(?<!\r)\n/g, "\r\n"));
  });

  test("with bareNewline: reject → 550 5.5.2 and nothing stored", async () => {
    const strict = await startPetrel({ limits: { shutdownGrace: 2 }, smtp: { bareNewline: "reject" } });
    try {
      const rs = await sendSmuggled(strict);
      assert.deepEqual(rs.map((r) => r.lines[0]), [
        "550 5.5.2 Error: message contains bare <CR> or <LF>; SMTP requires <CR><LF> line ends (RFC 5321 §2.3.8)",
        "221 2.0.0 mx.example.test closing connection",
      ]);
      assert.deepEqual(await strict.server.spool.list(), []);
    } finally {
      await strict.stop();
    }
  });
});

describe("limits over the wire", { timeout: 30_000 }, () => {
  let small: TestPetrel;
  before(async () => {
    small = await startPetrel({ limits: { shutdownGrace: 2, messageSize: 2000 } });
  });
  after(async () => {
    await small?.stop();
  });

  test("DATA larger than SIZE without a SIZE parameter: 552 5.3.4 after the end, session usable", async () => {
    const { c } = await greet(small.mx);
    try {
      assert.equal((await c.cmd("MAIL FROM:<carol@sender.test>")).code, 250);
      assert.equal((await c.cmd("RCPT TO:<bob@example.test>")).code, 250);
      assert.equal((await c.cmd("DATA")).code, 354);
      c.write("Subject: big\r\n\r\n" + ("y".repeat(98) + "\r\n").repeat(40) + ".\r\n");
      assert.deepEqual((await c.read()).lines, ["552 5.3.4 Error: message size exceeds fixed maximum message size (2000 octets)"]);
      assert.equal((await c.cmd("MAIL FROM:<carol@sender.test>")).code, 250);
      assert.deepEqual(await small.server.spool.list(), []);
    } finally {
      c.destroy();
    }
  });

  test("BDAT larger than SIZE: 552 5.3.4, nothing stored", async () => {
    const { c } = await greet(small.mx);
    try {
      const chunk = "z".repeat(3000);
      c.write(`MAIL FROM:<carol@sender.test>\r\nRCPT TO:<bob@example.test>\r\nBDAT ${chunk.length} LAST\r\n${chunk}`);
      const rs = await c.readN(3);
      assert.deepEqual(codes(rs), [250, 250, 552]);
      assert.match(rs[2].lines[0], /^552 5\.3\.4 /);
      assert.equal((await c.cmd("NOOP")).code, 250);
      assert.deepEqual(await small.server.spool.list(), []);
    } finally {
      c.destroy();
    }
  });
});

describe("a client that goes away during the TLS handshake", { timeout: 30_000 }, () => {
  /**
   * BUG (src/server/connection.ts, upgrade()): the 30 s HANDSHAKE_TIMEOUT timer is
   * cleared only on "secure" or "error", not when the socket closes. A client that
   * disconnects after "220 Ready to start TLS" (or right after connecting to the
   * implicit-TLS port) leaves a referenced timer behind: after SmtpServer.close()
   * the process cannot exit for up to 30 s (`petrel serve` lingers after SIGTERM),
   * and "TLS handshake timeout" is logged for a connection long gone.
   * Run in a child process that reports which resources still hold its event loop.
   */
  for (const [name, port, script] of [
    ["after STARTTLS's 220", "submission", ["EHLO x.test\r\n", "STARTTLS\r\n"]],
    ["on the implicit-TLS port", "submissions", []],
  ] as const) {
    test(`${name}: after close(), no timer is left holding the process`, async () => {
      const petrel = new URL("./petrel.ts", import.meta.url).href;
      const child = `
        import * as net from "node:net";
        const { startPetrel } = await import(${JSON.stringify(petrel)});
        const p = await startPetrel({ limits: { shutdownGrace: "200ms" } });
        const script = ${JSON.stringify(script)};
        await new Promise((resolve) => {
          const s = net.connect(p.${port}, "127.0.0.1");
          if (script.length === 0) s.on("connect", () => s.destroy());
          // Answer each reply with the next line; after the last reply, hang up.
          else s.on("data", () => { const next = script.shift(); if (next) s.write(next); else s.destroy(); });
          s.on("close", resolve);
        });
        await p.stop();
        process.stdout.write(JSON.stringify(process.getActiveResourcesInfo()));
        process.exit(0);
      `;
      const out = await run(process.execPath, ["--input-type=module", "-e", child], 10_000);
      assert.equal(out.code, 0, out.stderr);
      const resources = JSON.parse(out.stdout) as string[];
      assert.deepEqual(resources.filter((r) => r === "Timeout"), []);
    });
  }
});
