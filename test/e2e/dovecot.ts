/**
 * A private Dovecot for interop tests: its own config, sockets, state, log
 * and mail root in a temp dir; IMAP and LMTP on free 127.0.0.1 ports; users in
 * a passwd-file. Written for Dovecot 2.3 (Debian: dovecot-imapd, dovecot-lmtpd).
 *
 * Dovecot refuses to access mail as uid 0, so mail belongs to `nobody`
 * (`mailOwner`): Petrel, running as root in the tests, gives what it delivers
 * to that user through `delivery.owner`, as it would to `vmail` in production.
 *
 * Also a minimal IMAP client (LOGIN, SELECT, FETCH BODY.PEEK[]) that returns
 * the exact bytes of each message.
 */
import { spawnSync } from "node:child_process";
import { connect, createServer } from "node:net";
import { chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { requirePeer, requirePeerFile, requireRoot } from "../support/peers.ts";
import { canConnect, spawnDaemon } from "../support/daemon.ts";

export interface DovecotUser {
  readonly address: string;
  readonly password: string;
}

export interface Dovecot {
  readonly version: string;
  readonly imapPort: number;
  readonly lmtpPort: number;
  /** mail_location = maildir:<mailRoot>/%d/%n */
  readonly mailRoot: string;
  /** Dovecot's mail user: what Petrel delivers must belong to it (delivery.owner). */
  readonly mailOwner: { readonly uid: number; readonly gid: number };
  log(): Promise<string>;
  stop(): Promise<void>;
}

/** Dovecot 2.3 with IMAP and LMTP, and root to start it; else a PeerMissing naming the package. */
export function requireDovecot(): string {
  const bin = requirePeer("dovecot", "dovecot-imapd dovecot-lmtpd");
  requirePeerFile("/usr/lib/dovecot/imap", "dovecot-imapd");
  requirePeerFile("/usr/lib/dovecot/lmtp", "dovecot-lmtpd");
  requireRoot("starting a private Dovecot");
  const v = spawnSync(bin, ["--version"], { encoding: "utf8" });
  if (v.status !== 0) throw new Error(`dovecot --version failed: ${v.stderr}`);
  if (!v.stdout.startsWith("2.3.")) throw new Error(`these tests are written for Dovecot 2.3 (Debian 12), found ${v.stdout.trim()}`);
  return bin;
}

function mailUser(): { uid: number; gid: number } {
  try {
    for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
      const f = line.split(":");
      if (f[0] === "nobody") return { uid: Number(f[2]), gid: Number(f[3]) };
    }
  } catch {
    // fall through
  }
  return { uid: 65534, gid: 65534 };
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", resolve);
  });
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

function config(dir: string, imapPort: number, lmtpPort: number, uid: number, gid: number): string {
  return `# Private Dovecot 2.3 for Petrel's interop tests.
base_dir = ${dir}/run
state_dir = ${dir}/state
log_path = ${dir}/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:${dir}/mail/%d/%n
postmaster_address = postmaster@example.com
hostname = dovecot.test
passdb {
  driver = passwd-file
  args = ${dir}/users
}
userdb {
  driver = passwd-file
  args = ${dir}/users
  default_fields = uid=${uid} gid=${gid} home=${dir}/home/%d/%n
}
service auth {
  user = root
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = ${imapPort}
  }
  inet_listener imaps {
    port = 0
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = ${lmtpPort}
  }
}
`;
}

