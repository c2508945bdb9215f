import { test } from "node:test";
import assert from "node:assert/strict";
import { parseAnswerPattern, parseSite } from "../../src/config/dnsbl-sites.ts";

function site(text: string) {
  const r = parseSite(text);
  if (!r.ok) throw new Error(r.reason);
  return { zone: r.value.zone, weight: r.value.weight, filter: r.value.filter?.pattern };
}

test("sites are written as postscreen_dnsbl_sites writes them: zone, =filter, *weight (negative: an allowlist)", () => {
  assert.deepEqual(site("zen.spamhaus.org"), { zone: "zen.spamhaus.org", weight: 1, filter: undefined });
  assert.deepEqual(site("Zen.Spamhaus.ORG.*3"), { zone: "zen.spamhaus.org", weight: 3, filter: undefined });
  assert.deepEqual(site("zen.spamhaus.org=127.0.0.[2..11]*3"), { zone: "zen.spamhaus.org", weight: 3, filter: "127.0.0.[2..11]" });
  assert.deepEqual(site("list.dnswl.org=127.0.[0..255].[1..3]*-2"), { zone: "list.dnswl.org", weight: -2, filter: "127.0.[0..255].[1..3]" });
  assert.deepEqual(site("bl.test=127.0.0.2"), { zone: "bl.test", weight: 1, filter: "127.0.0.2" });
  for (const bad of ["", "nodot", "bl.test=127.0.0", "bl.test=127.0.0.[2..]", "bl.test=127.0.0.[3..2]", "bl.test*x", "bl.test=127.0.0.256", "bl..test", "bl test.org", "bl.test=127.0.0.2.5"]) {
    assert.equal(parseSite(bad).ok, false, bad);
  }
});

test("answer patterns: per octet a number, or ranges and numbers in brackets separated by ;", () => {
  const p = parseAnswerPattern("127.0.[0;1].[2..4;9]");
  assert.ok(p.ok);
  assert.deepEqual(p.value.octets, [[[127, 127]], [[0, 0]], [[0, 0], [1, 1]], [[2, 4], [9, 9]]]);
  for (const bad of ["127.0.0", "127.0.0.[]", "127.0.0.[2;]", "127.0.0.[2..4", "x.0.0.2", "127.0.0.2 "]) assert.equal(parseAnswerPattern(bad).ok, false, bad);
});
