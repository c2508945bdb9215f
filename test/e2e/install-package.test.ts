/**
 * Petrel installs like its peers: `npm pack` compiles it to JavaScript
 * (prepack), `npm install -g --prefix TMP ./petrel-*.tgz` installs it with
 * its runtime dependencies only, and the installed `petrel serve` receives
 * a message that the installed `petrel send` submits, into the Maildir. The
 * TypeScript API (src/client/index.ts) is importable as "petrel", types
 * included. npm reuses its cache (--prefer-offline): the registry is asked
 * only for what the cache lacks.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdir, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { delimiter, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { tempDir, pollUntil, readDelivered } from "./fixtures/robust-helpers.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));
const pkg = JSON.parse(await readFile(join(root, "package.json"), "utf8")) as { name: string; version: string };
/** Node.js 24 (the project's dev dependency) first on PATH, as on a machine that meets "engines". */
const PATH = `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ""}`;
/** The environment of `npm test` (npm_config_*, npm_lifecycle_*) must not steer the npm commands run here. */
const env = { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k))), PATH };

function run(cmd: string, args: string[], options: { cwd?: string; timeoutMs?: number } = {}): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: options.cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 180_000);
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(new Error(`${cmd} could not be run (${err.message}): npm comes with Node.js, as .ci/run's npm ci needs it`));
    });
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

const tmp = await tempDir("petrel-install-");
after(() => tmp.cleanup());