export async function startDovecot(users: readonly DovecotUser[]): Promise<Dovecot> {
  const bin = requireDovecot();
  const version = spawnSync(bin, ["--version"], { encoding: "utf8" }).stdout.trim();
  const { uid, gid } = mailUser();
  let lastError = "";
  for (let attempt = 0; attempt < 3; attempt++) {
    const dir = await mkdtemp(join(tmpdir(), "petrel-dovecot-"));
    await chmod(dir, 0o755);
    await mkdir(join(dir, "run"));
    await mkdir(join(dir, "state"));
    await mkdir(join(dir, "mail"));
    await chown(join(dir, "mail"), uid, gid);
    await writeFile(join(dir, "users"), users.map((u) => `${u.address}:{PLAIN}${u.password}::::::\n`).join(""));
    const imapPort = await freePort();
    let lmtpPort = await freePort();
    while (lmtpPort === imapPort) lmtpPort = await freePort();
    const conf = join(dir, "dovecot.conf");
    await writeFile(conf, config(dir, imapPort, lmtpPort, uid, gid));

    const daemon = spawnDaemon(bin, ["-F", "-c", conf]);

    const deadline = Date.now() + 10_000;
    let up = false;
    while (!daemon.dead && Date.now() < deadline) {
      if ((await canConnect(imapPort)) && (await canConnect(lmtpPort))) {
        up = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    const readLog = async () => {
      try {
        return await readFile(join(dir, "dovecot.log"), "utf8");
      } catch {
        return "";
      }
    };
    const stop = async () => {
      await daemon.stop();
      await rm(dir, { recursive: true, force: true });
    };
    if (up) {
      return {
        version,
        imapPort,
        lmtpPort,
        mailRoot: join(dir, "mail"),
        mailOwner: { uid, gid },
        log: readLog,
        stop,
      };
    }
    lastError = `${daemon.output()}\n${await readLog()}`;
    await stop();
  }
  throw new Error(`Dovecot did not start: ${lastError}`);
}

export interface ImapMessage {
  /** BODY[]: the exact bytes. */
  readonly body: Buffer;
  /** RFC822.SIZE as the server reports it (Dovecot takes it from W= in a Maildir name). */
  readonly size: number;
}

/** Log in over IMAP and return every message in `mailbox` (INBOX unless named), in order. */
export async function imapFetchAll(port: number, user: string, password: string, mailbox = "INBOX"): Promise<ImapMessage[]> {
  const sock = connect({ host: "127.0.0.1", port });
  let buf = Buffer.alloc(0);
  let waiter: (() => void) | undefined;
  let failure: Error | undefined;
  sock.on("data", (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    waiter?.();
  });
  sock.on("error", (e) => {
    failure = e;
    waiter?.();
  });
  sock.on("close", () => {
    failure ??= new Error("IMAP connection closed");
    waiter?.();
  });
  const more = () =>
    new Promise<void>((resolve, reject) => {
      if (failure) return reject(failure);
      const timer = setTimeout(() => reject(new Error("IMAP timeout")), 10_000);
      waiter = () => {
        clearTimeout(timer);
        waiter = undefined;
        if (failure) reject(failure);
        else resolve();
      };
    });
  /** One response line, with its literals spliced out. */
  const readResponse = async (): Promise<{ text: string; literals: Buffer[] }> => {
    let text = "";
    const literals: Buffer[] = [];
    for (;;) {
      let crlf = buf.indexOf("\r\n");
      while (crlf === -1) {
        await more();
        crlf = buf.indexOf("\r\n");
      }
      const line = buf.subarray(0, crlf).toString("utf8");
      buf = buf.subarray(crlf + 2);
      text += line;
      const lit = /\{(\d+)\}$/.exec(line);
      if (!lit) return { text, literals };
      const n = Number(lit[1]);
      while (buf.length < n) await more();
      literals.push(Buffer.from(buf.subarray(0, n)));
      buf = buf.subarray(n);
    }
  };
  let tagN = 0;
  const command = async (cmd: string) => {
    const tag = `a${++tagN}`;
    sock.write(`${tag} ${cmd}\r\n`);
    const untagged: { text: string; literals: Buffer[] }[] = [];
    for (;;) {
      const r = await readResponse();
      if (r.text.startsWith(`${tag} `)) {
        if (!r.text.startsWith(`${tag} OK`)) throw new Error(`IMAP ${cmd.split(" ")[0]} failed: ${r.text}`);
        return untagged;
      }
      untagged.push(r);
    }
  };
  try {
    const greeting = await readResponse();
    if (!greeting.text.startsWith("* OK")) throw new Error(`IMAP greeting: ${greeting.text}`);
    const q = (s: string) => `"${s.replace(/["\\]/g, "\\$&")}"`;
    await command(`LOGIN ${q(user)} ${q(password)}`);
    const sel = await command(`SELECT ${q(mailbox)}`);
    const exists = Number(sel.map((r) => /^\* (\d+) EXISTS/.exec(r.text)).find((m) => m)?.[1] ?? 0);
    if (exists === 0) return [];
    const fetched = await command("FETCH 1:* (RFC822.SIZE BODY.PEEK[])");
    const messages: ImapMessage[] = [];
    for (const r of fetched) {
      if (!/^\* \d+ FETCH/.test(r.text) || r.literals.length === 0) continue;
      messages.push({ body: r.literals[0], size: Number(/RFC822\.SIZE (\d+)/.exec(r.text)?.[1] ?? -1) });
    }
    await command("LOGOUT").catch(() => []);
    return messages;
  } finally {
    sock.destroy();
  }
}
