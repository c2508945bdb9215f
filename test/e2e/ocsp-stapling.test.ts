/**
 * OCSP stapling against a real responder: a test CA made with Debian's
 * openssl, its `openssl ocsp` responder on loopback, and a certificate whose
 * Authority Information Access names it. Clients that ask (s_client -status,
 * Node's requestOCSP) get the responder's signed answer in the handshake,
 * with and without SNI; the answer is refreshed in the background before its
 * nextUpdate (driven by the injected clock); a revocation shows; an expired
 * answer is never stapled.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { X509Certificate } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tls from "node:tls";
import pino from "pino";
import { parseConfig } from "../../src/config/load.ts";
import { startMta, type Mta } from "../../src/mta.ts";
import { ManualClock } from "../../src/mail/clock.ts";
import { handshakeCipher, requireOpenssl } from "../support/openssl-client.ts";
import { checkOcspResponse, OcspError, ocspRequest, ocspSubject } from "../../src/server/ocsp.ts";

const HOST = "mail.example.test";
let dir: string;
let serial: string;
let responder: ChildProcess | null = null;
let responderPort: number;
let mta: Mta;
let clock: ManualClock;
let submissions: number;
let leafDer: Buffer;
let caPem: string;

function openssl(args: string[]): void {
  const r = spawnSync(requireOpenssl(), args, { cwd: dir, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`openssl ${args.join(" ")}: ${r.stderr}`);
}

/** The index line of `openssl ca` for the leaf: V(alid) or R(evoked). */
async function writeIndex(state: "V" | "R"): Promise<void> {
  const expiry = "351231235959Z";
  const revoked = state === "R" ? "260101000000Z" : "";
  await writeFile(join(dir, "index.txt"), `${state}\t${expiry}\t${revoked}\t${serial}\tunknown\t/CN=${HOST}\n`);
}

/**
 * Starts `openssl ocsp` on a free port; answers valid for 10 hours (-nmin 600). The
 * responder dates its answers by the wall clock, Petrel by the test's clock, which only
 * moves forward from the wall clock: the long validity keeps fresh answers current.
 */
async function startResponder(port = 0): Promise<number> {
  const child = spawn(requireOpenssl(), ["ocsp", "-index", "index.txt", "-port", String(port), "-rsigner", "ca.pem", "-rkey", "ca.key", "-CA", "ca.pem", "-nmin", "600"], { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
  responder = child;
  let out = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`openssl ocsp did not start: ${out}`)), 10_000);
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = /ACCEPT .*:(\d+) /.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.once("exit", () => reject(new Error(`openssl ocsp exited: ${out}`)));
  });
}

async function stopResponder(): Promise<void> {
  const r = responder;
  responder = null;
  if (!r || r.exitCode !== null) return;
  const exited = new Promise((res) => r.once("exit", res));
  r.kill("SIGTERM");
  await exited;
}

before(async () => {
  requireOpenssl();
  dir = await mkdtemp(join(tmpdir(), "petrel-ocsp-"));
  serial = randomBytes(8).toString("hex").toUpperCase().replace(/^0/, "1");
  openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "30", "-subj", "/CN=Petrel Test CA"]);
  await writeIndex("V");
  const port = (responderPort = await startResponder());
  await writeFile(join(dir, "leaf.ext"), [
    `subjectAltName=DNS:${HOST}`,
    `authorityInfoAccess=OCSP;URI:http://127.0.0.1:${port}/`,
    "basicConstraints=CA:FALSE",
    "keyUsage=critical,digitalSignature",
    "extendedKeyUsage=serverAuth",
  ].join("\n"));
  openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", `/CN=${HOST}`]);
  openssl(["x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", `0x${serial}`, "-days", "10", "-extfile", "leaf.ext", "-out", "leaf.pem"]);
  caPem = await readFile(join(dir, "ca.pem"), "utf8");
  const leafPem = await readFile(join(dir, "leaf.pem"), "utf8");
  leafDer = new X509Certificate(leafPem).raw;
  await writeFile(join(dir, "chain.pem"), leafPem + caPem);
  const config = parseConfig({
    admin: { enabled: false },
    hostname: HOST,
    workers: 1,
    dataDir: join(dir, "data"),
    domains: ["example.test"],
    listeners: [{ address: "127.0.0.1", port: 0, role: "submissions" }],
    tls: { cert: join(dir, "chain.pem"), key: join(dir, "leaf.key") },
    log: { level: "silent" },
  }, "test");
  clock = new ManualClock(Date.now());
  mta = await startMta(config, { log: pino({ level: process.env.OCSP_DEBUG ? "debug" : "silent" }), clock, controlSocket: false, ocspAutoStart: false });
  submissions = mta.smtp.listeners[0].port;
});

