import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough, Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { accountsCommand } from "../../src/cli/accounts-commands.ts";
import type { CommandIo } from "../../src/cli/accounts-commands.ts";
import { FileAccountStore } from "../../src/accounts/file-account-store.ts";
import { hashPassword } from "../../src/accounts/password.ts";

const PETREL = fileURLToPath(new URL("../../bin/petrel", import.meta.url));

interface Env {
  dir: string;
  config: string;
  /** Run a command in-process; stdin is the given text (not a terminal) or a fake terminal. */
  petrel(args: string[], stdin?: string | NodeJS.ReadableStream): Promise<{ code: number; stdout: string; stderr: string }>;
  store(): FileAccountStore;
}

async function setup(t: { after(fn: () => Promise<void>): void }, extraYaml = ""): Promise<Env> {
  const dir = await mkdtemp(join(tmpdir(), "petrel-cli-accounts-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const config = join(dir, "petrel.yaml");
  await writeFile(config, `dataDir: ./data\ndomains: [example.com]\n${extraYaml}`);
  return {
    dir,
    config,
    async petrel(args, stdin = "") {
      let stdout = "";
      let stderr = "";
      const io: CommandIo = {
        stdin: typeof stdin === "string" ? Readable.from([stdin]) : stdin,
        stdout: { write: (s: string) => (stdout += s) },
        stderr: { write: (s: string) => (stderr += s) },
      };
      const code = await accountsCommand([...args, "--config", config], io);
      return { code, stdout, stderr };
    },
    store: () => new FileAccountStore({ dataDir: join(dir, "data"), configDomains: ["example.com"], reloadInterval: 0 }),
  };
}

/** A fake terminal: chunks are "typed" once the command reads; records setRawMode calls. */
function fakeTty(chunks: string[]) {
  const tty = new PassThrough() as PassThrough & { isTTY: boolean; setRawMode: (raw: boolean) => unknown; raw: boolean[] };
  tty.isTTY = true;
  tty.raw = [];
  tty.setRawMode = (raw: boolean) => {
    tty.raw.push(raw);
    return tty;
  };
  for (const c of chunks) tty.write(c);
  return tty;
}

test("domain add, list (text and --json), remove", async (t) => {
  const env = await setup(t);
  assert.deepEqual(await env.petrel(["domain", "add", "Example.ORG"]), { code: 0, stdout: "added domain example.org\n", stderr: "" });
  assert.deepEqual(await env.petrel(["domain", "list"]), { code: 0, stdout: "example.com  (config file)\nexample.org\n", stderr: "" });
  const json = await env.petrel(["domain", "list", "--json"]);
  assert.deepEqual(JSON.parse(json.stdout), [{ domain: "example.com", source: "config" }, { domain: "example.org", source: "store" }]);
  assert.equal((await env.petrel(["domain", "remove", "example.org"])).code, 0);
  assert.deepEqual(await env.store().listDomains(), ["example.com"]);
});

test("user add (password from stdin), list, passwd, remove", async (t) => {
  const env = await setup(t);
  const add = await env.petrel(["user", "add", "Alice@example.com", "--quota", "1GiB"], "s3cret pass phrase\nignored second line\n");
  assert.deepEqual(add, { code: 0, stdout: "added user alice@example.com\n", stderr: "" });
  assert.equal(await env.store().verifyPlain("alice@example.com", "s3cret pass phrase"), "alice@example.com");
  assert.equal((await env.petrel(["user", "add", "bob@example.com"], "bobs long password\r\n")).code, 0);
  assert.equal(await env.store().verifyPlain("bob@example.com", "bobs long password"), "bob@example.com");

  assert.deepEqual(await env.petrel(["user", "list"]), { code: 0, stdout: "alice@example.com  quota 1GiB\nbob@example.com\n", stderr: "" });
  const json = JSON.parse((await env.petrel(["user", "list", "example.com", "--json"])).stdout);
  assert.equal(json.length, 2);
  assert.deepEqual(Object.keys(json[0]).sort(), ["address", "admin", "createdAt", "quota", "source"]);

  assert.deepEqual(await env.petrel(["user", "passwd", "alice@example.com"], "new pass phrase"), {
    code: 0,
    stdout: "changed the password of alice@example.com\n",
    stderr: "",
  });
  assert.equal(await env.store().verifyPlain("alice@example.com", "s3cret pass phrase"), null);
  assert.equal(await env.store().verifyPlain("alice@example.com", "new pass phrase"), "alice@example.com");

  await env.petrel(["alias", "add", "sales@example.com", "bob@example.com"]);
  const rm = await env.petrel(["user", "remove", "bob@example.com"]);
  assert.equal(rm.code, 0);
  assert.equal(rm.stdout, "removed user bob@example.com\n");
  assert.match(rm.stderr, /note: still aliased to bob@example.com: sales@example.com/);
  assert.equal(await env.store().getUser("bob@example.com"), null);

  // The password never appears in any output or in the file.
  const file = await readFile(join(env.dir, "data", "accounts.json"), "utf8");
  assert.ok(!file.includes("s3cret") && !file.includes("new pass"));
});

test("user add on a terminal: prompts twice on stderr, raw mode, no echo; backspace and pasted input work", async (t) => {
  const env = await setup(t);
  const tty = fakeTty(["hunt", "er2 is longx\u007f", "\r", "hunter2 is long\r"]);
  const r = await env.petrel(["user", "add", "carol@example.com"], tty);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, "Password: \nRetype password: \n");
  assert.ok(!r.stdout.includes("hunter2 is long"));
  assert.deepEqual(tty.raw, [true, false, true, false]);
  assert.equal(await env.store().verifyPlain("carol@example.com", "hunter2 is long"), "carol@example.com");

  const pasted = fakeTty(["pw-ü-longer-one\rpw-ü-longer-one\r"]);
  assert.equal((await env.petrel(["user", "passwd", "carol@example.com"], pasted)).code, 0);
  assert.equal(await env.store().verifyPlain("carol@example.com", "pw-ü-longer-one"), "carol@example.com");
});

test("terminal prompts: mismatch, empty password and Ctrl-C change nothing", async (t) => {
  const env = await setup(t);
  const mismatch = await env.petrel(["user", "add", "d@example.com"], fakeTty(["one long password\r", "two long password\r"]));
  assert.equal(mismatch.code, 2);
  assert.match(mismatch.stderr, /petrel: the passwords do not match; nothing was changed\n$/);
  const empty = await env.petrel(["user", "add", "d@example.com"], fakeTty(["\r"]));
  assert.equal(empty.code, 2);
  assert.match(empty.stderr, /empty password refused/);
  const ctrlC = await env.petrel(["user", "add", "d@example.com"], fakeTty(["abc\u0003"]));
  assert.equal(ctrlC.code, 130);
  assert.match(ctrlC.stderr, /interrupted; nothing was changed/);
  assert.equal(await env.store().getUser("d@example.com"), null);
});

test("alias add (several targets, catch-all), list, remove", async (t) => {
  const env = await setup(t);
  await env.petrel(["user", "add", "alice@example.com"], "a long enough password");
  assert.deepEqual(await env.petrel(["alias", "add", "Sales@example.com", "alice@example.com", "boss@partner.net"]), {
    code: 0,
    stdout: "added alias sales@example.com → alice@example.com, boss@partner.net\n",
    stderr: "",
  });
  assert.equal((await env.petrel(["alias", "add", "@example.com", "alice@example.com"])).code, 0);
  assert.deepEqual(await env.petrel(["alias", "list"]), {
    code: 0,
    stdout: "@example.com → alice@example.com\nsales@example.com → alice@example.com, boss@partner.net\n",
    stderr: "",
  });
  assert.deepEqual(JSON.parse((await env.petrel(["alias", "list", "--json"])).stdout)[1], {
    source: "sales@example.com",
    targets: ["alice@example.com", "boss@partner.net"],
  });
  assert.equal((await env.petrel(["alias", "remove", "sales@example.com", "boss@partner.net"])).stdout, "removed boss@partner.net from alias sales@example.com\n");
  assert.equal((await env.petrel(["alias", "remove", "@example.com"])).stdout, "removed alias @example.com\n");
  assert.deepEqual(await env.store().listAliases(), [{ source: "sales@example.com", targets: ["alice@example.com"] }]);
});

test("refusals: every bad input gets a clear message and a non-zero exit", async (t) => {
  const env = await setup(t);
  await env.petrel(["user", "add", "alice@example.com"], "a long enough password");
  await env.petrel(["domain", "add", "example.net"]);
  await env.petrel(["user", "add", "n@example.net"], "a long enough password");
  const cases: Array<[string[], string | undefined, number, string | RegExp]> = [
    [["user", "add", "bob@example.org"], "a long enough password", 1, "petrel: domain example.org is not a local domain; add it with: petrel domain add example.org\n"],
    [["user", "add", "not-an-address"], "a long enough password", 1, /^petrel: invalid address 'not-an-address': expected local@domain/],
    [["user", "add", "ALICE@example.com"], "a long enough password", 1, "petrel: user alice@example.com already exists\n"],
    [["user", "add", "bob@example.com"], "", 2, /^petrel: empty password refused/],
    [["user", "add", "bob@example.com", "--quota", "lots"], "a long enough password", 2, /^petrel: --quota 'lots': expected a size/],
    [["user", "passwd", "nobody@example.com"], "a long enough password", 1, "petrel: no such user: nobody@example.com\n"],
    [["user", "remove", "nobody@example.com"], undefined, 1, "petrel: no such user: nobody@example.com\n"],
    [["user", "list", "example.org"], undefined, 1, /^petrel: domain example.org is not a local domain/],
    [["domain", "add", "bad_domain!"], undefined, 1, /^petrel: invalid domain name 'bad_domain!'/],
    [["domain", "add", "example.net"], undefined, 1, "petrel: domain example.net is already a local domain\n"],
    [["domain", "remove", "example.com"], undefined, 1, "petrel: domain example.com is defined in the config file (domains:); remove it there\n"],
    [["domain", "remove", "example.net"], undefined, 1, "petrel: domain example.net still has 1 user; remove them first, or add --force to remove them with the domain\n"],
    [["domain", "remove", "example.org"], undefined, 1, "petrel: domain example.org is not a local domain\n"],
    [["alias", "add", "x@example.com", "x@example.com"], undefined, 1, "petrel: alias loop: x@example.com → x@example.com\n"],
    [["alias", "add", "x@example.com", "ghost@example.com"], undefined, 1, /^petrel: alias target ghost@example.com is neither a user nor an alias/],
    [["alias", "add", "x@example.org", "alice@example.com"], undefined, 1, /^petrel: domain example.org is not a local domain/],
    [["alias", "remove", "x@example.com"], undefined, 1, "petrel: no such alias: x@example.com\n"],
    // Usage errors.
    [["user"], undefined, 2, /^petrel: user: which one\? add, remove, passwd, admin, list\n/],
    [["user", "frobnicate"], undefined, 2, /^petrel: user: unknown subcommand 'frobnicate'/],
    [["user", "add"], undefined, 2, /^petrel: user add: missing argument/],
    [["domain", "add", "a.org", "b.org"], undefined, 2, /^petrel: domain add: unexpected argument 'b.org'/],
    [["domain", "add", "a.org", "--json"], undefined, 2, /^petrel: domain add: --json does not apply here/],
    [["user", "add", "x@example.com", "--password", "oops"], undefined, 2, /^petrel: Unknown option '--password'/],
    [["alias", "add", "x@example.com"], undefined, 2, /^petrel: alias add: missing argument/],
  ];
  for (const [args, stdin, code, message] of cases) {
    const r = await env.petrel(args, stdin);
    assert.equal(r.code, code, `${args.join(" ")}: ${r.stderr}`);
    if (typeof message === "string") assert.equal(r.stderr, message, args.join(" "));
    else assert.match(r.stderr, message, args.join(" "));
    assert.equal(r.stdout, "", args.join(" "));
  }
  // alias loop through two aliases
  await env.petrel(["alias", "add", "a@example.com", "alice@example.com"]);
  await env.petrel(["alias", "add", "b@example.com", "a@example.com"]);
  const loop = await env.petrel(["alias", "add", "a@example.com", "b@example.com"]);
  assert.deepEqual(loop, { code: 1, stdout: "", stderr: "petrel: alias loop: a@example.com → b@example.com → a@example.com\n" });
  // --force removes a domain with its users
  assert.equal((await env.petrel(["domain", "remove", "example.net", "--force"])).code, 0);
  assert.equal(await env.store().getUser("n@example.net"), null);
});

test("config users are read-only; a wrong config file exits 78", async (t) => {
  const hash = await hashPassword("rootpw");
  const env = await setup(t, `users:\n  - address: root@example.com\n    password: "${hash}"\n`);
  assert.deepEqual(await env.petrel(["user", "list"]), { code: 0, stdout: "root@example.com  (config file)\n", stderr: "" });
  const passwd = await env.petrel(["user", "passwd", "root@example.com"], "x");
  assert.deepEqual(passwd, { code: 1, stdout: "", stderr: "petrel: user root@example.com is defined in the config file (users:); change it there\n" });
  const add = await env.petrel(["user", "add", "root@example.com"], "x");
  assert.equal(add.stderr, "petrel: user root@example.com already exists (defined in the config file)\n");
  const remove = await env.petrel(["user", "remove", "root@example.com"]);
  assert.equal(remove.code, 1);

  await writeFile(env.config, "domains: [not a domain]\n");
  const bad = await env.petrel(["domain", "list"]);
  assert.equal(bad.code, 78);
  assert.match(bad.stderr, /the configuration has errors; nothing was changed\.\n.*domains\[0\]/s);
});

test("--help prints the account commands", async (t) => {
  const env = await setup(t);
  const r = await env.petrel(["user", "--help"]);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /user add ADDRESS \[--quota SIZE\]/);
});

