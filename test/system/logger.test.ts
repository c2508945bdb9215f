/**
 * The logger's choices: JSON or readable lines by `log.format` and whether
 * stdout is a terminal, and fields named like a secret redacted wherever a
 * caller puts them.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { chooseLogFormat, createLogger } from "../../src/system/logger.ts";

function capture(isTTY: boolean): PassThrough & { isTTY: boolean; text(): string } {
  const s = new PassThrough() as PassThrough & { isTTY: boolean; text(): string };
  let out = "";
  s.setEncoding("utf8");
  s.on("data", (d: string) => (out += d));
  s.isTTY = isTTY;
  s.text = () => out;
  return s;
}

test("auto is pretty on a terminal and JSON elsewhere; json and pretty are what they say", () => {
  assert.equal(chooseLogFormat("auto", true), "pretty");
  assert.equal(chooseLogFormat("auto", false), "json");
  assert.equal(chooseLogFormat("auto", undefined), "json");
  assert.equal(chooseLogFormat("json", true), "json");
  assert.equal(chooseLogFormat("pretty", false), "pretty");
});

test("fields named like secrets are redacted at any of the first three levels, in both formats", async () => {
  for (const format of ["json", "pretty"] as const) {
    const out = capture(false);
    const log = createLogger({ level: "trace", format }, { stream: out });
    log.info({ password: "pw-top-1", auth: { user: "u", pass: "pw-nested-2" }, err: { request: { authorization: "Bearer tok-3" } }, token: "tok-4" }, "event");
    log.trace({ admin: { secret: "sec-5" } }, "deep");
    await new Promise((r) => setImmediate(r));
    const text = out.text();
    assert.match(text, /event/);
    assert.match(text, /\[redacted\]/);
    assert.match(text, /"user":"u"/, "other fields stay");
    for (const s of ["pw-top-1", "pw-nested-2", "tok-3", "tok-4", "sec-5"]) assert.ok(!text.includes(s), `${format}: ${s} in ${text}`);
  }
});
