/**
 * Shared pieces of the message-authentication tests: test keys and their DNS records, a resolver
 * on the loopback DNS server, and the independent implementations that run here — dkimpy
 * (Debian python3-dkim, through py/dkimpy_tool.py) and OpenDKIM (Debian opendkim, `opendkim -t`
 * with TestPublicKeys, so no DNS is needed).
 */
import { spawn } from "node:child_process";
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { fileURLToPath } from "node:url";
import { createResolver, type ClosableResolver } from "../../src/dns/resolver.ts";
import { dkimRecordValue } from "../../src/mailauth/dkim-keys.ts";
import type { DkimSigningKey } from "../../src/mailauth/dkim-sign.ts";
import { mailauthResolver, type MailauthResolver } from "../../src/mailauth/dns-resolver.ts";
import { startDnsServer, type TestDnsServer, type Zone } from "../support/dns-server.ts";
import { requirePeer, requirePeerFile } from "../support/peers.ts";

const TOOL = fileURLToPath(new URL("./py/dkimpy_tool.py", import.meta.url));

/** Debian's python with dkimpy (a python earlier on PATH, such as pyenv's, would lack it). */
function dkimpy(arc: "arc-sign" | "other" = "other"): string {
  const python = requirePeerFile("/usr/bin/python3", "python3");
  requirePeerFile("/usr/lib/python3/dist-packages/dkim/__init__.py", "python3-dkim");
  if (arc === "arc-sign") requirePeerFile("/usr/lib/python3/dist-packages/authres/__init__.py", "python3-authres");
  return python;
}

export interface TestKey extends DkimSigningKey {
  readonly publicKey: KeyObject;
  /** "sel._domainkey.domain" */
  readonly name: string;
  readonly record: string;
}

export function testKey(domain: string, selector: string, type: "rsa" | "ed25519"): TestKey {
  const pair = type === "rsa" ? generateKeyPairSync("rsa", { modulusLength: 2048 }) : generateKeyPairSync("ed25519");
  return {
    domain,
    selector,
    privateKey: pair.privateKey,
    publicKey: pair.publicKey,
    name: `${selector}._domainkey.${domain}`,
    record: dkimRecordValue(pair.publicKey),
  };
}

/** A TXT record value as character-strings of at most 255 octets (RFC 1035 §3.3.14). */
export function txtStrings(value: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < value.length; i += 255) out.push(value.slice(i, i + 255));
  return out;
}

export function keyZone(keys: readonly TestKey[]): Zone {
  return Object.fromEntries(keys.map((k) => [k.name, { TXT: [txtStrings(k.record)] }]));
}

export interface TestDns {
  readonly dns: TestDnsServer;
  readonly resolver: ClosableResolver;
  readonly mailauth: MailauthResolver;
}

/** A loopback DNS server with `zone` and Petrel's resolver on it; stopped after the test. */
export async function testDns(t: TestContext, zone: Zone, options: { timeout?: number; tries?: number } = {}): Promise<TestDns> {
  const dns = await startDnsServer(zone);
  const resolver = createResolver({ servers: [dns.server], timeout: options.timeout ?? 2000, tries: options.tries ?? 1, failureTtl: 0 });
  t.after(async () => {
    resolver.close();
    await dns.close();
  });
  return { dns, resolver, mailauth: mailauthResolver(resolver) };
}

export const MESSAGE =
  "From: Alice Example <alice@a.test>\r\n" +
  "To: Bob <bob@b.test>\r\n" +
  "Subject: Quarterly report\r\n" +
  "Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n" +
  "Message-ID: <report-1@a.test>\r\n" +
  "MIME-Version: 1.0\r\n" +
  "Content-Type: text/plain; charset=utf-8\r\n" +
  "\r\n" +
  "Hello Bob,\r\n" +
  "\r\n" +
  "the  figures   are attached.  \r\n" +
  "\r\n\r\n";

async function tempFiles(files: Record<string, string | Buffer>): Promise<{ dir: string; path: (name: string) => string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "petrel-dkim-"));
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
  return { dir, path: (name) => join(dir, name), remove: () => rm(dir, { recursive: true, force: true }) };
}

function runProgram(cmd: string, args: string[], input: string | Buffer): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"], timeout: 30_000 });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8") }));
    child.stdin.on("error", () => {});
    child.stdin.end(input);
  });
}

/** A key record as published: "sel._domainkey.domain" and the TXT value. */
export interface KeyRecord {
  readonly name: string;
  readonly record: string;
}

