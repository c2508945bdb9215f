/**
 * Who Petrel runs as. Started as root — to bind port 25 and read a TLS key
 * only root may read — it switches for good to the configured `user:` once
 * its listeners are bound and its keys read, before it serves a connection or
 * opens anything in the data directory, as every long-running MTA does
 * (Postfix's master runs its daemons as mail_owner). The order is setgroups,
 * setgid, setuid: after setuid the groups could no longer be changed. Then it
 * checks that root cannot be regained (real, effective and saved ids all
 * changed) and refuses to run otherwise.
 *
 * Node.js has no capability API, so the alternative to starting as root is
 * starting as the user with CAP_NET_BIND_SERVICE (contrib/petrel.service).
 */
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import type { Logger } from "pino";
import type { Config } from "../config/schema.ts";
import { configIssue, startupConfigError } from "../config/load.ts";
import type { ConfigIssue } from "../config/config-error.ts";
import { lookupGroup, lookupUser } from "./system-users.ts";
import type { MaildirOwner } from "../delivery/maildir.ts";

/** The user and group to switch to, resolved to ids. */
export interface RunAs {
  /** The user's name, or its uid as text when it has no passwd entry. */
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
  /** Whether the user has a passwd entry (then its supplementary groups come from the group database). */
  readonly named: boolean;
}

/** The switch to `user:` failed or left a way back to root. */
export class PrivilegeError extends Error {
  override readonly name = "PrivilegeError";
}

/** `user:` and `group:` resolved to ids; undefined when no user is configured. */
export async function resolveRunAs(config: Config): Promise<RunAs | undefined> {
  if (config.user === undefined) return undefined;
  const issues: ConfigIssue[] = [];
  const user = await lookupUser(config.user);
  const group = config.group === undefined ? undefined : await lookupGroup(config.group);
  if (config.group !== undefined && group === undefined && typeof config.group !== "number") {
    issues.push(configIssue(config, ["group"], config.group, "expected a group of this system (getent group found nothing): create it with groupadd --system"));
  }
  if (user === undefined && (typeof config.user !== "number" || config.group === undefined)) {
    issues.push(configIssue(config, ["user"], config.user, typeof config.user === "number"
      ? "expected a user of this system, or a numeric uid together with group:"
      : "expected a user of this system (getent passwd found nothing): create one, e.g. useradd --system --home-dir /var/lib/petrel --shell /usr/sbin/nologin petrel"));
  }
  if (issues.length > 0) throw startupConfigError(config, issues);
  const gid = group?.gid ?? (typeof config.group === "number" ? config.group : user!.gid);
  return user
    ? { name: user.name, uid: user.uid, gid, named: true }
    : { name: String(config.user), uid: config.user as number, gid, named: false };
}

/** `delivery.owner` resolved to ids; undefined when not configured. */
export async function resolveDeliveryOwner(config: Config): Promise<MaildirOwner | undefined> {
  const owner = config.delivery.owner;
  if (owner === undefined) return undefined;
  const issues: ConfigIssue[] = [];
  const user = owner.user === undefined ? undefined : await lookupUser(owner.user);
  const group = owner.group === undefined ? undefined : await lookupGroup(owner.group);
  if (owner.user !== undefined && user === undefined && typeof owner.user !== "number") {
    issues.push(configIssue(config, ["delivery", "owner", "user"], owner.user, "expected a user of this system (getent passwd found nothing), or a numeric uid"));
  }
  if (owner.group !== undefined && group === undefined && typeof owner.group !== "number") {
    issues.push(configIssue(config, ["delivery", "owner", "group"], owner.group, "expected a group of this system (getent group found nothing), or a numeric gid"));
  }
  if (issues.length > 0) throw startupConfigError(config, issues);
  const uid = user?.uid ?? (typeof owner.user === "number" ? owner.user : -1);
  const gid = group?.gid ?? (typeof owner.group === "number" ? owner.group : user?.gid ?? -1);
  return { uid, gid, shared: owner.group !== undefined };
}

function isLoopback(address: string): boolean {
  return isIP(address) === 4 ? address.startsWith("127.") : address === "::1";
}

/**
 * Before anything is opened: refuse to run as root facing the network with
 * no user to switch to, and refuse a user the process cannot become.
 */
