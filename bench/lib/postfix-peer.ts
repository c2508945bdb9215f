/**
 * A private Postfix instance as a peer: its own config directory, queue,
 * data directory and Maildir, listening only on a loopback address and a
 * non-25 port; the system Postfix configuration is never read or changed.
 * Mail for bench.test is delivered by Postfix's virtual(8) agent into one
 * Maildir (<dir>/mail/u/) as the user nobody. Needs root (Postfix drops to
 * mail_owner=postfix itself).
 */
import { spawnSync } from "node:child_process";
import { chmod, chown, mkdir, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { pinned, which } from "./proc.ts";

export interface PostfixPeer {
  readonly dir: string;
  readonly maildirNew: string;
  /** pid of the master process (its children are smtpd, cleanup, qmgr, virtual). */
  readonly masterPid: number | null;
  stop(): Promise<void>;
}

export function postfixAvailable(): string | null {
  if (process.getuid?.() !== 0) return "not root";
  if (!which("postfix") || !which("postconf")) return "postfix is not installed";
  if (spawnSync("id", ["postfix"]).status !== 0) return "no postfix user";
  return null;
}

function run(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: "utf8", timeout: 30_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.status ?? r.signal}): ${r.stderr}${r.stdout}`);
}

function daemonDirectory(): string {
  const r = spawnSync("postconf", ["-h", "daemon_directory"], { encoding: "utf8" });
  return r.stdout.trim() || "/usr/lib/postfix/sbin";
}

export async function startPostfix(dir: string, address: string, port: number, cpu: string | null): Promise<PostfixPeer> {
  const conf = join(dir, "etc");
  const mail = join(dir, "mail");
  for (const d of [dir, conf, join(dir, "queue"), join(dir, "data"), mail]) await mkdir(d, { recursive: true });
  // Postfix processes run as "postfix" and "nobody" and must traverse the path.
  await chmod(dir, 0o755);
  await chown(mail, 65534, 65534);
  const data = join(dir, "data");
  const postfixUid = Number(spawnSync("id", ["-u", "postfix"], { encoding: "utf8" }).stdout.trim());
  await chown(data, postfixUid, -1);
  const main = [
    "compatibility_level = 3.6",
    `queue_directory = ${join(dir, "queue")}`,
    `data_directory = ${data}`,
    "command_directory = /usr/sbin",
    `daemon_directory = ${daemonDirectory()}`,
    "meta_directory = /etc/postfix",
    "mail_owner = postfix",
    "setgid_group = postdrop",
    "myhostname = postfix.bench.test",
    "mydomain = bench.test",
    "mydestination =",
    // Postfix accepts only addresses configured on an interface (lo has 127.0.0.1);
    // the listener itself binds the address in master.cf.
    "inet_interfaces = 127.0.0.1",
    "inet_protocols = ipv4",
    "mynetworks = 127.0.0.0/8",
    "relay_domains =",
    "alias_maps =",
    "alias_database =",
    "virtual_mailbox_domains = bench.test",
    `virtual_mailbox_base = ${mail}`,
    "virtual_mailbox_maps = static:u/",
    "virtual_uid_maps = static:65534",
    "virtual_gid_maps = static:65534",
    "virtual_minimum_uid = 100",
    "virtual_mailbox_limit = 0",
    "message_size_limit = 52428800",
    "smtpd_client_connection_count_limit = 0",
    "default_process_limit = 200",
    "smtpd_banner = $myhostname ESMTP",
    // no reverse DNS of clients (Petrel does none; 127.0.0.x would go to the resolver)
    "smtpd_peername_lookup = no",
    "biff = no",
    "smtputf8_enable = no",
    "syslog_name = postfix-bench",
    `maillog_file_prefixes = ${dir}`,
    `maillog_file = ${join(dir, "maillog")}`,
    "",
  ].join("\n");
  // chroot off everywhere (no chroot jail to populate); one smtpd listener.
  const master = [
    `${address}:${port} inet n - n - - smtpd`,
    "pickup    unix  n       -       n       60      1       pickup",
    "cleanup   unix  n       -       n       -       0       cleanup",
    "qmgr      unix  n       -       n       300     1       qmgr",
    "rewrite   unix  -       -       n       -       -       trivial-rewrite",
    "bounce    unix  -       -       n       -       0       bounce",
    "defer     unix  -       -       n       -       0       bounce",
    "trace     unix  -       -       n       -       0       bounce",
    "verify    unix  -       -       n       -       1       verify",
    "flush     unix  n       -       n       1000?   0       flush",
    "proxymap  unix  -       -       n       -       -       proxymap",
    "smtp      unix  -       -       n       -       -       smtp",
    "relay     unix  -       -       n       -       -       smtp",
    "showq     unix  n       -       n       -       -       showq",
    "error     unix  -       -       n       -       -       error",
    "retry     unix  -       -       n       -       -       error",
    "discard   unix  -       -       n       -       -       discard",
    "local     unix  -       n       n       -       -       local",
    "virtual   unix  -       n       n       -       -       virtual",
    "anvil     unix  -       -       n       -       1       anvil",
    "scache    unix  -       -       n       -       1       scache",
    "postlog   unix-dgram n  -       n       -       1       postlogd",
    "",
  ].join("\n");
  await writeFile(join(conf, "main.cf"), main);
  await writeFile(join(conf, "master.cf"), master);
  const [cmd, args] = pinned(cpu, "postfix", ["-c", conf, "start"]);
  run(cmd, args);
  const pidFile = join(dir, "queue", "pid", "master.pid");
  let masterPid: number | null = null;
  for (let i = 0; i < 50 && masterPid === null; i++) {
    try {
      const { readFileSync } = await import("node:fs");
      masterPid = Number(readFileSync(pidFile, "utf8").trim()) || null;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    dir, masterPid,
    maildirNew: join(mail, "u", "new"),
    async stop() {
      run("postfix", ["-c", conf, "stop"]);
    },
  };
}

/** Files in a Maildir's new/ (0 when it does not exist yet). */
export async function countFiles(dir: string): Promise<number> {
  try {
    return (await readdir(dir)).length;
  } catch {
    return 0;
  }
}