// ---------------------------------------------------------------------------------------------
// The real command.

function petrel(args: string[], stdin: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(PETREL, args, { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(stdin);
  });
}

test("bin/petrel: domain add, user add with the password piped in, user list --json", async (t) => {
  const env = await setup(t);
  const c = ["--config", env.config];
  assert.deepEqual(await petrel(["domain", "add", "example.org", ...c], ""), { code: 0, stdout: "added domain example.org\n", stderr: "" });
  assert.deepEqual(await petrel(["user", "add", "ann@example.org", ...c], "piped password\n"), { code: 0, stdout: "added user ann@example.org\n", stderr: "" });
  const list = await petrel(["user", "list", "--json", ...c], "");
  assert.equal(list.code, 0, list.stderr);
  assert.deepEqual(JSON.parse(list.stdout).map((u: { address: string }) => u.address), ["ann@example.org"]);
  assert.equal(await env.store().verifyPlain("ann@example.org", "piped password"), "ann@example.org");
});

test("bin/petrel: a refusal exits 1 with the message on stderr; unknown subcommand exits 2", async (t) => {
  const env = await setup(t);
  const r = await petrel(["user", "add", "x@example.org", "--config", env.config], "pw\n");
  assert.deepEqual(r, { code: 1, stdout: "", stderr: "petrel: domain example.org is not a local domain; add it with: petrel domain add example.org\n" });
  const u = await petrel(["alias", "nope", "--config", env.config], "");
  assert.equal(u.code, 2);
  assert.match(u.stderr, /unknown subcommand 'nope'/);
});

