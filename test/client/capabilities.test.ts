import { test } from "node:test";
import assert from "node:assert/strict";
import { parseCapabilities } from "../../src/client/capabilities.ts";

const ehlo = (...lines: string[]) => parseCapabilities({ code: 250, lines: ["mx.test", ...lines] });

test("RFC 9422 LIMITS: MAILMAX and RCPTMAX read, names case-insensitive, unknown names and non-positive or malformed values ignored", () => {
  assert.deepEqual(ehlo("LIMITS RCPTMAX=100 MAILMAX=1000").limits, { rcptMax: 100, mailMax: 1000 });
  assert.deepEqual(ehlo("limits mailmax=3 RCPTDOMAINMAX=5").limits, { mailMax: 3 });
  assert.deepEqual(ehlo("LIMITS MAILMAX=0 RCPTMAX=x RCPTMAX=-1").limits, {});
  assert.deepEqual(ehlo("PIPELINING").limits, {}, "no LIMITS: no limits known");
  assert.equal(ehlo("LIMITS MAILMAX=2").pipelining, false);
});
