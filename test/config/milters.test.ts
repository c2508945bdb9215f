/**
 * The `milters:` key: each filter's address, timeouts (Postfix's defaults),
 * default action and listeners, and the errors a person sees when an entry
 * is wrong.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { ConfigError } from "../../src/config/config-error.ts";
import { parseConfigText } from "../../src/config/load.ts";

function errorOf(text: string): ConfigError {
  try {
    parseConfigText(text, "petrel.yaml");
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err;
  }
  assert.fail("expected a ConfigError");
}

test("milters: none by default; an entry gets Postfix's timeouts and default action", () => {
  assert.deepEqual(parseConfigText("{}\n", "/etc/petrel/petrel.yaml").milters, []);
  const config = parseConfigText(
    `
milters:
  - { name: rspamd, address: "inet:127.0.0.1:11332" }
  - name: opendkim
    address: unix:/run/opendkim/opendkim.sock
    connectTimeout: 5s
    commandTimeout: 10s
    endOfMessageTimeout: 2m
    defaultAction: accept
    listeners: [submission, submissions]
  - { name: v6, address: "inet:[::1]:8891" }
`,
    "/etc/petrel/petrel.yaml",
  );
  assert.deepEqual(config.milters, [
    {
      name: "rspamd", address: { kind: "inet", host: "127.0.0.1", port: 11332 },
      connectTimeout: 30_000, commandTimeout: 30_000, endOfMessageTimeout: 300_000, defaultAction: "tempfail",
    },
    {
      name: "opendkim", address: { kind: "unix", path: "/run/opendkim/opendkim.sock" },
      connectTimeout: 5000, commandTimeout: 10_000, endOfMessageTimeout: 120_000, defaultAction: "accept", listeners: ["submission", "submissions"],
    },
    {
      name: "v6", address: { kind: "inet", host: "::1", port: 8891 },
      connectTimeout: 30_000, commandTimeout: 30_000, endOfMessageTimeout: 300_000, defaultAction: "tempfail",
    },
  ]);
});

test("milters: a wrong entry names the key, the value and what is allowed", () => {
  const address = errorOf('milters: [{ name: rspamd, address: "127.0.0.1:11332" }]\n');
  assert.match(address.message, /milters\[0\]\.address: .*"127\.0\.0\.1:11332".*expected "inet:host:port"/);

  const action = errorOf('milters: [{ name: rspamd, address: "inet:127.0.0.1:11332", defaultAction: reject }]\n');
  assert.match(action.message, /milters\[0\]\.defaultAction/);
  assert.match(action.message, /accept/);

  const zero = errorOf('milters: [{ name: rspamd, address: "inet:127.0.0.1:11332", commandTimeout: 0 }]\n');
  assert.match(zero.message, /milters\[0\]\.commandTimeout: .*expected a duration above 0/);

  const name = errorOf('milters: [{ name: "Spam Filter", address: "inet:127.0.0.1:11332" }]\n');
  assert.match(name.message, /milters\[0\]\.name: .*expected a short lower-case name/);

  const twice = errorOf('milters:\n  - { name: rspamd, address: "inet:127.0.0.1:11332" }\n  - { name: rspamd, address: "inet:127.0.0.1:11333" }\n');
  assert.match(twice.message, /milters\[1\]\.name: .*expected each name once: milters\[0\] has the same name/);

  const role = errorOf('milters: [{ name: dkim, address: "inet:127.0.0.1:8891", listeners: [smtp] }]\n');
  assert.match(role.message, /milters\[0\]\.listeners\[0\]/);

  const typo = errorOf('milters: [{ name: dkim, address: "inet:127.0.0.1:8891", timeout: 5s }]\n');
  assert.match(typo.message, /unknown key 'timeout'/);
});
