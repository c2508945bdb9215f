import assert from "node:assert/strict";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { ConfigError } from "../../src/config/config-error.ts";
import { DEFAULTS, EMBEDDED_SOURCE } from "../../src/config/defaults.ts";
import { configError } from "./expect-config-error.ts";
import { defaultConfig, editDistance, loadConfig, parseConfig, parseConfigText, suggest } from "../../src/config/load.ts";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");


/** The one issue at `path`, asserting it exists. */
function issueAt(err: ConfigError, path: string) {
  const found = err.issues.filter((i) => i.path === path);
  assert.equal(found.length, 1, `one issue at ${path}; got:\n${err.message}`);
  return found[0];
}

describe("embedded default", () => {
  test("loads with no path and has the three listeners", async () => {
    const config = await loadConfig();
    assert.deepEqual(
      config.listeners.map((l) => `${l.address}:${l.port}/${l.role}/${l.proxyProtocol}`),
      ["127.0.0.1:2525/mx/false", "127.0.0.1:2587/submission/false", "127.0.0.1:2465/submissions/false"],
    );
    assert.equal(config.hostname, "localhost");
    assert.deepEqual(config.domains, ["localhost"]);
    assert.equal(config.dataDir, resolve(process.cwd(), "data"));
    assert.equal(config.tls.cert, undefined);
    assert.equal(config.tls.minVersion, "TLSv1.2");
    assert.deepEqual(config.tls.sni, []);
    assert.deepEqual(config.users, []);
    assert.equal(config.log.level, "info");
  });

  test("limits have the documented defaults, in bytes and milliseconds", () => {
    const { limits, smtp, submission } = defaultConfig();
    assert.equal(limits.messageSize, 26214400);
    assert.equal(limits.headerSize, 1048576);
    assert.equal(limits.recipients, 1000);
    assert.equal(limits.messagesPerConnection, 100);
    assert.equal(limits.commandLine, 2048);
    assert.equal(limits.softErrors, 10);
    assert.equal(limits.hardErrors, 20);
    assert.equal(limits.commandTimeout, 300_000);
    assert.equal(limits.dataTimeout, 300_000);
    assert.equal(limits.sessionTimeout, 3_600_000);
    assert.equal(limits.connections, 1000);
    assert.equal(limits.connectionsPerClient, 50);
    assert.equal(limits.authFailuresPerConnection, 3);
    assert.equal(limits.authFailuresPerClient, 10);
    assert.equal(limits.authBanTime, 600_000);
    assert.equal(limits.shutdownGrace, 30_000);
    assert.deepEqual(smtp, { bareNewline: "normalize", greetingDelay: 0, banner: "Petrel ESMTP" });
    assert.equal(submission.senderMustMatchLogin, true);
  });

  test("the defaults table and the parsed empty file agree", () => {
    const config = parseConfig({}, EMBEDDED_SOURCE, { baseDir: "/" });
    assert.deepEqual(config.limits, DEFAULTS.limits);
    assert.deepEqual(config.smtp, DEFAULTS.smtp);
    assert.deepEqual(config.listeners, DEFAULTS.listeners);
  });

  test("parsed configs do not share default arrays", () => {
    const a = defaultConfig();
    a.listeners.push({ address: "::1", port: 1, role: "mx", proxyProtocol: false });
    a.domains.push("x.test");
    const b = defaultConfig();
    assert.equal(b.listeners.length, 3);
    assert.deepEqual(b.domains, ["localhost"]);
  });
});

test("petrel.example.yaml parses to exactly the defaults", async () => {
  const file = join(repoRoot, "petrel.example.yaml");
  const fromExample = await loadConfig(file);
  const fromNothing = parseConfig({}, EMBEDDED_SOURCE, { baseDir: repoRoot });
  assert.deepEqual(fromExample, fromNothing);
});

