/**
 * A private PostgreSQL for one test file: its own data directory in a temporary directory, its own
 * port on loopback, run as the unprivileged `postgres` user (initdb and the server refuse root),
 * password authentication (scram-sha-256) for TCP clients. Stopped — and its directory removed —
 * by `close()`. `stop()` and `start()` take the same server away and bring it back on the same
 * port and data (the tests of a database that is briefly gone); `kill()` is a SIGKILL of the
 * postmaster.
 *
 *   const pg = await startPostgres();      // pg.url: postgres://petrel:…@127.0.0.1:<port>/petrel
 *   after(() => pg.close());
 */
import { spawn, spawnSync } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { PeerMissing, requirePeerFile } from "./peers.ts";
import { migrate } from "../../src/storage/postgres/migrations.ts";
import { openPostgresPool, type PostgresPool } from "../../src/storage/postgres/postgres-pool.ts";
import pg from "pg";

export interface PrivatePostgres {
  /** A connection URL with the test role's password. */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly dataDir: string;
  /** Shut the server down (fast: open sessions are ended), keeping its data. */
  stop(): Promise<void>;
  /** Start it again on the same port and data. */
  start(): Promise<void>;
  /** SIGKILL the postmaster (its backends exit on their own), keeping its data. */
  kill(): Promise<void>;
  /** Stop the server and remove its directory. */
  close(): Promise<void>;
}

/** The newest installed server version's bin directory, e.g. /usr/lib/postgresql/15/bin. */
export function postgresBin(): string {
  const root = "/usr/lib/postgresql";
  const versions = existsSync(root) ? readdirSync(root).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a)) : [];
  const bin = versions.length > 0 ? join(root, versions[0], "bin") : join(root, "15", "bin");
  requirePeerFile(`${bin}/initdb`, "postgresql");
  return bin;
}

function postgresUser(): { uid: number; gid: number } {
  const r = spawnSync("getent", ["passwd", "postgres"], { encoding: "utf8" });
  const fields = r.stdout.trim().split(":");
  if (r.status !== 0 || fields.length < 4) throw new PeerMissing("the user postgres is missing: install the Debian package postgresql (its postgresql-common creates it)");
  return { uid: Number(fields[2]), gid: Number(fields[3]) };
}

async function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, host, () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address !== null ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

function run(file: string, args: readonly string[], user: { uid: number; gid: number }, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { uid: user.uid, gid: user.gid, stdio: ["ignore", "pipe", "pipe"], env: { PATH: "/usr/bin:/bin", LANG: "C.UTF-8" } });
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr.on("data", (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`${file} ${args.join(" ")} exited ${code ?? signal}:\n${output}`));
    });
  });
}

