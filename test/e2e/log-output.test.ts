/**
 * What `petrel serve` prints: JSON lines when stdout is a pipe (log
 * collectors), readable lines on a terminal (a pseudo-terminal from
 * util-linux's `script`), `log.format` forcing either — and, at trace level,
 * no password, AUTH exchange or SCRAM data in any line.
 */
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { hashPassword, scramVerifier } from "../../src/accounts/password.ts";
import { ScramSha256Client } from "../../src/client/scram-client.ts";
import { requirePeer } from "../support/peers.ts";
import { until } from "../support/until.ts";
import {
  PETREL_BIN, SmtpClient, expectCode, runPetrel, servePetrel, stopPetrel, tempDir, writeConfig,
} from "./fixtures/robust-helpers.ts";

let script = "";
before(() => {
  script = requirePeer("script", "bsdutils");
});

const USER = "carol@example.test";
const PASSWORD = "violet-tangerine-harbour-42";

function baseConfig(dir: string, log: Record<string, unknown>): Record<string, unknown> {
  return {
    hostname: "mx.example.test",
    workers: 1,
    dataDir: `${dir}/data`,
    domains: ["example.test"],
    listeners: [{ address: "127.0.0.1", port: 0, role: "submission" }],
    log,
  };
}

test("on a pipe (auto) every stdout line is one JSON object", async () => {
  const { dir, cleanup } = await tempDir();
  const p = await servePetrel(await writeConfig(dir, baseConfig(dir, {})), 1);
  try {
    const lines = p.stdout().split("\n").filter((l) => l !== "");
    assert.ok(lines.length >= 2, p.stdout());
    for (const l of lines) assert.doesNotThrow(() => JSON.parse(l), `not JSON: ${l}`);
    assert.ok(p.logs().some((l) => l.msg === "listening" && l.level === 30));
  } finally {
    await stopPetrel(p);
    await cleanup();
  }
});

test("format: pretty on a pipe: one readable line per event, no JSON object lines", async () => {
  const { dir, cleanup } = await tempDir();
  const p = runPetrel(["serve", "--config", await writeConfig(dir, baseConfig(dir, { format: "pretty" }))]);
  try {
    const out = await until(() => /listening/.test(p.stdout()) && /Stop with Ctrl-C/.test(p.stderr()) && p.stdout(), "the listening line");
    const line = out.split("\n").find((l) => /INFO: listening/.test(l))!;
    // [2026-01-02 10:11:12.345] INFO: listening {"role":"submission",...} — no colour on a pipe.
    assert.match(line, /^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\] INFO: listening \{"role":"submission","address":"127\.0\.0\.1","port":\d+/);
    assert.doesNotMatch(out, /\x1b\[/, "no escape sequences when stdout is not a terminal");
    assert.ok(!out.split("\n").some((l) => l.startsWith("{")), out);
  } finally {
    p.kill("SIGTERM");
    await p.exited;
    await cleanup();
  }
});

/** `petrel serve` under a pseudo-terminal: what a person sees. */
async function onTerminal(configPath: string): Promise<string> {
  const child = spawn(script, ["-q", "-e", "-c", `${PETREL_BIN} serve --config ${configPath}`, "/dev/null"], { stdio: ["pipe", "pipe", "pipe"] });
  let out = "";
  child.stdout.setEncoding("utf8");
  child.stdout.on("data", (d: string) => (out += d));
  const exited = new Promise((resolve) => child.once("close", resolve));
  try {
    await until(() => /Stop with Ctrl-C/.test(out) && /listening/.test(out), "petrel on a terminal to start", { context: async () => out });
    return out;
  } finally {
    child.stdin.end("\x03"); // Ctrl-C on the terminal: SIGINT to petrel
    const done = await Promise.race([exited.then(() => true), new Promise((r) => setTimeout(() => r(false), 5000))]);
    if (!done) child.kill("SIGKILL");
    await exited;
  }
}

test("auto on a terminal: readable coloured lines, not JSON; format: json keeps JSON there", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const pretty = await onTerminal(await writeConfig(dir, baseConfig(dir, {}), "auto.yaml"));
    const line = pretty.split(/\r?\n/).find((l) => /listening/.test(l) && !/swaks|listening on/.test(l));
    assert.ok(line, pretty);
    assert.match(line, /^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\] \x1b\[32mINFO\x1b\[39m: .*listening/);
    assert.ok(!pretty.split(/\r?\n/).some((l) => l.startsWith('{"level"')), pretty);

    const json = await onTerminal(await writeConfig(dir, { ...baseConfig(dir, { format: "json" }), dataDir: `${dir}/data2` }, "json.yaml"));
    const jsonLine = json.split(/\r?\n/).find((l) => l.includes('"msg":"listening"'));
    assert.ok(jsonLine, json);
    assert.equal(JSON.parse(jsonLine).role, "submission");
  } finally {
    await cleanup();
  }
});

