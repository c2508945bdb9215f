/**
 * Real mail filters for the milter tests, each started with its own private
 * configuration in a temp dir, listening on a free 127.0.0.1 port, and
 * stopped (SIGTERM to the pid started here, then the dir removed):
 *
 *   - rspamd (Debian: rspamd): its proxy worker in milter mode, scanning
 *     itself (self_scan), DNS pointed at a loopback port where nothing
 *     answers (scans do not wait on the network), `milter_headers` adding
 *     X-Spamd-Result, X-Spam-Status and X-Rspamd-Queue-Id to every message.
 *     The first start in a fresh DBDIR compiles its regexp cache (~15 s, more
 *     on a loaded machine); start one per test file and share it.
 *   - OpenDKIM (Debian: opendkim, key from opendkim-tools) signing for
 *     example.org with selector "sel", for clients in 127.0.0.0/8.
 *   - the scenario filter (test/support/py/scenario_milter.py, Debian:
 *     python3-milter), Sendmail's libmilter driven by Python.
 */
import { spawnSync } from "node:child_process";
import assert from "node:assert/strict";
import { after, before } from "node:test";
import { copyFile, mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { requirePeer, requirePythonModule } from "./peers.ts";
import { portFreeOn } from "./ports.ts";
import { canConnect, spawnDaemon } from "./daemon.ts";

export interface RunningMilter {
  /** "inet:127.0.0.1:<port>" */
  readonly address: string;
  readonly port: number;
  readonly dir: string;
  /** What the filter logged (its log file, or its output). */
  log(): Promise<string>;
  stop(): Promise<void>;
}

interface DaemonSpec {
  readonly what: string;
  readonly command: string;
  readonly args: (port: number) => string[];
  /** Writes the configuration for `port` into `dir`. */
  readonly prepare: (dir: string, port: number) => Promise<void>;
  readonly logFile?: string;
  readonly env?: NodeJS.ProcessEnv;
  /** How long the filter may take to listen. */
  readonly startMs: number;
  /** SIGTERM by default; libmilter takes seconds to wind down on it, and the scenario filter keeps nothing. */
  readonly stopSignal?: NodeJS.Signals;
}

/** Start a filter; a port taken between choosing and binding it gets another try (at most 3). */
async function startDaemon(spec: DaemonSpec, dir: string): Promise<RunningMilter> {
  let lastError = "";
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await portFreeOn(["127.0.0.1"]);
    await spec.prepare(dir, port);
    const daemon = spawnDaemon(spec.command, spec.args(port), spec.env);
    const log = async () => {
      let file = "";
      if (spec.logFile) file = await readFile(join(dir, spec.logFile), "utf8").catch(() => "");
      return `${daemon.output()}${file}`;
    };
    const kill = () => daemon.stop(spec.stopSignal);
    const deadline = Date.now() + spec.startMs;
    let up = false;
    while (!daemon.dead && Date.now() < deadline) {
      if (await canConnect(port)) {
        up = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    if (up && !daemon.dead) {
      return {
        address: `inet:127.0.0.1:${port}`,
        port,
        dir,
        log,
        stop: async () => {
          await kill();
          await rm(dir, { recursive: true, force: true });
        },
      };
    }
    lastError = await log();
    await kill();
  }
  await rm(dir, { recursive: true, force: true });
  throw new Error(`${spec.what} did not start listening: ${lastError.slice(-3000)}`);
}

/**
 * rspamd's compiled regexp and URL-suffix caches (hyperscan: *.hs, *.hsmp,
 * *.hsmc in its DBDIR), shared by the test files of one machine: the first
 * start compiles them (~25 s), later ones copy them (~2 s). Files are named
 * by their content's hash and rspamd checks them before use, so a copy is
 * either right or ignored.
 */
const RSPAMD_CACHE = join(tmpdir(), `petrel-test-rspamd-cache-${process.getuid?.() ?? 0}`);
const isCacheFile = (name: string) => /\.hs(mp|mc)?$/.test(name);

async function seedRspamdCache(db: string): Promise<void> {
  for (const name of (await readdir(RSPAMD_CACHE).catch(() => [] as string[])).filter(isCacheFile)) {
    await copyFile(join(RSPAMD_CACHE, name), join(db, name)).catch(() => undefined);
  }
}

async function keepRspamdCache(db: string): Promise<void> {
  await mkdir(RSPAMD_CACHE, { recursive: true });
  for (const name of (await readdir(db)).filter(isCacheFile)) {
    // Copy, then rename into place: another test file reading the cache never sees half a file.
    const temp = join(RSPAMD_CACHE, `.${name}.${process.pid}`);
    await copyFile(join(db, name), temp);
    await rename(temp, join(RSPAMD_CACHE, name));
  }
}

/** The GTUBE test string: rspamd refuses any message that contains it. */
export const GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/** One rspamd for the tests of the calling file: started before them, stopped after; the getter gives it. */
export function rspamdForThisFile(): () => RunningMilter {
  let rspamd: RunningMilter | undefined;
  before(async () => {
    rspamd = await startRspamd();
  }, { timeout: 180_000 });
  after(async () => {
    await rspamd?.stop();
  });
  return () => {
    assert.ok(rspamd, "rspamd started");
    return rspamd;
  };
}

export async function startRspamd(): Promise<RunningMilter> {
  const rspamd = requirePeer("rspamd", "rspamd");
  const dir = await mkdtemp(join(tmpdir(), "petrel-rspamd-"));
  for (const d of ["local/local.d", "local/override.d", "run", "db", "log"]) await mkdir(join(dir, d), { recursive: true });
  await seedRspamdCache(join(dir, "db"));
  const deadDns = await portFreeOn(["127.0.0.1"]);
  const running = await startDaemon({
    what: "rspamd",
    command: rspamd,
    args: () => [
      "-f", "-u", "root", "-g", "root",
      "--var=CONFDIR=/etc/rspamd", `--var=LOCAL_CONFDIR=${dir}/local`, `--var=RUNDIR=${dir}/run`,
      `--var=DBDIR=${dir}/db`, `--var=LOGDIR=${dir}/log`,
    ],
    logFile: "log/rspamd.log",
    startMs: 120_000,
    prepare: async (d, port) => {
      // override.d replaces the section: local.d would merge with the default ports.
      await writeFile(join(d, "local/override.d/worker-proxy.inc"), `bind_socket = "127.0.0.1:${port}";
milter = yes;
timeout = 120s;
upstream "local" {
  default = yes;
  self_scan = yes;
}
count = 1;
max_retries = 5;
discard_on_reject = false;
quarantine_on_reject = false;
spam_header = "X-Spam";
reject_message = "Spam message rejected";
`);
      // The proxy scans by itself: no normal worker, no controller, nothing else on a port.
      await writeFile(join(d, "local/override.d/worker-normal.inc"), "count = -1;\n");
      await writeFile(join(d, "local/override.d/worker-controller.inc"), "count = -1;\n");
      await writeFile(join(d, "local/local.d/options.inc"), `dns {
  nameserver = ["127.0.0.1:${deadDns}"];
  timeout = 100ms;
  retransmits = 1;
}
`);
      await writeFile(join(d, "local/local.d/milter_headers.conf"), `use = ["x-spamd-result", "x-rspamd-queue-id", "x-spam-status"];
skip_local = false;
skip_authenticated = false;
`);
    },
  }, dir);
  return {
    ...running,
    async stop() {
      await keepRspamdCache(join(dir, "db")).catch(() => undefined);
      await running.stop();
    },
  };
}

/** The signing key's DNS record: "sel._domainkey.example.org" and its TXT value ("v=DKIM1; k=rsa; p=…"). */
export interface DkimKey {
  readonly name: string;
  readonly record: string;
}

export async function startOpenDkim(options: { readonly domain?: string; readonly selector?: string } = {}): Promise<RunningMilter & { readonly key: DkimKey }> {
  const opendkim = requirePeer("opendkim", "opendkim");
  const genkey = requirePeer("opendkim-genkey", "opendkim-tools");
  const domain = options.domain ?? "example.org";
  const selector = options.selector ?? "sel";
  const dir = await mkdtemp(join(tmpdir(), "petrel-opendkim-"));
  const gen = spawnSync(genkey, ["-D", dir, "-d", domain, "-s", selector], { encoding: "utf8", timeout: 30_000 });
  if (gen.status !== 0) throw new Error(`opendkim-genkey failed: ${gen.stderr}`);
  const txt = await readFile(join(dir, `${selector}.txt`), "utf8");
  const record = [...txt.matchAll(/"([^"]*)"/g)].map((m) => m[1]).join("");
  const running = await startDaemon({
    what: "OpenDKIM",
    command: opendkim,
    args: () => ["-f", "-x", join(dir, "opendkim.conf")],
    startMs: 30_000,
    prepare: (d, port) => writeFile(join(d, "opendkim.conf"), `Syslog no
Mode s
Socket inet:${port}@127.0.0.1
Domain ${domain}
Selector ${selector}
KeyFile ${join(d, `${selector}.private`)}
# The key sits in a temp dir, not a root-only key directory.
RequireSafeKeys no
# The address in the milter connect step; only these clients get their mail signed.
InternalHosts 127.0.0.0/8
# simple/simple: the strictest canonicalization, so any change to a signed byte fails verification.
Canonicalization simple/simple
# X-Mailer too: the tests write it with no space after the colon, which only an exact copy keeps.
SignHeaders From,To,Subject,Date,Message-ID,X-Mailer
PidFile ${join(d, "opendkim.pid")}
Background no
`),
  }, dir);
  return { ...running, key: { name: `${selector}._domainkey.${domain}`, record } };
}

export async function startScenarioMilter(options: { readonly leadingSpace?: boolean; readonly env?: NodeJS.ProcessEnv } = {}): Promise<RunningMilter> {
  const python = requirePythonModule("Milter", "python3-milter");
  const script = fileURLToPath(new URL("./py/scenario_milter.py", import.meta.url));
  const dir = await mkdtemp(join(tmpdir(), "petrel-scenario-milter-"));
  return startDaemon({
    what: "the scenario milter",
    command: python,
    args: (port) => [script, `inet:${port}@127.0.0.1`, ...(options.leadingSpace ? ["leadspc"] : [])],
    startMs: 30_000,
    env: options.env,
    stopSignal: "SIGKILL",
    prepare: async () => undefined,
  }, dir);
}
