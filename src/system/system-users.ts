/**
 * Users and groups of the system, by name or id, as the C library sees them
 * (NSS: /etc/passwd and /etc/group, but also LDAP or systemd's dynamic users).
 * Node.js has no getpwnam(3), so `getent(1)` — part of the C library's
 * package on every Linux system — asks for us; it runs once per name at
 * start-up, never on the mail path.
 */
import { execFile } from "node:child_process";

export interface SystemUser {
  readonly name: string;
  readonly uid: number;
  /** The primary group. */
  readonly gid: number;
}

export interface SystemGroup {
  readonly name: string;
  readonly gid: number;
}

/** The passwd entry of a name or uid; undefined when there is none. */
export async function lookupUser(nameOrId: string | number): Promise<SystemUser | undefined> {
  const fields = await getent("passwd", String(nameOrId));
  if (fields === undefined) return undefined;
  return { name: fields[0], uid: Number(fields[2]), gid: Number(fields[3]) };
}

/** The group entry of a name or gid; undefined when there is none. */
export async function lookupGroup(nameOrId: string | number): Promise<SystemGroup | undefined> {
  const fields = await getent("group", String(nameOrId));
  if (fields === undefined) return undefined;
  return { name: fields[0], gid: Number(fields[2]) };
}

/** The ':'-separated fields of the one entry `getent DATABASE KEY` prints; undefined when not found (exit 2). */
function getent(database: "passwd" | "group", key: string): Promise<string[] | undefined> {
  return new Promise((resolve, reject) => {
    execFile("getent", [database, key], { timeout: 10_000, encoding: "utf8" }, (err, stdout) => {
      if (err) {
        // execFile's error carries the exit status as a number, or the spawn error's name.
        const code: unknown = (err as { code?: unknown }).code;
        if (code === 2) return resolve(undefined);
        if (code === "ENOENT") return reject(new Error("getent(1) is missing: it comes with the C library (Debian: libc-bin)"));
        return reject(new Error(`getent ${database} ${key} failed: ${err.message}`));
      }
      const line = stdout.split("\n")[0];
      const fields = line.split(":");
      if (fields.length < 3 || !/^\d+$/.test(fields[2])) return reject(new Error(`getent ${database} ${key}: unexpected answer ${JSON.stringify(line)}`));
      resolve(fields);
    });
  });
}