test("a wrong log.format stops start-up naming the key and the choices", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const p = runPetrel(["serve", "--config", await writeConfig(dir, baseConfig(dir, { format: "fancy" }))]);
    const exit = await p.exited;
    assert.equal(exit.code, 78);
    assert.match(p.stderr(), /log\.format: got "fancy"; expected one of "auto", "json", "pretty"/);
  } finally {
    await cleanup();
  }
});

test("at trace level no line carries a password, an AUTH exchange, SCRAM data or a stored hash", async () => {
  const { dir, cleanup } = await tempDir();
  const hash = await hashPassword(PASSWORD);
  const scram = scramVerifier(PASSWORD, 4096);
  const config = { ...baseConfig(dir, { level: "trace", format: "json" }), users: [{ address: USER, password: hash, scram }] };
  const p = await servePetrel(await writeConfig(dir, config), 1);
  const sent: string[] = [];
  try {
    const port = p.port("submission");
    const tlsSession = async () => {
      const c = await SmtpClient.connect(port);
      await c.ehlo();
      await c.startTls();
      await c.ehlo();
      return c;
    };
    // PLAIN, right and wrong.
    let c = await tlsSession();
    const plain = Buffer.from(`\0${USER}\0${PASSWORD}`).toString("base64");
    const wrong = Buffer.from(`\0${USER}\0${PASSWORD}-wrong`).toString("base64");
    sent.push(plain, wrong);
    assert.equal((await c.cmd(`AUTH PLAIN ${wrong}`)).code, 535);
    expectCode(await c.cmd(`AUTH PLAIN ${plain}`), 235);
    await c.quit();
    // LOGIN.
    c = await tlsSession();
    const b64user = Buffer.from(USER).toString("base64");
    const b64pass = Buffer.from(PASSWORD).toString("base64");
    sent.push(b64pass);
    expectCode(await c.cmd("AUTH LOGIN"), 334);
    expectCode(await c.cmd(b64user), 334);
    expectCode(await c.cmd(b64pass), 235);
    await c.quit();
    // SCRAM-SHA-256: every message of the exchange.
    c = await tlsSession();
    const client = new ScramSha256Client(USER, PASSWORD);
    const first = client.clientFirst().toString("base64");
    const serverFirst = expectCode(await c.cmd(`AUTH SCRAM-SHA-256 ${first}`), 334);
    const final = client.clientFinal(Buffer.from(serverFirst.lines[0].slice(4), "base64")).toString("base64");
    sent.push(first, final, serverFirst.lines[0].slice(4));
    const serverFinal = await c.cmd(final);
    if (serverFinal.code === 334) {
      sent.push(serverFinal.lines[0].slice(4));
      expectCode(await c.cmd(""), 235);
    } else expectCode(serverFinal, 235);
    await c.quit();
    await until(() => p.logs().filter((l) => l.msg === "authenticated").length >= 3, "three logins in the log");
  } finally {
    SmtpClient.closeAll();
    await stopPetrel(p);
    await cleanup();
  }
  const out = p.stdout() + p.stderr();
  assert.ok(p.logs().some((l) => l.level === 10 || l.level === 20), "trace/debug lines were written (the test can see them)");
  for (const secret of [PASSWORD, ...sent, hash, scram, scram.split("$")[2] ?? scram]) {
    assert.ok(!out.includes(secret), `a log line contains ${JSON.stringify(secret.slice(0, 24))}…`);
  }
});
