/**
 * A private Postfix for interop tests: its own config directory, queue, data
 * directory, log file and virtual Maildir root in a temp dir; one smtpd on
 * <address>:<port> (a 127.0.0.x loopback address); virtual mailbox domains
 * delivered to Maildir; optional relays by transport map (no DNS anywhere).
 * Written for Postfix 3.7 (Debian 12: apt-get install postfix; Postfix ≥ 3.4
 * is needed for maillog_file). Also a tiny independent SMTP client (node:net,
 * plain text) to inject mail into any SMTP server.
 *
 * How the instance is started on Debian, as root, without touching the system
 * instance (/etc/postfix is only read, never written):
 *
 *   mkdir DIR/etc DIR/queue DIR/data DIR/mail; chown postfix DIR/data; chown nobody DIR/mail
 *   write DIR/etc/main.cf and DIR/etc/master.cf (below)
 *   postfix -c DIR/etc start      # postfix-script: check-fatal creates the queue
 *                                 # sub-directories with Postfix's ownership, then master -w
 *   ... wait until <address>:<port> accepts a connection (bounded)
 *   postfix -c DIR/etc stop       # then wait (bounded) until the master pid is gone
 *
 * - `postfix -c DIR` needs no `alternate_config_directories` entry in
 *   /etc/postfix/main.cf when run by root: that check (mail_conf_checkdir)
 *   applies only to unprivileged users of the set-gid commands (postdrop,
 *   postqueue); the test runs as root, so the system config stays untouched.
 * - inet_interfaces cannot name 127.0.0.21: Postfix accepts only addresses of
 *   a configured interface (lo has 127.0.0.1 only; Linux still lets a socket
 *   bind any 127/8 address). So inet_interfaces = loopback-only, the smtpd
 *   line in master.cf binds <address>:<port> explicitly, and
 *   smtp_bind_address = <address> makes outbound connections come from it.
 * - Every service runs with chroot = n (the queue is in a temp dir, not a
 *   prepared chroot); the temp dir is made 0755 so the postfix and nobody
 *   users can traverse it; data_directory must belong to postfix
 *   (master.lock); the virtual Maildir root to the mailbox uid (nobody).
 * - maillog_file (with maillog_file_prefixes = DIR) and a postlog service log
 *   to DIR/maillog, without syslog.
 * - No DNS: smtpd_peername_lookup = no, smtp_dns_support_level = disabled,
 *   relays are `smtp:[IP]:port` entries of a texthash: transport map.
 */
import { spawn, spawnSync } from "node:child_process";
import { connect, createServer } from "node:net";
import { chmod, chown, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { requirePeer, requirePeerFile, requireRoot } from "../support/peers.ts";

export interface PostfixRelay {
  /** Mail for this domain (and nothing else) goes to smtp:[host]:port. */
  readonly domain: string;
  readonly host: string;
  readonly port: number;
}

export interface PostfixOptions {
  /** Loopback address smtpd listens on and the smtp client connects from (127.0.0.x). */
  readonly address: string;
  /** smtpd port; default: a free port on `address`. */
  readonly port?: number;
  /** myhostname; default mx.<first domain>. */
  readonly hostname?: string;
  /** Virtual mailbox domains, delivered to Maildir under maildirRoot/<domain>/<local>/. */
  readonly domains: readonly string[];
  /** Mailboxes (local@domain) in those domains; other recipients get 550 5.1.1. */
  readonly mailboxes: readonly string[];
  readonly relay?: PostfixRelay | readonly PostfixRelay[];
  /** STARTTLS in smtpd (self-signed certificate from openssl) and opportunistic TLS in smtp. Default true. */
  readonly tls?: boolean;
  /** More main.cf lines. */
  readonly extraMainCf?: Readonly<Record<string, string>>;
}

export interface Postfix {
  readonly version: string;
  readonly address: string;
  readonly smtpPort: number;
  readonly hostname: string;
  readonly dir: string;
  readonly configDir: string;
  /** virtual_mailbox_base */
  readonly maildirRoot: string;
  /** The files in new/ of a mailbox, oldest name first (exact bytes). */
  maildir(address: string): Promise<Buffer[]>;
  /** Send one message to this Postfix's smtpd. */
  submit(message: SmtpMessage): Promise<SmtpResult>;
  /** The queue as `postqueue -j` shows it: one object per message. */
  queue(): Promise<Record<string, unknown>[]>;
  /** Ask the queue manager to retry deferred mail now (postqueue -f). */
  flush(): Promise<void>;
  log(): Promise<string>;
  stop(): Promise<void>;
}

const POSTFIX = "/usr/sbin/postfix";
const POSTCONF = "/usr/sbin/postconf";
const POSTQUEUE = "/usr/sbin/postqueue";
const DAEMON_DIR = "/usr/lib/postfix/sbin";

/** Postfix ≥ 3.4 with its daemons, openssl and root; else a PeerMissing (or Error) saying what to install. */
export function requirePostfix(): void {
  requirePeer("postfix", "postfix");
  requirePeer("postconf", "postfix");
  for (const d of ["master", "smtpd", "smtp", "virtual", "postlogd", "qmgr", "cleanup"]) requirePeerFile(join(DAEMON_DIR, d), "postfix");
  requirePeer("openssl", "openssl");
  requireRoot("starting a private Postfix");
  if (userIds("postfix") === undefined) throw new Error("there is no postfix user: reinstall the Debian package postfix");
  const version = postfixVersion();
  const [major, minor] = version.split(".").map(Number);
  if (!(major > 3 || (major === 3 && minor >= 4))) throw new Error(`Postfix ≥ 3.4 is needed (maillog_file), found ${version}`);
}

function postfixVersion(): string {
  try {
    const r = spawnText(POSTCONF, ["-dh", "mail_version"]);
    return r.trim();
  } catch {
    return "unknown";
  }
}

/** Synchronous, for probing before any test runs. */
function spawnText(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: "utf8", timeout: 10_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

function userIds(name: string): { uid: number; gid: number } | undefined {
  try {
    for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
      const f = line.split(":");
      if (f[0] === name) return { uid: Number(f[2]), gid: Number(f[3]) };
    }
  } catch {
    // fall through
  }
  return undefined;
}

/** Run a program with a time limit; never rejects on exit status. */
function run(cmd: string, args: string[], timeoutMs = 15_000): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], timeout: timeoutMs });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, out }));
  });
}