test("npm pack → npm install -g --prefix → petrel serve receives what petrel send submits; the API and its types import", { timeout: 420_000 }, async () => {
  const t0 = Date.now();
  const packed = await run("npm", ["pack", "--pack-destination", tmp.dir], { cwd: root });
  assert.equal(packed.code, 0, packed.out);
  const tarball = join(tmp.dir, `${pkg.name}-${pkg.version}.tgz`);
  const listing = await run("tar", ["tzf", tarball]);
  const files = listing.out.split("\n").filter(Boolean);
  assert.ok(files.includes("package/dist/cli/main.js"), "the compiled CLI");
  assert.ok(files.includes("package/dist/client/index.d.ts"), "the API's declarations");
  assert.ok(files.includes("package/dist/accounts/common-passwords.txt"), "the password policy's list");
  for (const asset of ["index.html", "app.js", "style.css"]) assert.ok(files.includes(`package/dist/admin/dashboard/${asset}`), `the dashboard's ${asset}`);
  assert.deepEqual(files.filter((f) => /^package\/(src|test|bench|fuzz|soak|scripts|node_modules)\//.test(f) || /\.ts$/.test(f) && !/\.d\.ts$/.test(f)), [], "no sources, tests or tools");
  const tPacked = Date.now();

  const prefix = join(tmp.dir, "prefix");
  const installed = await run("npm", ["install", "-g", "--prefix", prefix, "--prefer-offline", "--no-audit", "--no-fund", tarball], { cwd: tmp.dir });
  assert.equal(installed.code, 0, installed.out);
  const home = join(prefix, "lib", "node_modules", "petrel");
  const deps = await readdir(join(home, "node_modules"));
  for (const dev of ["typescript", "node", "fast-check", "playwright-core"]) assert.ok(!deps.includes(dev), `dev dependency ${dev} installed`);
  // The shipped declarations name dns-packet's types (the resolver behind the client's DANE), so those types are a dependency.
  assert.ok((await readdir(join(home, "node_modules", "@types"))).includes("dns-packet"), "@types/dns-packet missing");
  for (const dep of ["pino", "pino-pretty", "zod", "yaml", "dns-packet", "nodemailer", "selfsigned"]) assert.ok(deps.includes(dep), `${dep} missing`);
  const tInstalled = Date.now();

  const petrel = join(prefix, "bin", "petrel");
  const work = join(tmp.dir, "work");
  await mkdir(work);
  await writeFile(join(work, "petrel.yaml"), [
    "hostname: mx.example.test",
    "dataDir: ./data",
    "domains: [example.test]",
    "listeners:",
    "  - { address: 127.0.0.1, port: 0, role: mx }",
    "admin: { listen: { address: 127.0.0.1, port: 0 } }",
    "",
  ].join("\n"));
  const server = spawn(petrel, ["serve", "--config", "petrel.yaml"], { cwd: work, env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  server.stdout.on("data", (d) => (out += d));
  server.stderr.on("data", (d) => (err += d));
  const exited = new Promise((resolve) => server.once("close", resolve));
  try {
    const port = await pollUntil(() => {
      if (server.exitCode !== null) throw new Error(`installed petrel serve exited ${server.exitCode}: ${err}`);
      const m = /"msg":"listening"/.test(out) && /Stop with Ctrl-C/.test(err) ? /"port":(\d+)/.exec(out.split("\n").find((l) => l.includes('"msg":"listening"'))!) : null;
      return m ? Number(m[1]) : undefined;
    }, 30_000);
    assert.match(err, /add one to log in on the submission ports: {2}petrel user add/, "the installed command is named as it is on the PATH");
    const sent = await run(petrel, ["send", "--server", `127.0.0.1:${port}`, "--tls", "none", "--from", "someone@elsewhere.test",
      "--to", "postmaster@example.test", "--subject", "from the tarball", "--text", "installed and running"], { cwd: work, timeoutMs: 30_000 });
    assert.equal(sent.code, 0, sent.out);
    assert.match(sent.out, /Sent: 250 2\.0\.0 .*queued as/);
    const delivered = await pollUntil(async () => {
      const d = await readDelivered(join(work, "data"));
      return d.length > 0 ? d : undefined;
    }, 15_000);
    assert.equal(delivered.length, 1);
    assert.match(delivered[0].path, /\/mail\/example\.test\/postmaster\/new\//);
    assert.match(delivered[0].content.toString(), /Subject: from the tarball\r\n[\s\S]*installed and running/);
    // The dashboard's files are found beside the compiled server.
    const admin = JSON.parse(out.split("\n").find((l) => l.includes('"msg":"admin API listening"'))!) as { url: string };
    for (const path of ["", "ui/app.js", "ui/style.css"]) assert.equal((await fetch(admin.url + path)).status, 200, `the installed dashboard's /${path}`);
  } finally {
    server.kill("SIGTERM");
    await exited;
  }

  // The TypeScript API as another project uses it: import "petrel", type-checked and run.
  const consumer = join(tmp.dir, "consumer");
  await mkdir(join(consumer, "node_modules"), { recursive: true });
  await symlink(home, join(consumer, "node_modules", "petrel"));
  await symlink(join(root, "node_modules", "@types"), join(consumer, "node_modules", "@types"));
  await writeFile(join(consumer, "package.json"), JSON.stringify({ type: "module" }));
  await writeFile(join(consumer, "tsconfig.json"), JSON.stringify({
    compilerOptions: { module: "nodenext", target: "es2024", strict: true, noEmit: true, skipLibCheck: false, types: ["node"] },
    files: ["use.ts"],
  }));
  await writeFile(join(consumer, "use.ts"), [
    'import { composeMessage, explain, SmtpClientError, type SendOptions } from "petrel";',
    'const options: SendOptions = { server: "mail.example.test:587", from: "a@example.test", to: "b@example.test", subject: "typed" };',
    "const message = await composeMessage(options);",
    'const words: string = explain(new SmtpClientError("connect", "connect", "refused", { host: "h", port: 25, code: "ECONNREFUSED" }));',
    "console.log(message.envelope.to.join(','), words);",
    "",
  ].join("\n"));
  const typed = await run(process.execPath, [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", consumer]);
  assert.equal(typed.code, 0, `the consumer does not type-check against the shipped declarations:\n${typed.out}`);
  const bad = join(consumer, "bad.ts");
  await writeFile(bad, 'import { send } from "petrel";\nawait send({ server: 25 });\n');
  const untyped = await run(process.execPath, [join(root, "node_modules", "typescript", "bin", "tsc"), "--noEmit", "--strict", "--module", "nodenext", "--types", "node", bad], { cwd: consumer });
  assert.notEqual(untyped.code, 0, "a wrong call must not type-check (the types are real, not any)");
  await rm(bad);
  await writeFile(join(consumer, "use.mjs"), 'import { composeMessage } from "petrel";\nconst m = await composeMessage({ from: "a@example.test", to: "b@example.test", subject: "run", text: "x" });\nconsole.log(m.raw.toString().includes("Subject: run"));\n');
  const ran = await run(process.execPath, [join(consumer, "use.mjs")], { cwd: consumer });
  assert.equal(ran.out.trim(), "true", ran.out);

  // Timings in the test output (pack compiles the whole tree).
  process.stderr.write(`# install-package: pack ${Math.round((tPacked - t0) / 1000)} s, install ${Math.round((tInstalled - tPacked) / 1000)} s, total ${Math.round((Date.now() - t0) / 1000)} s\n`);
});
