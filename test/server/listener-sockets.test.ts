/**
 * Listeners bound before Petrel serves (petrel serve binds as root, then
 * switches users): a client that connects in between is held, unread and
 * unanswered, and served once serving starts.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as net from "node:net";
import { once } from "node:events";
import { bindListeners, closeListeners } from "../../src/server/listener-sockets.ts";

test("a connection made before serve() gets nothing until then, and is served first; more than maxWaiting are closed", async () => {
  const [bound] = await bindListeners([{ address: "127.0.0.1", port: 0, role: "mx", proxyProtocol: false }], 2);
  const clients: net.Socket[] = [];
  try {
    const received: string[] = [];
    const connect = async () => {
      const c = net.connect(bound.port, "127.0.0.1");
      c.setEncoding("utf8");
      c.on("data", (d: string) => received.push(d));
      c.on("error", () => {});
      clients.push(c);
      await once(c, "connect");
      return c;
    };
    const early = await connect();
    early.write("EHLO early\r\n");
    await connect();
    const third = await connect();
    const thirdClosed = once(third, "close");
    await thirdClosed;
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(received, [], "nothing is said before serving starts");

    const served: net.Socket[] = [];
    bound.serve((socket) => {
      served.push(socket);
      socket.setEncoding("utf8");
      socket.once("data", (d: string) => socket.write(`got ${d.trim()}\r\n`));
      socket.write("220 ready\r\n");
    });
    assert.equal(served.length, 2, "the two waiting connections are handed over at once");
    await new Promise<void>((resolve) => early.on("data", () => received.join("").includes("got EHLO early") && resolve()));
    assert.equal(received.join("").startsWith("220 ready\r\n"), true);
    const late = await connect();
    await once(late, "data");
    assert.equal(served.length, 3, "later connections go straight to the handler");
    for (const s of served) s.destroy();
  } finally {
    for (const c of clients) c.destroy();
    await closeListeners([bound]);
  }
});
