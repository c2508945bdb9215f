/** listeners[].hide: EHLO keywords a listener neither advertises nor accepts. */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { ConfigError } from "../../src/config/config-error.ts";
import { parseConfigText } from "../../src/config/load.ts";

function configError(text: string): ConfigError {
  try {
    parseConfigText(text, "petrel.yaml");
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err;
  }
  assert.fail("expected a ConfigError, nothing was thrown");
}

const listener = (role: string, hide: string) => `listeners:\n  - address: 127.0.0.1\n    port: 0\n    role: ${role}\n    hide: ${hide}\n`;

describe("listeners[].hide", () => {
  test("keywords in any case are read as EHLO keywords; absent means nothing hidden", () => {
    const c = parseConfigText(listener("mx", "[dsn, Chunking, 8BITMIME, STARTTLS]"), "petrel.yaml");
    assert.deepEqual(c.listeners[0].hide, ["DSN", "CHUNKING", "8BITMIME", "STARTTLS"]);
    assert.equal(parseConfigText("{}", "petrel.yaml").listeners[0].hide, undefined);
  });

  test("an unknown keyword is refused with its place and the keywords allowed", () => {
    const err = configError(listener("mx", "[DSN, XCLIENT]"));
    assert.equal(err.path, "listeners[0].hide[1]");
    assert.equal(err.issues[0].line, 5);
    assert.match(err.message, /listeners\[0\]\.hide\[1\]: got "XCLIENT"; expected one of the EHLO keywords PIPELINING, SIZE, 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES, CHUNKING, DSN, STARTTLS, AUTH, REQUIRETLS, LIMITS$/);
  });

  test("a submission listener cannot hide AUTH or STARTTLS; submissions cannot hide AUTH", () => {
    assert.match(configError(listener("submission", "[AUTH]")).message, /listeners\[0\]\.hide\[0\]: got "AUTH"; a submission listener cannot hide AUTH/);
    assert.match(configError(listener("submission", "[DSN, STARTTLS]")).message, /listeners\[0\]\.hide\[1\]: got "STARTTLS"; a submission listener cannot hide STARTTLS: AUTH is offered only over TLS/);
    assert.match(configError(listener("submissions", "[auth]")).message, /cannot hide AUTH/);
    assert.deepEqual(parseConfigText(listener("submissions", "[STARTTLS, DSN]"), "petrel.yaml").listeners[0].hide, ["STARTTLS", "DSN"]);
    assert.deepEqual(parseConfigText(listener("mx", "[AUTH, STARTTLS]"), "petrel.yaml").listeners[0].hide, ["AUTH", "STARTTLS"]);
  });
});
