/**
 * Two limits that only a whole server shows: the whole-session cap
 * (limits.sessionTimeout) and the greeting delay that catches clients
 * talking before the 220 (Postfix's pregreet test).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as net from "node:net";
import { startPetrel } from "./petrel.ts";

/** Collect everything the server says until it closes (bounded). */
function transcript(socket: net.Socket, limitMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`server did not close within ${limitMs} ms; got: ${out}`));
    }, limitMs);
    socket.on("data", (d) => (out += d.toString()));
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(out);
    });
    socket.on("error", () => {});
  });
}

test("limits.sessionTimeout: a busy session is cut with 421 4.4.2 when the session cap is reached", async () => {
  const p = await startPetrel({ limits: { sessionTimeout: 1, commandTimeout: 30, shutdownGrace: 1 } });
  try {
    const s = net.connect(p.mx, "127.0.0.1");
    const said = transcript(s, 5000);
    // Keep the session busy so the command timeout never fires.
    const noop = setInterval(() => s.writable && s.write("NOOP\r\n"), 150);
    const out = await said.finally(() => clearInterval(noop));
    assert.match(out, /^220 /);
    assert.match(out, /250 2\.0\.0 Ok\r\n/);
    assert.match(out, /421 4\.4\.2 mx\.example\.test Error: session time limit exceeded\r\n$/);
  } finally {
    await p.stop();
  }
});

test("smtp.greetingDelay: a client that talks before the greeting gets 554 and is closed; one that waits is served", async () => {
  const p = await startPetrel({ smtp: { greetingDelay: "300ms" }, limits: { shutdownGrace: 1 } });
  try {
    const early = net.connect(p.mx, "127.0.0.1");
    const earlyOut = transcript(early, 5000);
    early.on("connect", () => early.write("EHLO spammer.test\r\n"));
    const out = await earlyOut;
    assert.doesNotMatch(out, /^220 /, "no greeting for an early talker");
    assert.match(out, /^554 5\.5\.0 Error: improper command pipelining before the greeting/);

    const polite = net.connect(p.mx, "127.0.0.1");
    const politeOut = transcript(polite, 5000);
    let greeted = false;
    polite.on("data", (d) => {
      if (!greeted && d.toString().startsWith("220 ")) {
        greeted = true;
        polite.write("QUIT\r\n");
      }
    });
    assert.match(await politeOut, /^220 mx\.example\.test Petrel ESMTP\r\n221 2\.0\.0 /);
  } finally {
    await p.stop();
  }
});
