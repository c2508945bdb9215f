import { test } from "node:test";
import assert from "node:assert/strict";
import { certificateNames, nextCheck, orderReason, renewalTime, retryDelay, warningTime, type HeldCertificate } from "../../src/acme/renewal.ts";

const DAY = 86_400_000;
const t0 = Date.UTC(2026, 0, 1);
const held: HeldCertificate = { notBefore: t0, notAfter: t0 + 90 * DAY, names: ["mail.example.com", "mta-sts.example.com"], selfSigned: false, serialNumber: "01" };

test("a 90-day certificate is renewed on day 60 and warned about on day 75", () => {
  assert.equal(renewalTime(held), t0 + 60 * DAY);
  assert.equal(warningTime(held), t0 + 75 * DAY);
  assert.equal(orderReason(held, ["mail.example.com"], t0 + 60 * DAY - 1), null);
  assert.equal(orderReason(held, ["mail.example.com"], t0 + 60 * DAY), "due");
});

test("an order is needed for no certificate, the placeholder, or a missing name", () => {
  assert.equal(orderReason(undefined, ["a.example"], t0), "missing");
  assert.equal(orderReason({ ...held, selfSigned: true }, ["mail.example.com"], t0), "placeholder");
  assert.equal(orderReason(held, ["mail.example.com", "mta-sts.other.example"], t0 + DAY), "names");
  assert.equal(orderReason(held, ["MAIL.example.com"], t0 + DAY), null);
});

test("retries wait 10 minutes, doubling to at most 12 hours", () => {
  assert.deepEqual([1, 2, 3, 4].map(retryDelay), [10, 20, 40, 80].map((m) => m * 60_000));
  assert.equal(retryDelay(50), 12 * 3600_000);
});

test("the next look is at the renewal time, at least twice a day", () => {
  assert.equal(nextCheck(held, t0 + 59 * DAY + 23 * 3600_000), t0 + 60 * DAY);
  assert.equal(nextCheck(held, t0 + DAY), t0 + DAY + 12 * 3600_000);
});

test("certificate names: hostname first, mta-sts names of the policy domains, none a CA refuses", () => {
  assert.deepEqual(
    certificateNames("Mail.Example.com", ["smtp.example.com", "mail.example.com", "box.local"], ["example.com", "localhost", "example.org"]),
    ["mail.example.com", "smtp.example.com", "mta-sts.example.com", "mta-sts.example.org"],
  );
  assert.deepEqual(certificateNames("localhost", [], []), []);
});