export async function freePortOn(address: string): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once("error", reject);
    srv.listen(0, address, resolve);
  });
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function pollUntil(what: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await what()) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return what();
}

function mainCf(o: {
  dir: string; address: string; hostname: string; domains: readonly string[]; tls: boolean; mailUid: number; mailGid: number;
  extra: Readonly<Record<string, string>>;
}): string {
  const { dir } = o;
  const lines: Record<string, string> = {
    compatibility_level: "3.6",
    queue_directory: `${dir}/queue`,
    data_directory: `${dir}/data`,
    command_directory: "/usr/sbin",
    daemon_directory: DAEMON_DIR,
    mail_owner: "postfix",
    setgid_group: "postdrop",
    maillog_file: `${dir}/maillog`,
    maillog_file_prefixes: dir,
    inet_interfaces: "loopback-only",
    inet_protocols: "ipv4",
    smtp_bind_address: o.address,
    myhostname: o.hostname,
    mydomain: o.domains[0] ?? "localdomain",
    myorigin: "$mydomain",
    mydestination: "",
    mynetworks: "127.0.0.0/8",
    relayhost: "",
    relay_domains: "",
    alias_maps: "",
    alias_database: "",
    local_recipient_maps: "",
    biff: "no",
    append_dot_mydomain: "no",
    smtputf8_enable: "yes",
    smtpd_banner: "$myhostname ESMTP $mail_name",
    smtpd_peername_lookup: "no",
    smtpd_relay_restrictions: "permit_mynetworks, reject_unauth_destination",
    smtp_dns_support_level: "disabled",
    virtual_mailbox_domains: o.domains.join(", "),
    virtual_mailbox_base: `${dir}/mail`,
    virtual_mailbox_maps: `texthash:${dir}/etc/vmailbox`,
    virtual_uid_maps: `static:${o.mailUid}`,
    virtual_gid_maps: `static:${o.mailGid}`,
    transport_maps: `texthash:${dir}/etc/transport`,
    // Quick retries: a test that defers once should not wait minutes.
    queue_run_delay: "1s",
    minimal_backoff_time: "1s",
    maximal_backoff_time: "2s",
    delay_warning_time: "0h",
  };
  if (o.tls) {
    Object.assign(lines, {
      smtpd_tls_security_level: "may",
      smtpd_tls_chain_files: `${dir}/etc/key.pem, ${dir}/etc/cert.pem`,
      smtpd_tls_received_header: "yes",
      smtpd_tls_loglevel: "1",
      smtp_tls_security_level: "may",
      smtp_tls_loglevel: "1",
    });
  } else {
    Object.assign(lines, { smtpd_tls_security_level: "none", smtp_tls_security_level: "none" });
  }
  Object.assign(lines, o.extra);
  return "# Private Postfix for Petrel's interop tests.\n" +
    Object.entries(lines).map(([k, v]) => `${k} = ${v}`).join("\n") + "\n";
}