test("values are converted and normalised", () => {
  const config = parseConfigText(
    `
hostname: MX.Example.COM
dataDir: state
domains: [Example.COM, "bücher.example."]
listeners:
  - { address: "::", port: 25, role: mx, proxyProtocol: true }
  - { address: 127.0.0.1, port: 0, role: submission }
  - { address: 127.0.0.1, port: 0, role: submissions }
proxyProtocol: { trusted: [10.0.0.0/8, "2001:db8::/32", 192.0.2.1] }
limits: { messageSize: 10MB, headerSize: 64KiB, commandTimeout: 5m, dataTimeout: 90, authBanTime: 1h, shutdownGrace: 500ms }
smtp: { bareNewline: reject, greetingDelay: 2s }
tls: { minVersion: TLSv1.3 }
users:
  - address: Alice@Example.COM
    password: "$scrypt$ln=15,r=8,p=1$c2FsdA$aGFzaA"
    scram: "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy"
    addresses: [postmaster@EXAMPLE.com]
log: { level: debug }
`,
    "/etc/petrel/petrel.yaml",
  );
  assert.equal(config.hostname, "mx.example.com");
  assert.equal(config.dataDir, "/etc/petrel/state");
  assert.deepEqual(config.domains, ["example.com", "xn--bcher-kva.example"]);
  assert.equal(config.listeners[1].port, 0);
  assert.equal(config.listeners[0].proxyProtocol, true);
  assert.equal(config.limits.messageSize, 10_000_000);
  assert.equal(config.limits.headerSize, 65536);
  assert.equal(config.limits.commandTimeout, 300_000);
  assert.equal(config.limits.dataTimeout, 90_000);
  assert.equal(config.limits.authBanTime, 3_600_000);
  assert.equal(config.limits.shutdownGrace, 500);
  assert.equal(config.smtp.greetingDelay, 2000);
  assert.equal(config.smtp.bareNewline, "reject");
  assert.equal(config.tls.minVersion, "TLSv1.3");
  assert.equal(config.users[0].address, "Alice@example.com");
  assert.deepEqual(config.users[0].addresses, ["postmaster@example.com"]);
  assert.equal(config.log.level, "debug");
});

test("an empty file is the default configuration", () => {
  const config = parseConfigText("# nothing here\n", "/srv/petrel.yaml");
  assert.equal(config.listeners.length, 3);
  assert.equal(config.dataDir, "/srv/data");
});

