import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { ALICE, startPetrel, type TestPetrel } from "../e2e/petrel.ts";
import { messageById } from "../e2e/interop-helpers.ts";
import { parseServer, queueIdOf, send } from "../../src/client/send.ts";
import { SmtpClientError } from "../../src/client/smtp-connection.ts";
import * as api from "../../src/client/index.ts";

let p: TestPetrel;
before(async () => {
  p = await startPetrel();
});
after(async () => {
  await p?.stop();
});

test("parseServer: ports and TLS defaults", () => {
  assert.deepEqual(parseServer("mail.example.com"), { host: "mail.example.com", port: 587, tls: "starttls" });
  assert.deepEqual(parseServer("mail.example.com:465"), { host: "mail.example.com", port: 465, tls: "implicit" });
  assert.deepEqual(parseServer("mail.example.com:25"), { host: "mail.example.com", port: 25, tls: "starttls" });
  assert.deepEqual(parseServer("mail.example.com", "implicit"), { host: "mail.example.com", port: 465, tls: "implicit" });
  assert.deepEqual(parseServer("[::1]:2525", "none"), { host: "::1", port: 2525, tls: "none" });
  assert.deepEqual(parseServer("::1"), { host: "::1", port: 587, tls: "starttls" });
  assert.throws(() => parseServer("host:99999"), /out of range/);
  assert.throws(() => parseServer("a:b:c"), /HOST:PORT/);
});

test("queueIdOf", () => {
  assert.equal(queueIdOf({ code: 250, status: "2.0.0", lines: ["Ok: queued as 4Xy7Z"] }), "4Xy7Z");
  assert.equal(queueIdOf({ code: 250, lines: ["OK 1700000000 abc - gsmtp"] }), undefined);
});

test("send(): accepted, rejected and the queue id; the index exports the API", async () => {
  assert.equal(api.send, send);
  const r = await send({
    server: `127.0.0.1:${p.submissions}`, tls: "implicit", insecure: true, user: ALICE.address, password: ALICE.password, heloName: "api.test",
    from: ALICE.address, to: ["bob@example.test", "carol@example.test"], subject: "api", text: "hello",
  });
  assert.equal(r.response.code, 250);
  assert.deepEqual(r.accepted, ["bob@example.test", "carol@example.test"]);
  assert.deepEqual(r.rejected, []);
  const m = await messageById(p, r.queueId!);
  assert.equal(m.envelope.client.role, "submissions");
});

test("send(): every recipient refused throws with the list", async () => {
  await assert.rejects(
    send({ server: `127.0.0.1:${p.mx}`, tls: "none", from: "x@remote.test", to: ["a@other.org", "b@other.org"], text: "x" }),
    (e: unknown) => {
      assert.ok(e instanceof SmtpClientError);
      assert.equal(e.phase, "RCPT");
      assert.equal(e.reply?.code, 554);
      assert.deepEqual(e.rejected?.map((x) => x.address), ["a@other.org", "b@other.org"]);
      assert.match(api.explain(e), /will not relay.*a@other\.org: 554 5\.7\.1.*b@other\.org: 554/);
      return true;
    },
  );
});
