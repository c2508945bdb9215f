/**
 * limits.messageSize: 0 is refused at start-up with the usual configuration
 * error, not read as Postfix's "unlimited" (and never advertised as SIZE 0).
 */
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

describe("limits.messageSize", () => {
  test("0 is refused with the key, the value and why", () => {
    const err = configError("limits:\n  messageSize: 0\n");
    assert.equal(err.path, "limits.messageSize");
    assert.equal(err.value, 0);
    assert.equal(err.issues[0].line, 2);
    assert.match(err.message, /^petrel\.yaml:2:\d+: limits\.messageSize: got 0; expected at least 1 byte: Petrel has no "unlimited"/);
    assert.match(err.message, /"1GiB"/);
  });

  test('"0MiB" and "0 B" are 0 too', () => {
    assert.equal(configError('limits:\n  messageSize: "0MiB"\n').path, "limits.messageSize");
    assert.equal(configError('limits:\n  messageSize: "0 B"\n').path, "limits.messageSize");
  });

  test("1 byte and large sizes are accepted", () => {
    assert.equal(parseConfigText("limits:\n  messageSize: 1\n", "petrel.yaml").limits.messageSize, 1);
    assert.equal(parseConfigText("limits:\n  messageSize: 1GiB\n", "petrel.yaml").limits.messageSize, 1024 ** 3);
  });
});
