/**
 * A validating DNS resolver on loopback for DNSSEC and DANE tests: Debian's `unbound`, started
 * with its own configuration, serving zones written by the test — signed with Debian's DNSSEC
 * tools (`ldns-keygen`, `ldns-signzone` from ldnsutils) or left unsigned — as if fetched from
 * their authoritative servers (auth-zone, for-upstream), so it validates them: answers from a
 * signed zone carry the AD bit, an unsigned zone is "insecure" (no AD), a tampered signed zone
 * is "bogus" (SERVFAIL). The trust anchors are the signed zones' own KSKs.
 *
 *   const dns = await startUnbound([
 *     { origin: "dane.test", records: ["mx A 127.0.0.9", "_25._tcp.mx TLSA 3 1 1 ab12…"], signed: true },
 *     { origin: "plain.test", records: ["mx A 127.0.0.10"], signed: false },
 *   ]);
 *   createResolver({ servers: [dns.server], dnssec: true });
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import dnsPacket from "dns-packet";
import { exchange } from "../../src/dns/transport.ts";
import { requirePeer } from "./peers.ts";
import { portFreeOn } from "./ports.ts";

export interface TestZone {
  /** The zone's apex, e.g. "dane.test". */
  readonly origin: string;
  /** Zone-file lines relative to the origin ("mx A 127.0.0.9"); SOA and NS are added. */
  readonly records: readonly string[];
  readonly signed: boolean;
  /** Change the signed zone text after signing (breaks signatures: the zone turns bogus). */
  readonly tamper?: (signedZone: string) => string;
}

export interface TestUnbound {
  /** "127.x.y.z:port", as `createResolver({ servers })` takes it. */
  readonly server: string;
  readonly dir: string;
  /** unbound's log so far (for failure messages). */
  log(): string;
  close(): Promise<void>;
}

const DAY = 86_400;

function run(cmd: string, args: string[], cwd: string): string {
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8", timeout: 60_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.status}): ${r.stderr || r.stdout}`);
  return r.stdout.trim();
}

/** Write, and sign when asked, one zone; returns its file and (signed) its trust anchor file. */
async function prepareZone(dir: string, zone: TestZone): Promise<{ file: string; anchor?: string }> {
  const origin = `${zone.origin}.`;
  const text = [
    `$ORIGIN ${origin}`,
    "$TTL 300",
    `@ IN SOA ns.${origin} hostmaster.${origin} 1 3600 600 86400 300`,
    `@ IN NS ns.${origin}`,
    `ns IN A 127.0.0.1`,
    ...zone.records,
    "",
  ].join("\n");
  const file = join(dir, `${zone.origin}.zone`);
  await writeFile(file, text);
  if (!zone.signed) return { file };
  const keygen = requirePeer("ldns-keygen", "ldnsutils");
  const signzone = requirePeer("ldns-signzone", "ldnsutils");
  const ksk = run(keygen, ["-a", "ECDSAP256SHA256", "-k", "-r", "/dev/urandom", zone.origin], dir);
  const zsk = run(keygen, ["-a", "ECDSAP256SHA256", "-r", "/dev/urandom", zone.origin], dir);
  const now = Math.floor(Date.now() / 1000);
  // Signatures valid from yesterday for a month: a test never depends on the second it runs.
  run(signzone, ["-n", "-i", String(now - DAY), "-e", String(now + 30 * DAY), "-f", `${file}.signed`, file, join(dir, ksk), join(dir, zsk)], dir);
  if (zone.tamper) await writeFile(`${file}.signed`, zone.tamper(await readFile(`${file}.signed`, "utf8")));
  return { file: `${file}.signed`, anchor: join(dir, `${ksk}.ds`) };
}

export async function startUnbound(zones: readonly TestZone[]): Promise<TestUnbound> {
  const unbound = requirePeer("unbound", "unbound");
  const dir = await mkdtemp(join(tmpdir(), "petrel-unbound-"));
  let child: ChildProcess | undefined;
  let output = "";
  try {
    const prepared = await Promise.all(zones.map((z) => prepareZone(dir, z)));
    const address = `127.${1 + Math.floor(Math.random() * 250)}.${1 + Math.floor(Math.random() * 250)}.${2 + Math.floor(Math.random() * 250)}`;
    const port = await portFreeOn([address]);
    const conf = [
      "server:",
      `  interface: ${address}@${port}`,
      `  port: ${port}`,
      "  do-daemonize: no",
      '  username: ""',
      '  chroot: ""',
      `  directory: "${dir}"`,
      '  pidfile: ""',
      "  use-syslog: no",
      '  logfile: ""',
      "  verbosity: 1",
      "  val-log-level: 2",
      "  do-ip6: no",
      "  do-not-query-localhost: no",
      `  access-control: 127.0.0.0/8 allow`,
      '  module-config: "validator iterator"',
      // RFC 6761 names are served locally as empty by default; these tests own them.
      ...new Set(zones.map((z) => `  local-zone: "${z.origin.split(".").pop()}." nodefault`)),
      ...[...new Set(prepared.flatMap((p) => (p.anchor ? [`  trust-anchor-file: "${p.anchor}"`] : [])))],
      ...zones.flatMap((z, i) => [
        "auth-zone:",
        `  name: "${z.origin}."`,
        `  zonefile: "${prepared[i].file}"`,
        "  for-downstream: no",
        "  for-upstream: yes",
        "  fallback-enabled: no",
      ]),
      "",
    ];
    const confPath = join(dir, "unbound.conf");
    await writeFile(confPath, conf.join("\n"));
    child = spawn(unbound, ["-d", "-c", confPath], { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
    child.stdout!.on("data", (d) => (output += d));
    child.stderr!.on("data", (d) => (output += d));
    const exited = new Promise<void>((resolve) => child!.once("exit", () => resolve()));
    await waitUntilAnswering(address, port, zones[0]?.origin ?? "test", () => child!.exitCode !== null, () => output);
    const server = `${address}:${port}`;
    return {
      server, dir,
      log: () => output,
      async close() {
        if (child!.exitCode === null) child!.kill("SIGTERM");
        await exited;
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    if (child && child.exitCode === null) child.kill("SIGKILL");
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/** Bounded: unbound answers an SOA question for the first zone within 15 s, or the start fails with its log. */
async function waitUntilAnswering(address: string, port: number, origin: string, exited: () => boolean, log: () => string): Promise<void> {
  const end = Date.now() + 15_000;
  while (Date.now() < end) {
    if (exited()) throw new Error(`unbound exited at start-up:\n${log()}`);
    const r = await exchange({ address, port, family: 4 }, { name: origin, type: "SOA" }, { timeoutMs: 500, edns: true });
    if (r.kind === "response" && r.rcode === 0 && (r.packet.flags ?? 0) & dnsPacket.RECURSION_AVAILABLE) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`unbound did not answer on ${address}:${port} within 15 s:\n${log()}`);
}