describe("errors name the key, the value and what is allowed", () => {
  test("unknown key, with the closest known key", () => {
    const err = configError(() => parseConfigText("limts:\n  messageSize: 10MB\n", "petrel.yaml"));
    const issue = issueAt(err, "limts");
    assert.match(issue.message, /^petrel\.yaml:1:1: limts: unknown key 'limts' \(did you mean 'limits'\?\)/);
    assert.equal(err.path, "limts");
  });

  test("unknown nested key, and snake_case suggests camelCase", () => {
    const err = configError(() => parseConfig({ limits: { message_size: 1 }, listeners: [{ address: "::1", port: 25, role: "mx", porxy: 1 }] }, "petrel.yaml"));
    assert.match(issueAt(err, "limits.message_size").message, /unknown key 'message_size' \(did you mean 'messageSize'\?\)/);
    assert.match(issueAt(err, "listeners[0].porxy").message, /unknown key 'porxy' \(did you mean 'port'\?\)/);
  });

  test("unknown key far from every known key gets no guess", () => {
    const err = configError(() => parseConfig({ frobnicate: 1 }, "petrel.yaml"));
    const issue = issueAt(err, "frobnicate");
    assert.doesNotMatch(issue.message, /did you mean/);
    assert.match(issue.message, /expected one of: hostname, dataDir/);
  });

  test("bad size string", () => {
    const err = configError(() => parseConfigText("limits:\n  messageSize: abc\n", "petrel.yaml"));
    assert.equal(err.message, 'petrel.yaml:2:3: limits.messageSize: got "abc"; expected a size such as 26214400, "25MiB" or "10MB"');
    assert.equal(err.path, "limits.messageSize");
    assert.equal(err.value, "abc");
    assert.equal(err.allowed, 'expected a size such as 26214400, "25MiB" or "10MB"');
    assert.equal(err.issues[0].line, 2);
  });

  test("bad duration", () => {
    const err = configError(() => parseConfig({ limits: { commandTimeout: "5 fortnights" } }, "petrel.yaml"));
    assert.match(issueAt(err, "limits.commandTimeout").message, /got "5 fortnights"; expected a duration: a number of seconds .*"30s", "5m"/);
  });

  test("negative and fractional numbers", () => {
    const err = configError(() => parseConfig({ limits: { recipients: -5, softErrors: 1.5 }, listeners: [{ address: "127.0.0.1", port: 70000, role: "mx" }] }, "petrel.yaml"));
    assert.equal(issueAt(err, "limits.recipients").message, "petrel.yaml: limits.recipients: got -5; expected a number >= 1");
    assert.match(issueAt(err, "limits.softErrors").message, /got 1\.5; expected a whole number/);
    assert.match(issueAt(err, "listeners[0].port").message, /got 70000; expected a number <= 65535/);
  });

  test("commandLine below RFC 5321's 512", () => {
    const err = configError(() => parseConfig({ limits: { commandLine: 100 } }, "petrel.yaml"));
    assert.match(issueAt(err, "limits.commandLine").message, /got 100; expected at least 512 bytes/);
  });

  test("bad role lists the allowed roles", () => {
    const err = configError(() => parseConfigText("listeners:\n  - address: 127.0.0.1\n    port: 25\n    role: smtp\n", "petrel.yaml"));
    const issue = issueAt(err, "listeners[0].role");
    assert.equal(issue.message, 'petrel.yaml:4:5: listeners[0].role: got "smtp"; expected one of "mx", "submission", "submissions"');
  });

  test("wrong types and missing keys", () => {
    const err = configError(() => parseConfig({ hostname: 5, domains: "example.com", listeners: [{ address: "localhost", role: "mx" }] }, "petrel.yaml"));
    assert.match(issueAt(err, "hostname").message, /got 5; expected a string/);
    assert.match(issueAt(err, "domains").message, /got "example\.com"; expected a list/);
    assert.match(issueAt(err, "listeners[0].address").message, /got "localhost"; expected an IP address/);
    assert.match(issueAt(err, "listeners[0].port").message, /listeners\[0\]\.port: missing; expected a number/);
  });

  test("duplicate listener names both", () => {
    const err = configError(() =>
      parseConfig(
        {
          listeners: [
            { address: "127.0.0.1", port: 2525, role: "mx" },
            { address: "127.0.0.1", port: 0, role: "submission" },
            { address: "127.0.0.1", port: 0, role: "submissions" },
            { address: "127.0.0.1", port: 2525, role: "submission" },
          ],
        },
        "petrel.yaml",
      ),
    );
    assert.equal(err.issues.length, 1, err.message);
    assert.equal(
      err.message,
      'petrel.yaml: listeners[3]: got "127.0.0.1:2525"; expected a distinct address and port: listeners[0] already uses 127.0.0.1:2525',
    );
  });

  test("a wildcard address clashes with a specific one on the same port", () => {
    const err = configError(() =>
      parseConfig({ listeners: [{ address: "0.0.0.0", port: 25, role: "mx" }, { address: "192.0.2.1", port: 25, role: "mx" }] }, "petrel.yaml"),
    );
    assert.match(issueAt(err, "listeners[1]").message, /listeners\[0\] already uses 0\.0\.0\.0:25/);
  });

  test("TLSv1.1 is refused with an explanation", () => {
    const err = configError(() => parseConfig({ tls: { minVersion: "TLSv1.1" } }, "petrel.yaml"));
    const issue = issueAt(err, "tls.minVersion");
    assert.match(issue.message, /got "TLSv1\.1"; expected "TLSv1\.2" or "TLSv1\.3"; TLSv1\.1 is deprecated \(RFC 8996\)/);
  });

  test("cert without key", () => {
    const err = configError(() => parseConfig({ tls: { cert: "/x.pem" } }, "petrel.yaml", { checkFiles: false }));
    assert.match(issueAt(err, "tls.key").message, /expected tls\.cert and tls\.key together/);
  });

  test("missing certificate files name the key and the path", async () => {
    const dir = await mkdtemp(join(tmpdir(), "petrel-config-"));
    try {
      const file = join(dir, "petrel.yaml");
      await writeFile(join(dir, "key.pem"), "not checked for content here\n");
      await writeFile(
        file,
        "tls:\n  cert: certs/missing.pem\n  key: key.pem\n  sni:\n    - names: [a.test]\n      cert: /nonexistent/a.pem\n      key: key.pem\n",
      );
      await assert.rejects(loadConfig(file), (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.issues.length, 2, err.message);
        assert.equal(
          issueAt(err, "tls.cert").message,
          `${file}:2:3: tls.cert: got "certs/missing.pem"; expected a readable PEM file: ${join(dir, "certs/missing.pem")} does not exist`,
        );
        assert.match(issueAt(err, "tls.sni[0].cert").message, /\/nonexistent\/a\.pem does not exist/);
        return true;
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("a missing transport[].auth.passwordFile is called a password file, not a PEM file", async () => {
    const dir = await mkdtemp(join(tmpdir(), "petrel-config-"));
    try {
      const file = join(dir, "petrel.yaml");
      await writeFile(file, "transport:\n  - domains: ['*']\n    type: smtp\n    host: smtp.provider.example\n    auth: { user: me, passwordFile: relay-password }\n");
      await assert.rejects(loadConfig(file), (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        const message = issueAt(err, "transport[0].auth.passwordFile").message;
        assert.match(message, new RegExp(`expected a readable password file: ${join(dir, "relay-password").replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} does not exist$`));
        assert.doesNotMatch(message, /PEM/);
        return true;
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("durations in the file may be written with a space and a unit word: \"5 min\", \"30 s\", \"1 h\"", () => {
    const config = parseConfig({ queue: { minBackoff: "5 min", maxBackoff: "1 h", delayWarning: "2 hours" }, limits: { shutdownGrace: "30 s" } }, "petrel.yaml");
    assert.equal(config.queue.minBackoff, 300_000);
    assert.equal(config.queue.maxBackoff, 3_600_000);
    assert.equal(config.queue.delayWarning, 7_200_000);
    assert.equal(config.limits.shutdownGrace, 30_000);
  });

  test("relative certificate paths resolve against the config file's directory", async () => {
    const dir = await mkdtemp(join(tmpdir(), "petrel-config-"));
    try {
      await writeFile(join(dir, "c.pem"), "x");
      await writeFile(join(dir, "k.pem"), "x");
      const file = join(dir, "petrel.yaml");
      await writeFile(file, "tls: { cert: c.pem, key: ./k.pem }\nlisteners:\n  - { address: 127.0.0.1, port: 0, role: submissions, tls: { cert: c.pem, key: k.pem } }\n");
      const config = await loadConfig(file);
      assert.equal(config.tls.cert, join(dir, "c.pem"));
      assert.equal(config.tls.key, join(dir, "k.pem"));
      assert.deepEqual(config.listeners[0].tls, { cert: join(dir, "c.pem"), key: join(dir, "k.pem") });
      assert.equal(config.dataDir, join(dir, "data"));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("plaintext password: says to run petrel hash-password and does not echo it", () => {
    const err = configError(() => parseConfig({ users: [{ address: "alice@example.com", password: "hunter2" }] }, "petrel.yaml"));
    const issue = issueAt(err, "users[0].password");
    assert.match(issue.message, /run `petrel hash-password`/);
    assert.doesNotMatch(err.message, /hunter2/);
    assert.notEqual(issue.value, "hunter2");
  });

  test("bad user address and SCRAM credentials", () => {
    const err = configError(() =>
      parseConfig({ users: [{ address: "alice", password: "$scrypt$x", scram: "SCRAM-SHA-1$1:a$b:c" }] }, "petrel.yaml"),
    );
    assert.match(issueAt(err, "users[0].address").message, /expected an address such as "alice@example\.com"/);
    assert.match(issueAt(err, "users[0].scram").message, /expected "SCRAM-SHA-256\$<iterations>/);
  });

  test("duplicate users and SNI names", () => {
    const err = configError(() =>
      parseConfig(
        {
          users: [
            { address: "a@x.test", password: "$scrypt$1" },
            { address: "a@X.TEST", password: "$scrypt$2" },
          ],
          tls: { sni: [{ names: ["a.test"], cert: "c", key: "k" }, { names: ["A.test"], cert: "c2", key: "k2" }] },
        },
        "petrel.yaml",
        { checkFiles: false },
      ),
    );
    assert.match(issueAt(err, "users[1].address").message, /users\[0\] has the same address/);
    assert.match(issueAt(err, "tls.sni[1].names[0]").message, /tls\.sni\[0\] already has it/);
  });

  test("bad domains, SNI names and proxy CIDRs", () => {
    const err = configError(() =>
      parseConfig(
        { domains: ["ok.test", "bad_domain!"], proxyProtocol: { trusted: ["10.0.0.0/33", "nope"] }, tls: { sni: [{ names: ["*.*.test"], cert: "c", key: "k" }] } },
        "petrel.yaml",
        { checkFiles: false },
      ),
    );
    assert.match(issueAt(err, "domains[1]").message, /got "bad_domain!"; expected a domain name/);
    assert.match(issueAt(err, "proxyProtocol.trusted[0]").message, /expected an IP address or CIDR range/);
    assert.match(issueAt(err, "proxyProtocol.trusted[1]").message, /got "nope"/);
    assert.match(issueAt(err, "tls.sni[0].names[0]").message, /"\*\.example\.com"/);
  });

  test("a PROXY listener with no trusted proxy", () => {
    const err = configError(() => parseConfig({ listeners: [{ address: "127.0.0.1", port: 0, role: "mx", proxyProtocol: true }] }, "petrel.yaml"));
    assert.match(issueAt(err, "listeners[0].proxyProtocol").message, /proxyProtocol\.trusted is empty/);
  });

  test("every problem is reported, one line each, in file order", () => {
    const err = configError(() =>
      parseConfigText("limits:\n  messageSize: abc\n  recipients: -1\nlog:\n  level: loud\nlimts: 1\n", "petrel.yaml"),
    );
    assert.deepEqual(err.issues.map((i) => i.path), ["limits.messageSize", "limits.recipients", "log.level", "limts"]);
    assert.equal(err.message.split("\n").length, 4);
    assert.match(err.message.split("\n")[2], /^petrel\.yaml:5:3: log\.level: got "loud"; expected one of "fatal", "error"/);
  });

  test("YAML syntax error gives line and column", () => {
    const err = configError(() => parseConfigText("hostname: mx.test\nlimits:\n  messageSize: [1, 2\n  recipients: 5\n", "petrel.yaml"));
    assert.match(err.message, /^petrel\.yaml:\d+:\d+: YAML syntax error: /);
    assert.ok(err.issues[0].line !== undefined && err.issues[0].line >= 3, err.message);
  });

  test("duplicate YAML key is a syntax error with its line", () => {
    const err = configError(() => parseConfigText("hostname: a.test\nhostname: b.test\n", "petrel.yaml"));
    assert.match(err.message, /^petrel\.yaml:2:1: YAML syntax error: Map keys must be unique/);
  });

  test("a file that is not a mapping", () => {
    const err = configError(() => parseConfigText("- a\n- b\n", "petrel.yaml"));
    assert.equal(err.message, "petrel.yaml:1:1: got a list; expected a mapping (key: value)");
  });

  test("an unreadable config file", async () => {
    await assert.rejects(loadConfig("/nonexistent/petrel.yaml"), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.message, "/nonexistent/petrel.yaml: cannot read the configuration file (no such file); expected a readable configuration file");
      return true;
    });
  });
});

describe("unreadable certificate file", { skip: process.getuid?.() === 0 ? "root can read anything" : false }, () => {
  let dir = "";
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "petrel-config-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  test("names the key and says permission denied", async () => {
    await writeFile(join(dir, "c.pem"), "x");
    await writeFile(join(dir, "k.pem"), "x");
    await chmod(join(dir, "k.pem"), 0);
    const err = configError(() => parseConfig({ tls: { cert: "c.pem", key: "k.pem" } }, join(dir, "petrel.yaml")));
    assert.match(issueAt(err, "tls.key").message, /permission denied/);
  });
});

test("suggestions by edit distance", () => {
  assert.equal(editDistance("limts", "limits"), 1);
  assert.equal(editDistance("", "abc"), 3);
  assert.equal(suggest("limts", ["hostname", "limits", "log"]), "limits");
  assert.equal(suggest("host_name", ["hostname", "limits"]), "hostname");
  assert.equal(suggest("zzzzzz", ["hostname", "limits"]), undefined);
});

// limits.messageSize: 0 is refused at start-up, not read as Postfix's "unlimited" (never advertised as SIZE 0).
describe("limits.messageSize", () => {
  test("0 is refused with the key, the value and why", () => {
    const err = configError(() => parseConfigText("limits:\n  messageSize: 0\n", "petrel.yaml"));
    assert.equal(err.path, "limits.messageSize");
    assert.equal(err.value, 0);
    assert.equal(err.issues[0].line, 2);
    assert.match(err.message, /^petrel\.yaml:2:\d+: limits\.messageSize: got 0; expected at least 1 byte: Petrel has no "unlimited"/);
    assert.match(err.message, /"1GiB"/);
  });

  test('"0MiB" and "0 B" are 0 too', () => {
    assert.equal(configError(() => parseConfigText('limits:\n  messageSize: "0MiB"\n', "petrel.yaml")).path, "limits.messageSize");
    assert.equal(configError(() => parseConfigText('limits:\n  messageSize: "0 B"\n', "petrel.yaml")).path, "limits.messageSize");
  });

  test("1 byte and large sizes are accepted", () => {
    assert.equal(parseConfigText("limits:\n  messageSize: 1\n", "petrel.yaml").limits.messageSize, 1);
    assert.equal(parseConfigText("limits:\n  messageSize: 1GiB\n", "petrel.yaml").limits.messageSize, 1024 ** 3);
  });
});

/** A config with one listener hiding `hide`. */
const listener = (role: string, hide: string) => `listeners:\n  - address: 127.0.0.1\n    port: 0\n    role: ${role}\n    hide: ${hide}\n`;

describe("listeners[].hide", () => {
  test("keywords in any case are read as EHLO keywords; absent means nothing hidden", () => {
    const c = parseConfigText(listener("mx", "[dsn, Chunking, 8BITMIME, STARTTLS]"), "petrel.yaml");
    assert.deepEqual(c.listeners[0].hide, ["DSN", "CHUNKING", "8BITMIME", "STARTTLS"]);
    assert.equal(parseConfigText("{}", "petrel.yaml").listeners[0].hide, undefined);
  });

  test("an unknown keyword is refused with its place and the keywords allowed", () => {
    const err = configError(() => parseConfigText(listener("mx", "[DSN, XCLIENT]"), "petrel.yaml"));
    assert.equal(err.path, "listeners[0].hide[1]");
    assert.equal(err.issues[0].line, 5);
    assert.match(err.message, /listeners\[0\]\.hide\[1\]: got "XCLIENT"; expected one of the EHLO keywords PIPELINING, SIZE, 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES, CHUNKING, DSN, STARTTLS, AUTH, REQUIRETLS, LIMITS$/);
  });

  test("a submission listener cannot hide AUTH or STARTTLS; submissions cannot hide AUTH", () => {
    assert.match(configError(() => parseConfigText(listener("submission", "[AUTH]"), "petrel.yaml")).message, /listeners\[0\]\.hide\[0\]: got "AUTH"; a submission listener cannot hide AUTH/);
    assert.match(configError(() => parseConfigText(listener("submission", "[DSN, STARTTLS]"), "petrel.yaml")).message, /listeners\[0\]\.hide\[1\]: got "STARTTLS"; a submission listener cannot hide STARTTLS: AUTH is offered only over TLS/);
    assert.match(configError(() => parseConfigText(listener("submissions", "[auth]"), "petrel.yaml")).message, /cannot hide AUTH/);
    assert.deepEqual(parseConfigText(listener("submissions", "[STARTTLS, DSN]"), "petrel.yaml").listeners[0].hide, ["STARTTLS", "DSN"]);
    assert.deepEqual(parseConfigText(listener("mx", "[AUTH, STARTTLS]"), "petrel.yaml").listeners[0].hide, ["AUTH", "STARTTLS"]);
  });
});
