import assert from "node:assert/strict";
import { ConfigError } from "../../src/config/config-error.ts";

/** The ConfigError thrown by fn. */
export function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err;
  }
  assert.fail("expected a ConfigError, nothing was thrown");
}
