/**
 * Pebble, Let's Encrypt's test ACME server (Debian package `pebble`), started
 * by a test on loopback with its own configuration: it resolves names through
 * the test's DNS server and validates challenges on the ports the test names.
 * Debian ships no certificate for Pebble's own HTTPS listener, so one is
 * generated here (a self-signed CA the test trusts for the directory). The
 * issuing root comes from Pebble's management interface.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomInt } from "node:crypto";
import { isIP } from "node:net";
import * as https from "node:https";
import type * as tls from "node:tls";
import { generateSelfSigned } from "../../src/server/tls-certificates.ts";
import { requirePeer } from "./peers.ts";


export interface PebbleOptions {
  /** "127.0.0.1:PORT" of the DNS server Pebble asks (test/support/dns-server.ts). */
  readonly dnsServer: string;
  /** Where Pebble connects for HTTP-01 and TLS-ALPN-01 (on the address the name resolves to). */
  readonly httpPort: number;
  readonly tlsPort: number;
  /** Written into every issued certificate's Authority Information Access. */
  readonly ocspResponderUrl?: string;
  /** The loopback address Pebble listens on (default: a random one). */
  readonly host?: string;
}

export interface Pebble {
  /** The ACME directory URL. */
  readonly directory: string;
  /** PEM of the CA that signed Pebble's HTTPS certificate (trust it for the directory). */
  readonly directoryCa: string;
  /** A file holding `directoryCa`, for `tls.acme.ca`. */
  readonly directoryCaFile: string;
  /** The root that issued certificates chain to (management interface /roots/0). */
  root(): Promise<string>;
  /** The intermediate that signs issued certificates, and its key (for an OCSP responder). */
  intermediate(): Promise<{ cert: string; key: string }>;
  /** Pebble's log so far. */
  output(): string;
  stop(): Promise<void>;
}

/** The pebble program; fails the test with the package name when it is missing. */
export function requirePebble(): string {
  return requirePeer("pebble", "pebble");
}

/** A loopback address no other test is likely to use (127.x.y.z, never 127.0.0.1). */
export function uniqueLoopback(): string {
  return `127.${randomInt(1, 255)}.${randomInt(0, 256)}.${randomInt(1, 255)}`;
}

export async function startPebble(o: PebbleOptions): Promise<Pebble> {
  const pebbleBin = requirePebble();
  const dir = await mkdtemp(join(tmpdir(), "petrel-pebble-"));
  const host = o.host ?? uniqueLoopback();
  const pems = await generateSelfSigned("localhost", { extraNames: [host] });
  await writeFile(join(dir, "cert.pem"), pems.cert);
  await writeFile(join(dir, "key.pem"), pems.key, { mode: 0o600 });
  const caFile = join(dir, "directory-ca.pem");
  await writeFile(caFile, pems.cert);
  const config = {
    pebble: {
      listenAddress: `${host}:14000`,
      managementListenAddress: `${host}:15000`,
      certificate: join(dir, "cert.pem"),
      privateKey: join(dir, "key.pem"),
      httpPort: o.httpPort,
      tlsPort: o.tlsPort,
      ocspResponderURL: o.ocspResponderUrl ?? "",
      externalAccountBindingRequired: false,
    },
  };
  await writeFile(join(dir, "pebble.json"), JSON.stringify(config));
  const child: ChildProcess = spawn(pebbleBin, ["-config", join(dir, "pebble.json"), "-dnsserver", o.dnsServer, "-strict=false"], {
    env: { ...process.env, PEBBLE_VA_NOSLEEP: "1", PEBBLE_WFE_NONCEREJECT: "0", PEBBLE_AUTHZREUSE: "0" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((resolve) => child.once("close", () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    await exited;
    await rm(dir, { recursive: true, force: true });
  };
  const directory = `https://${host}:14000/dir`;
  const get = (path: string, port = 15000) => fetchText(`https://${host}:${port}${path}`, pems.cert);
  // Ready when the directory answers; bounded.
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) {
      await stop();
      throw new Error(`pebble exited at start:\n${out}`);
    }
    try {
      await get("/dir", 14000);
      break;
    } catch (err) {
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`pebble did not answer at ${directory}: ${(err as Error).message}\n${out}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    directory,
    directoryCa: pems.cert,
    directoryCaFile: caFile,
    root: () => get("/roots/0"),
    intermediate: async () => ({ cert: await get("/intermediates/0"), key: await get("/intermediate-keys/0") }),
    output: () => out,
    stop,
  };
}

/** GET over HTTPS trusting `ca` only. */
export function fetchText(url: string, ca: string | Buffer, options: { lookupAddress?: string } = {}): Promise<string> {
  return fetchResponse(url, ca, options).then((r) => {
    if (r.status !== 200) throw new Error(`GET ${url}: HTTP ${r.status}`);
    return r.body;
  });
}

export interface TextResponse {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
  /** The server's leaf certificate as Node saw it. */
  readonly serialNumber: string;
}

/**
 * GET over HTTPS with full verification against `ca`; `lookupAddress` sends
 * the connection there while the URL's host name is what is verified (as DNS
 * pointing the name at a loopback address would).
 */
export function fetchResponse(url: string, ca: string | Buffer, options: { lookupAddress?: string; timeoutMs?: number } = {}): Promise<TextResponse> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = https.request(
      {
        hostname: options.lookupAddress ?? u.hostname,
        port: u.port || 443,
        path: u.pathname + u.search,
        method: "GET",
        ca,
        ...(isIP(u.hostname) ? {} : { servername: u.hostname }),
        headers: { host: u.host },
        agent: false,
        timeout: options.timeoutMs ?? 10_000,
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => (body += d));
        res.on("end", () => {
          const socket = res.socket as tls.TLSSocket;
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, serialNumber: socket.getPeerCertificate?.().serialNumber ?? "" });
        });
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`GET ${url}: timeout`)));
    req.on("error", reject);
    req.end();
  });
}
