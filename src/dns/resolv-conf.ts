/**
 * The system's resolvers, from resolv.conf(5): the `nameserver` lines, in
 * order, at most three (the C library's MAXNS). With none, the C library asks
 * the local host, and so does Petrel (127.0.0.1).
 *
 * The file is watched the way the C library (since glibc 2.26) and Postfix on
 * reload do it: when it changes — a DHCP lease, systemd-resolved, a VPN — the
 * next lookup uses the new servers. Here a lookup checks the file's identity
 * (inode, size, mtime, ctime) at most every `checkIntervalMs` and re-reads it
 * when that changed; `reload()` re-reads it at once (SIGHUP).
 */
import { systemClock, type Now } from "../mail/clock.ts";
import { readFileSync, statSync } from "node:fs";
import { isIP } from "node:net";
import { parseServerAddress, type ServerAddress } from "./names.ts";

export const RESOLV_CONF = "/etc/resolv.conf";
/** resolv.conf(5): "Up to MAXNS (currently 3) name servers may be listed". */
const MAXNS = 3;
const LOCAL_FALLBACK = "127.0.0.1";

/** The nameserver addresses of a resolv.conf text, in order (comments, options and bad lines skipped). */
export function parseResolvConf(text: string): string[] {
  const servers: string[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.replace(/[#;].*$/, "").trim();
    const m = /^nameserver\s+(\S+)/.exec(line);
    if (!m) continue;
    const address = m[1];
    if (isIP(address) === 0 || servers.includes(address)) continue;
    servers.push(address);
    if (servers.length === MAXNS) break;
  }
  return servers;
}

export interface SystemNameserversOptions {
  /** Default /etc/resolv.conf. */
  readonly path?: string;
  /** Look at the file at most this often (default 5 s; 0: at every lookup). */
  readonly checkIntervalMs?: number;
  readonly clock?: Now;
}

export interface NameserverReport {
  /** Where they came from: the resolv.conf path. */
  readonly source: string;
  readonly servers: readonly string[];
  /** resolv.conf was missing or named no server, so the local host is asked. */
  readonly fallback: boolean;
}

export class SystemNameservers {
  private readonly path: string;
  private readonly checkIntervalMs: number;
  private readonly clock: Now;
  private identity = "";
  private checkedAt = -Infinity;
  private texts: string[] = [];
  private addresses: ServerAddress[] = [];
  private fallback = false;

  constructor(options: SystemNameserversOptions = {}) {
    this.path = options.path ?? RESOLV_CONF;
    this.checkIntervalMs = options.checkIntervalMs ?? 5000;
    this.clock = options.clock ?? systemClock;
    this.reload();
  }

  /** The servers to ask now (re-reading the file if it changed). */
  current(): readonly ServerAddress[] {
    const now = this.clock.now();
    if (now - this.checkedAt >= this.checkIntervalMs) {
      this.checkedAt = now;
      if (this.fileIdentity() !== this.identity) this.reload();
    }
    return this.addresses;
  }

  /** Read the file again now. */
  reload(): void {
    this.checkedAt = this.clock.now();
    this.identity = this.fileIdentity();
    let servers: string[] = [];
    try {
      servers = parseResolvConf(readFileSync(this.path, "utf8"));
    } catch {
      // Missing or unreadable: the C library's default, like an empty file.
    }
    this.fallback = servers.length === 0;
    this.texts = this.fallback ? [LOCAL_FALLBACK] : servers;
    this.addresses = this.texts.map(parseServerAddress);
  }

  report(): NameserverReport {
    return { source: this.path, servers: [...this.texts], fallback: this.fallback };
  }

  private fileIdentity(): string {
    try {
      const st = statSync(this.path);
      return `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
    } catch {
      return "missing";
    }
  }
}