/** The standard Debian services, every one with chroot = n, and smtpd on one address only. */
function masterCf(address: string, port: number): string {
  return `# service type  private unpriv  chroot  wakeup  maxproc command + args
${address}:${port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`;
}

export async function startPostfix(options: PostfixOptions): Promise<Postfix> {
  requirePostfix();
  const version = postfixVersion();
  const mail = userIds("nobody") ?? { uid: 65534, gid: 65534 };
  const postfixUser = userIds("postfix")!;
  const { address } = options;
  const hostname = options.hostname ?? `mx.${options.domains[0] ?? "postfix.test"}`;
  const tls = options.tls ?? true;
  const relays = options.relay === undefined ? [] : Array.isArray(options.relay) ? options.relay as readonly PostfixRelay[] : [options.relay as PostfixRelay];

  const dir = await mkdtemp(join(tmpdir(), "petrel-postfix-"));
  await chmod(dir, 0o755);
  const etc = join(dir, "etc");
  const cleanupDir = () => rm(dir, { recursive: true, force: true });
  try {
    for (const d of ["etc", "queue", "data", "mail"]) await mkdir(join(dir, d));
    await chown(join(dir, "data"), postfixUser.uid, postfixUser.gid);
    await chown(join(dir, "mail"), mail.uid, mail.gid);
    await writeFile(join(etc, "vmailbox"), options.mailboxes.map((m) => {
      const at = m.lastIndexOf("@");
      return `${m} ${m.slice(at + 1)}/${m.slice(0, at)}/\n`;
    }).join(""));
    await writeFile(join(etc, "transport"), relays.map((r) => `${r.domain} smtp:[${r.host}]:${r.port}\n`).join(""));
    if (tls) {
      const r = await run("openssl", [
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", join(etc, "key.pem"), "-out", join(etc, "cert.pem"), "-days", "2", "-subj", `/CN=${hostname}`,
        "-addext", `subjectAltName=DNS:${hostname}`,
      ]);
      if (r.code !== 0) throw new Error(`openssl req failed: ${r.out}`);
      await chmod(join(etc, "key.pem"), 0o600);
    }
    await writeFile(join(etc, "main.cf"), mainCf({
      dir, address, hostname, domains: options.domains, tls, mailUid: mail.uid, mailGid: mail.gid, extra: options.extraMainCf ?? {},
    }));
  } catch (err) {
    await cleanupDir();
    throw err;
  }

  const readLog = async () => readFile(join(dir, "maillog"), "utf8").catch(() => "");
  const pidFile = join(dir, "queue", "pid", "master.pid");
  const masterPid = async () => Number((await readFile(pidFile, "utf8").catch(() => "")).trim()) || undefined;

  let lastError = "";
  for (let attempt = 0; attempt < 3; attempt++) {
    const smtpPort = options.port ?? (await freePortOn(address));
    await writeFile(join(etc, "master.cf"), masterCf(address, smtpPort));
    const started = await run(POSTFIX, ["-c", etc, "start"], 30_000);
    let pid = await masterPid();
    const up = started.code === 0 && pid !== undefined &&
      (await pollUntil(async () => alive(pid!) && (await canConnect(address, smtpPort)), 10_000));

    const stop = async () => {
      pid ??= await masterPid();
      if (pid !== undefined && alive(pid)) {
        await run(POSTFIX, ["-c", etc, "stop"], 15_000);
        if (!(await pollUntil(() => !alive(pid!), 10_000))) {
          process.kill(pid, "SIGKILL");
          await pollUntil(() => !alive(pid!), 2_000);
        }
      }
    };
    if (up) {
      const maildirRoot = join(dir, "mail");
      return {
        version,
        address,
        smtpPort,
        hostname,
        dir,
        configDir: etc,
        maildirRoot,
        async maildir(addr) {
          const at = addr.lastIndexOf("@");
          const nd = join(maildirRoot, addr.slice(at + 1), addr.slice(0, at), "new");
          const names = (await readdir(nd).catch(() => [] as string[])).sort();
          return Promise.all(names.map((n) => readFile(join(nd, n))));
        },
        submit: (message) => smtpSend({ host: address, port: smtpPort, ...message }),
        async queue() {
          const r = await run(POSTQUEUE, ["-c", etc, "-j"]);
          if (r.code !== 0) throw new Error(`postqueue -j: ${r.out}`);
          return r.out.split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l) as Record<string, unknown>);
        },
        async flush() {
          await run(POSTQUEUE, ["-c", etc, "-f"]);
        },
        log: readLog,
        async stop() {
          await stop();
          await cleanupDir();
        },
      };
    }
    lastError = `postfix start exited ${started.code}: ${started.out}\n${await readLog()}`;
    await stop();
    if (options.port !== undefined) break;
  }
  await cleanupDir();
  throw new Error(`Postfix did not start: ${lastError}`);
}