function keysJson(keys: readonly KeyRecord[]): string {
  return JSON.stringify(Object.fromEntries(keys.map((k) => [k.name, k.record])));
}

/** dkimpy's verdict on each DKIM-Signature of `message`, in header order. */
export async function dkimpyVerify(message: string | Buffer, keys: readonly KeyRecord[]): Promise<{ pass: boolean; error?: string }[]> {
  const files = await tempFiles({ "keys.json": keysJson(keys) });
  try {
    const r = await runProgram(dkimpy(), [TOOL, "verify", files.path("keys.json")], message);
    if (r.code !== 0) throw new Error(`dkimpy verify failed: ${r.stderr}`);
    return JSON.parse(r.stdout) as { pass: boolean; error?: string }[];
  } finally {
    await files.remove();
  }
}

/** dkimpy's key file format: PEM for RSA, the base64 seed for Ed25519. */
function dkimpyKey(key: KeyObject): string {
  if (key.asymmetricKeyType === "ed25519") return Buffer.from(key.export({ format: "jwk" }).d as string, "base64url").toString("base64");
  return key.export({ type: "pkcs1", format: "pem" }) as string;
}

/** A DKIM-Signature field made by dkimpy (relaxed/relaxed) over `message`. */
export async function dkimpySign(message: string, key: TestKey): Promise<string> {
  const algo = key.privateKey.asymmetricKeyType === "ed25519" ? "ed25519-sha256" : "rsa-sha256";
  const files = await tempFiles({ key: dkimpyKey(key.privateKey) });
  try {
    const r = await runProgram(dkimpy(), [TOOL, "sign", "-", key.selector, key.domain, algo, files.path("key")], message);
    if (r.code !== 0) throw new Error(`dkimpy sign failed: ${r.stderr}`);
    return r.stdout;
  } finally {
    await files.remove();
  }
}

export async function dkimpyArcVerify(message: string, keys: readonly KeyRecord[]): Promise<{ cv: string; comment: string }> {
  const files = await tempFiles({ "keys.json": keysJson(keys) });
  try {
    const r = await runProgram(dkimpy(), [TOOL, "arc-verify", files.path("keys.json")], message);
    if (r.code !== 0) throw new Error(`dkimpy arc-verify failed: ${r.stderr}`);
    return JSON.parse(r.stdout) as { cv: string; comment: string };
  } finally {
    await files.remove();
  }
}

/** The ARC set dkimpy adds to `message` (which must carry an Authentication-Results by `srvId`). */
export async function dkimpyArcSign(message: string, key: TestKey, srvId: string): Promise<string> {
  const algo = key.privateKey.asymmetricKeyType === "ed25519" ? "ed25519-sha256" : "rsa-sha256";
  const files = await tempFiles({ key: dkimpyKey(key.privateKey) });
  try {
    const r = await runProgram(dkimpy("arc-sign"), [TOOL, "arc-sign", key.selector, key.domain, algo, files.path("key"), srvId], message);
    if (r.code !== 0) throw new Error(`dkimpy arc-sign failed: ${r.stderr}`);
    return r.stdout;
  } finally {
    await files.remove();
  }
}

/**
 * OpenDKIM's verdicts, from its test mode (`opendkim -t`) with the keys given as TestPublicKeys:
 * the dkim= results of the Authentication-Results field it would add, e.g. ["pass", "pass"].
 */
export async function opendkimVerify(message: string | Buffer, keys: readonly KeyRecord[]): Promise<string[]> {
  const opendkim = requirePeer("opendkim", "opendkim");
  const files = await tempFiles({
    "msg.eml": Buffer.from(message),
    keys: keys.map((k) => `${k.name} ${k.record}\n`).join(""),
  });
  try {
    await writeFile(files.path("opendkim.conf"), `Mode v\nTestPublicKeys ${files.path("keys")}\nSyslog no\n`);
    const r = await runProgram(opendkim, ["-x", files.path("opendkim.conf"), "-t", files.path("msg.eml"), "-vvv"], "");
    const ar = /### INSHEADER: idx=\d+ hname='Authentication-Results' hvalue='([^']*)'/.exec(r.stdout + r.stderr);
    if (ar === null) throw new Error(`opendkim gave no Authentication-Results (exit ${r.code}): ${r.stdout}${r.stderr}`);
    return [...ar[1].matchAll(/\bdkim=(\w+)/g)].map((m) => m[1]);
  } finally {
    await files.remove();
  }
}
