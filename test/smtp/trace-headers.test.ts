import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { messageId, protocolKeyword, receivedHeader, rfc5322Date } from "../../src/smtp/trace-headers.ts";

const date = new Date(Date.UTC(2024, 0, 7, 9, 5, 3));

describe("trace headers", () => {
  test("RFC 5322 date in UTC", () => {
    assert.equal(rfc5322Date(date), "Sun, 7 Jan 2024 09:05:03 +0000");
    assert.equal(rfc5322Date(new Date(Date.UTC(1999, 11, 31, 23, 59, 59))), "Fri, 31 Dec 1999 23:59:59 +0000");
  });

  test("protocol keywords (RFC 3848, RFC 6531 §4.3)", () => {
    const k = (esmtp: boolean, tls: boolean, authenticated: boolean, smtputf8: boolean): string =>
      protocolKeyword({ esmtp, tls, authenticated, smtputf8 });
    assert.equal(k(false, false, false, false), "SMTP");
    assert.equal(k(true, false, false, false), "ESMTP");
    assert.equal(k(true, true, false, false), "ESMTPS");
    assert.equal(k(true, false, true, false), "ESMTPA");
    assert.equal(k(true, true, true, false), "ESMTPSA");
    assert.equal(k(true, true, true, true), "UTF8SMTPSA");
    assert.equal(k(true, false, false, true), "UTF8SMTP");
  });

  test("Received field, Postfix shape, folded with CRLF + tab", () => {
    const h = receivedHeader({
      helo: "client.example", clientAddress: "192.0.2.1", clientHostname: "client.example", by: "mx.test",
      protocol: "ESMTPS", queueId: "ABC123", tls: { version: "TLSv1.3", cipher: "TLS_AES_128_GCM_SHA256" },
      recipient: "bob@mx.test", date,
    });
    assert.equal(h,
      "Received: from client.example (client.example [192.0.2.1])\r\n" +
      "\t(using TLSv1.3 with cipher TLS_AES_128_GCM_SHA256)\r\n" +
      "\tby mx.test (Petrel) with ESMTPS id ABC123\r\n" +
      "\tfor <bob@mx.test>; Sun, 7 Jan 2024 09:05:03 +0000\r\n");
  });

  test("IPv6 literal, no rDNS, several recipients (no for clause)", () => {
    const h = receivedHeader({ helo: "x", clientAddress: "2001:db8::1", by: "mx.test", protocol: "ESMTP", queueId: "Q", date });
    assert.equal(h, "Received: from x ([IPv6:2001:db8::1])\r\n\tby mx.test (Petrel) with ESMTP id Q; Sun, 7 Jan 2024 09:05:03 +0000\r\n");
  });

  test("client-supplied text cannot break the header", () => {
    const h = receivedHeader({
      helo: "evil\r\nX-Injected: 1 (a) <b> \\ \x00\x1b\x7f", clientAddress: "192.0.2.1", by: "mx.test", protocol: "ESMTP",
      queueId: "Q", recipient: "a>\r\nX-Evil: 1@b", date,
    });
    const lines = h.split("\r\n");
    assert.equal(lines.at(-1), "");
    for (const line of lines.slice(1, -1)) assert.ok(line.startsWith("\t"), JSON.stringify(line));
    assert.ok(!/[\x00-\x08\x0a-\x1f\x7f]/.test(h.replace(/\r\n\t/g, "").replace(/\r\n$/, "")), JSON.stringify(h));
    assert.ok(!h.includes("(a)"));
  });

  test("Message-ID from the queue id", () => {
    assert.equal(messageId("ABC", "mx.test"), "<ABC@mx.test>");
  });
});