// -- a tiny SMTP client -----------------------------------------------------------------------

export interface SmtpMessage {
  /** "" for the null reverse-path. */
  readonly from: string;
  readonly to: readonly string[];
  /** The message; LF or CRLF line ends (sent as CRLF), not dot-stuffed. */
  readonly data: string | Buffer;
  /** Add SMTPUTF8 (and BODY=8BITMIME) to MAIL FROM. */
  readonly smtputf8?: boolean;
  readonly helo?: string;
}

export interface SmtpResult {
  /** Every command and the full reply it got ("250 2.0.0 Ok: queued as ABC"). */
  readonly transcript: { command: string; reply: string }[];
  readonly ehlo: string[];
  readonly mail: string;
  readonly rcpt: string[];
  /** The reply to the end of data; undefined when no recipient was accepted. */
  readonly data?: string;
}

/** One plain-text SMTP transaction: EHLO, MAIL, RCPT..., DATA, QUIT. Times out after `timeoutMs`. */
export function smtpSend(o: SmtpMessage & { host: string; port: number; timeoutMs?: number }): Promise<SmtpResult> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: o.host, port: o.port });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`SMTP to ${o.host}:${o.port} timed out; transcript: ${JSON.stringify(transcript)}`));
    }, o.timeoutMs ?? 15_000);
    const transcript: { command: string; reply: string }[] = [];
    let buf = "";
    let pending: string[] = [];
    const replies: string[][] = [];
    let waiter: (() => void) | undefined;
    sock.setEncoding("utf8");
    sock.on("data", (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf("\r\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 2);
        pending.push(line);
        if (/^\d{3} /.test(line) || /^\d{3}$/.test(line)) {
          replies.push(pending);
          pending = [];
          waiter?.();
        }
      }
    });
    const fail = (err: Error) => {
      clearTimeout(timer);
      sock.destroy();
      reject(err);
    };
    sock.on("error", fail);
    const reply = () => new Promise<string[]>((res) => {
      const take = () => {
        if (replies.length === 0) return false;
        waiter = undefined;
        res(replies.shift()!);
        return true;
      };
      if (!take()) waiter = take;
    });
    const command = async (line: string | undefined, raw?: Buffer): Promise<string[]> => {
      const r = reply();
      if (raw) sock.write(raw);
      else if (line !== undefined) sock.write(line + "\r\n");
      const lines = await r;
      transcript.push({ command: line ?? "<greeting>", reply: lines.join("\n") });
      return lines;
    };
    (async () => {
      const greeting = await command(undefined);
      if (!greeting[0].startsWith("220")) throw new Error(`greeting: ${greeting.join("\n")}`);
      const ehlo = await command(`EHLO ${o.helo ?? "client.test"}`);
      const params = o.smtputf8 ? " SMTPUTF8 BODY=8BITMIME" : "";
      const mail = (await command(`MAIL FROM:<${o.from}>${params}`)).join("\n");
      const rcpt: string[] = [];
      for (const to of o.to) rcpt.push((await command(`RCPT TO:<${to}>`)).join("\n"));
      let data: string | undefined;
      if (mail.startsWith("250") && rcpt.some((r) => r.startsWith("250"))) {
        const go = (await command("DATA")).join("\n");
        if (go.startsWith("354")) {
          let text = Buffer.isBuffer(o.data) ? o.data.toString("latin1") : Buffer.from(o.data, "utf8").toString("latin1");
          text = text.replace(/\r?\n/g, "\r\n");
          if (!text.endsWith("\r\n")) text += "\r\n";
          text = text.replace(/^\./gm, "..");
          data = (await command("<message>", Buffer.from(text + ".\r\n", "latin1"))).join("\n");
        } else {
          data = go;
        }
      }
      await command("QUIT");
      clearTimeout(timer);
      sock.destroy();
      resolve({ transcript, ehlo, mail, rcpt, data });
    })().catch(fail);
  });
}