after(async () => {
  await mta?.close();
  await stopResponder();
  await rm(dir, { recursive: true, force: true });
});

/** What `openssl s_client -status` says about the stapled response. */
async function sClientStatus(servername?: string): Promise<string> {
  const r = await handshakeCipher({ port: submissions, extra: ["-status", "-CAfile", join(dir, "ca.pem"), ...(servername ? ["-servername", servername] : ["-noservername"])] });
  if (/OCSP response: no response sent/.test(r.output)) return "none";
  const status = /Cert Status: (\w+)/.exec(r.output)?.[1];
  assert.match(r.output, /OCSP Response Status: successful/, r.output);
  assert.match(r.output, /Verify return code: 0 \(ok\)/, r.output);
  return status ?? `unparsed:\n${r.output}`;
}

/** The staple Node's TLS client receives (requestOCSP), or null. */
function nodeStaple(): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    let staple: Buffer | null = null;
    const s = tls.connect({ host: "127.0.0.1", port: submissions, servername: HOST, ca: caPem, requestOCSP: true }, () => {
      s.destroy();
      resolve(staple);
    });
    s.on("OCSPResponse", (r: Buffer) => (staple = r));
    s.on("error", reject);
  });
}

test("stapled after the first fetch, with and without SNI; background refresh; revocation; never an expired answer", async () => {
  const stapler = mta.ocsp!;
  assert.equal(await sClientStatus(HOST), "none");

  await stapler.refresh();
  assert.equal(stapler.statusOf(leafDer)?.status, "good");
  assert.equal(await sClientStatus(HOST), "good");
  assert.equal(await sClientStatus(), "good"); // a client that sends no server name (many MTAs)
  const first = stapler.statusOf(leafDer)!.der;
  assert.deepEqual(await nodeStaple(), first);

  // Halfway to nextUpdate (10 hours) the stapler fetches again by itself.
  clock.advance(301 * 60_000);
  await stapler.refresh(); // runs after the timer's refresh
  const second = stapler.statusOf(leafDer)!;
  assert.notDeepEqual(second.der, first);
  assert.equal(second.status, "good");
  assert.deepEqual(await nodeStaple(), second.der);

  // Revoked at the CA (openssl ocsp reads its index at start): the next refresh staples the revocation.
  await writeIndex("R");
  await stopResponder();
  await startResponder(responderPort);
  clock.advance(2 * 60_000);
  await stapler.refresh();
  assert.equal(stapler.statusOf(leafDer)?.status, "revoked");
  assert.equal(await sClientStatus(HOST), "revoked");

  // The responder goes away; once the last answer's nextUpdate has passed, nothing is stapled.
  await stopResponder();
  clock.advance(600 * 60_000);
  await stapler.refresh();
  assert.equal(await sClientStatus(HOST), "none");
  assert.equal(await nodeStaple(), null);
});

test("an answer signed by another CA's responder (same name, other key) is refused", async () => {
  openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "impostor.key", "-out", "impostor.pem", "-days", "30", "-subj", "/CN=Petrel Test CA"]);
  const child = spawn(requireOpenssl(), ["ocsp", "-index", "index.txt", "-port", "0", "-rsigner", "impostor.pem", "-rkey", "impostor.key", "-CA", "impostor.pem", "-nmin", "600"], { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      let out = "";
      child.stdout!.on("data", (d: Buffer) => {
        out += d.toString();
        const m = /ACCEPT .*:(\d+) /.exec(out);
        if (m) resolve(Number(m[1]));
      });
      child.once("exit", () => reject(new Error(out)));
    });
    const subject = ocspSubject(await readFile(join(dir, "chain.pem")))!;
    const res = await fetch(`http://127.0.0.1:${port}/`, { method: "POST", headers: { "content-type": "application/ocsp-request" }, body: new Uint8Array(ocspRequest(subject)) });
    const der = Buffer.from(await res.arrayBuffer());
    assert.throws(() => checkOcspResponse(der, subject, Date.now()), (err: unknown) => err instanceof OcspError && /signature does not verify|signed neither by the issuer/.test(err.message));
  } finally {
    child.kill("SIGTERM");
  }
});