test("bin/petrel: weak passwords are refused with the reason, for user add and user passwd; nothing changes", async (t) => {
  const env = await setup(t);
  const c = ["--config", env.config];
  const x = await petrel(["user", "add", "al@example.com", ...c], "x\nx\n");
  assert.deepEqual(x, { code: 1, stdout: "", stderr: "petrel: password refused: it has 1 character; at least 12 are required (passwords.minLength); nothing was changed\n" });
  assert.equal(await env.store().getUser("al@example.com"), null);
  const cases: Array<[string, string, RegExp]> = [
    ["postmaster.team@example.com", "postmaster.team@example.com", /it is the account's address/],
    ["postmaster.team@example.com", "Postmaster.Team", /it is the local part of the account's address/],
    ["al@example.com", "qwertyuiop123", /one of the most common passwords/],
    ["al@example.com", "Correct Horse Battery Staple", /one of the most common passwords/],
    ["al@example.com", "zzzzzzzzzzzzzzzz", /one character repeated/],
  ];
  for (const [address, password, why] of cases) {
    const r = await env.petrel(["user", "add", address], `${password}\n`);
    assert.equal(r.code, 1, `${password}: ${r.stderr}`);
    assert.match(r.stderr, why);
    assert.match(r.stderr, /^petrel: password refused: .*; nothing was changed\n$/);
    assert.ok(!r.stderr.includes(password), "the refused password is not echoed");
  }
  assert.equal((await env.store().listUsers()).length, 0);

  assert.equal((await env.petrel(["user", "add", "al@example.com"], "a sound passphrase\n")).code, 0);
  const passwd = await env.petrel(["user", "passwd", "al@example.com"], "password123\n");
  assert.equal(passwd.code, 1);
  assert.match(passwd.stderr, /password refused: it has 11 characters; at least 12/);
  assert.equal(await env.store().verifyPlain("al@example.com", "a sound passphrase"), "al@example.com", "the old password still works");
});

test("passwords.minLength is configurable; on a terminal a weak password is refused before it is asked again", async (t) => {
  const env = await setup(t, "passwords: { minLength: 20 }\n");
  const r = await env.petrel(["user", "add", "al@example.com"], "nineteen chars long\n");
  assert.equal(r.code, 1);
  assert.match(r.stderr, /it has 19 characters; at least 20 are required/);
  const tty = fakeTty(["short one\r"]);
  const prompt = await env.petrel(["user", "add", "al@example.com"], tty);
  assert.equal(prompt.code, 1);
  assert.equal(prompt.stderr, "Password: \npetrel: password refused: it has 9 characters; at least 20 are required (passwords.minLength); nothing was changed\n");
});