export function checkStartingUser(config: Config, runAs: RunAs | undefined, uid: number, log: Logger): void {
  if (uid === 0 && runAs === undefined) {
    const exposed = config.listeners.findIndex((l) => !isLoopback(l.address));
    if (exposed >= 0) {
      const l = config.listeners[exposed];
      throw startupConfigError(config, [configIssue(config, ["user"], undefined,
        `Petrel is started as root and listeners[${exposed}] listens on ${l.address} (not loopback): name an unprivileged user to switch to once the listeners are bound ` +
        "(user: petrel, after useradd --system petrel), or start Petrel as that user with CAP_NET_BIND_SERVICE (contrib/petrel.service)",
        "missing")]);
    }
    log.warn("running as root with no user: configured; acceptable on loopback only — set user: before listening on a public address");
    return;
  }
  if (runAs !== undefined && uid !== 0 && uid !== runAs.uid) {
    throw startupConfigError(config, [configIssue(config, ["user"], config.user,
      `expected the user Petrel is started as (uid ${uid}), or start Petrel as root: only root can switch to ${runAs.name}`)]);
  }
}

/** The process's ids as the kernel holds them: real, effective, saved and file-system (Linux /proc). */
export function kernelIds(statusText: string = readFileSync("/proc/self/status", "utf8")): { uids: number[]; gids: number[]; groups: number[] } {
  const ids = (key: string) => (new RegExp(`^${key}:\\s*([^\\n]*)$`, "m").exec(statusText)?.[1] ?? "").trim().split(/\s+/).filter(Boolean).map(Number);
  return { uids: ids("Uid"), gids: ids("Gid"), groups: ids("Groups") };
}

/**
 * Switch the whole process to `runAs` for good: setgroups (the user's groups
 * from the group database, plus `extraGroup`, e.g. the Maildir owner's group),
 * setgid, setuid. Then check the kernel's view, and that setuid(0) fails.
 * Throws when anything is not as it must be: the caller stops start-up.
 */
export function dropPrivileges(runAs: RunAs, extraGroup?: number): void {
  if (runAs.uid === 0) throw new PrivilegeError("user: names root; name an unprivileged user");
  if (process.getuid!() === runAs.uid) return; // started as that user already (systemd User=)
  const extra = extraGroup !== undefined && extraGroup >= 0 ? extraGroup : runAs.gid;
  try {
    if (runAs.named) process.initgroups!(runAs.name, extra);
    else process.setgroups!([...new Set([runAs.gid, extra])]);
    process.setgid!(runAs.gid);
    process.setuid!(runAs.uid);
  } catch (err) {
    throw new PrivilegeError(`cannot switch to user ${runAs.name} (uid ${runAs.uid}, gid ${runAs.gid}): ${(err as Error).message}`);
  }

  const k = kernelIds();
  if (k.uids.length !== 4 || k.uids.some((u) => u !== runAs.uid) || k.gids.length !== 4 || k.gids.some((g) => g !== runAs.gid)) {
    throw new PrivilegeError(`after switching to ${runAs.name} the kernel reports Uid ${k.uids.join(" ")} and Gid ${k.gids.join(" ")}; refusing to run`);
  }
  if (k.groups.includes(0) && runAs.gid !== 0) throw new PrivilegeError(`after switching to ${runAs.name} the process is still in group 0 (root); refusing to run`);
  let regained = false;
  try {
    process.setuid!(0);
    regained = true;
  } catch {
    // EPERM: as it must be.
  }
  if (regained) throw new PrivilegeError(`after switching to ${runAs.name}, setuid(0) succeeded: root could be regained; refusing to run`);
}

/**
 * After any switch: can this process give delivered files to `delivery.owner`?
 * Only root may give a file to another user, and a group only to one of its own.
 */
export function checkOwnerReachable(config: Config, owner: MaildirOwner | undefined): void {
  if (owner === undefined || process.getuid!() === 0) return;
  const uid = process.getuid!();
  const groups = new Set([process.getgid!(), ...process.getgroups!()]);
  const issues: ConfigIssue[] = [];
  if (owner.uid !== -1 && owner.uid !== uid) {
    issues.push(configIssue(config, ["delivery", "owner", "user"], config.delivery.owner?.user,
      `expected the user Petrel runs as (uid ${uid}): only root can give files to another user — run Petrel as that user (user: …), or share a group instead (delivery.owner.group)`));
  }
  if (owner.gid !== -1 && !groups.has(owner.gid)) {
    issues.push(configIssue(config, ["delivery", "owner", "group"], config.delivery.owner?.group,
      `expected a group Petrel's user belongs to (gid ${owner.gid} is not among ${[...groups].join(", ")}): add the user to it (usermod -aG), or use systemd's SupplementaryGroups=`));
  }
  if (issues.length > 0) throw startupConfigError(config, issues);
}