export async function startPostgres(options: { readonly host?: string } = {}): Promise<PrivatePostgres> {
  const bin = postgresBin();
  const user = postgresUser();
  const host = options.host ?? "127.0.0.1";
  const dir = mkdtempSync(join(tmpdir(), "petrel-pg-"));
  chownSync(dir, user.uid, user.gid);
  const dataDir = join(dir, "data");
  const password = randomBytes(12).toString("hex");
  const pwfile = join(dir, "pw");
  writeFileSync(pwfile, `${password}\n`, { mode: 0o600 });
  chownSync(pwfile, user.uid, user.gid);
  await run(`${bin}/initdb`, ["-D", dataDir, "-U", "petrel", "--pwfile", pwfile, "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--no-instructions"], user, 60_000);
  rmSync(pwfile);
  const port = await freePort(host);
  // Small and quick to start; the durability settings stay PostgreSQL's defaults (fsync, synchronous_commit on).
  const settings = [
    `listen_addresses = '${host}'`, `port = ${port}`, `unix_socket_directories = '${dir}'`,
    "max_connections = 200", "shared_buffers = 32MB", "logging_collector = off",
  ];
  writeFileSync(join(dataDir, "postgresql.auto.conf"), settings.join("\n") + "\n");
  const log = join(dir, "server.log");
  const ctl = (args: string[]): Promise<void> => run(`${bin}/pg_ctl`, ["-D", dataDir, "-l", log, ...args], user, 60_000);
  const start = (): Promise<void> => ctl(["-w", "-t", "50", "start"]);
  await start();
  await run(`${bin}/psql`, ["-h", dir, "-p", String(port), "-U", "petrel", "-d", "postgres", "-qc", "CREATE DATABASE petrel"], user, 30_000);
  let running = true;
  const stop = async (): Promise<void> => {
    if (!running) return;
    await ctl(["-w", "-t", "30", "-m", "fast", "stop"]);
    running = false;
  };
  return {
    url: `postgres://petrel:${password}@${host}:${port}/petrel`,
    host,
    port,
    dataDir,
    stop,
    async start() {
      await start();
      running = true;
    },
    async kill() {
      const pid = Number(readFileSync(join(dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
      if (!(pid > 0)) return;
      const children = childrenOf(pid);
      process.kill(pid, "SIGKILL");
      running = false;
      // The backends notice the postmaster is gone and exit; a new postmaster refuses to start while they hold its shared memory.
      for (let i = 0; i < 200 && children.some(alive); i++) await new Promise((r) => setTimeout(r, 25));
      for (const child of children.filter(alive)) process.kill(child, "SIGKILL");
      // The dead postmaster may linger as a zombie nobody reaps (a container's init), and a new one
      // would take its pid file for a live server: the file is stale, as an operator would confirm.
      rmSync(join(dataDir, "postmaster.pid"), { force: true });
      rmSync(join(dir, `.s.PGSQL.${port}.lock`), { force: true });
    },
    async close() {
      try {
        await stop();
      } finally {
        if (process.env.PETREL_KEEP_PG === undefined) rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

/** The processes whose parent is `pid` (from /proc: procps is not needed). */
function childrenOf(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) children.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return children;
}

/** Running, not a zombie waiting to be reaped (a zombie holds no shared memory). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/**
 * A petrel.yaml in `dir` for storage.kind postgres on `server`, its password kept in a 0600
 * `passwordFile` beside it (never in the YAML, as the README advises); `storage` adds keys under
 * storage:, `rest` adds top-level YAML lines. Returns the config's path.
 */
export async function postgresConfigFile(server: PrivatePostgres, dir: string, storage: Record<string, string>, rest = ""): Promise<string> {
  const url = new URL(server.url);
  const passwordFile = join(dir, "db-password");
  writeFileSync(passwordFile, `${decodeURIComponent(url.password)}\n`, { mode: 0o600 });
  url.password = "";
  const keys = Object.entries(storage).map(([k, v]) => `  ${k}: ${v}\n`).join("");
  const config = join(dir, "petrel.yaml");
  writeFileSync(config, `dataDir: ${dir}/data\nstorage:\n  kind: postgres\n  url: ${url.toString()}\n  passwordFile: ${passwordFile}\n${keys}${rest}`);
  return config;
}

/**
 * A private PostgreSQL with Petrel's schema and a pool on it, for a test file's `before`:
 *
 *   before(async () => ({ server, pool } = await startMigratedPostgres({ host: "127.0.61.1", poolSize: 8, node: "unit" })));
 *   after(() => stopMigratedPostgres(server, pool));
 */
export async function startMigratedPostgres(options: { readonly host?: string; readonly poolSize: number; readonly node: string }): Promise<{ server: PrivatePostgres; pool: PostgresPool }> {
  const server = await startPostgres(options.host === undefined ? {} : { host: options.host });
  const pool = openPostgresPool({ url: server.url, poolSize: options.poolSize, node: options.node }, () => {});
  try {
    await migrate(pool);
  } catch (err) {
    await stopMigratedPostgres(server, pool);
    throw err;
  }
  return { server, pool };
}

/** The `after` of startMigratedPostgres: either may be missing when `before` failed. */
export async function stopMigratedPostgres(server: PrivatePostgres | undefined, pool: PostgresPool | undefined): Promise<void> {
  await pool?.end();
  await server?.close();
}

/** A new, empty database `name` on the server (one per test case); the URL that reaches it. */
export async function createDatabase(server: PrivatePostgres, name: string): Promise<string> {
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`not a plain database name: ${name}`);
  const admin = new pg.Client({ connectionString: server.url });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const u = new URL(server.url);
  u.pathname = `/${name}`;
  return u.toString();
}
