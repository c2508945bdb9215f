/**
 * The accounts file `<dataDir>/accounts.json`: its format, reading it with a signature that tells
 * whether it changed, and replacing it atomically. No locking here (see lock-file.ts) and no
 * account rules (see file-account-store.ts).
 *
 * Format (version 1), mode 0600 since it holds password hashes:
 *   { "version": 1, "domains": ["example.org"],
 *     "users": [{ "address", "password": "$scrypt$…", "scram": "SCRAM-SHA-256$…", "quota"?, "createdAt", "admin"? }],
 *     "aliases": [{ "source": "a@example.org" | "@example.org", "targets": ["…"] }] }
 */
import { closeSync, fstatSync, openSync, readdirSync, readFileSync, unlinkSync } from "node:fs";
import type { BigIntStats } from "node:fs";
import { open, rename, unlink } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { basename, dirname, join } from "node:path";
import * as z from "zod";
import { AccountError } from "./account-store.ts";

const accountsFileSchema = z.object({
  version: z.literal(1),
  domains: z.array(z.string()),
  users: z.array(
    z.object({
      address: z.string(),
      password: z.string(),
      scram: z.string().optional(),
      quota: z.number().int().nonnegative().optional(),
      createdAt: z.number(),
      /** May log in to the admin API. */
      admin: z.boolean().optional(),
    }),
  ),
  aliases: z.array(z.object({ source: z.string(), targets: z.array(z.string()) })),
});

export type AccountsFile = z.infer<typeof accountsFileSchema>;
export type StoredUser = AccountsFile["users"][number];

export function emptyAccountsFile(): AccountsFile {
  return { version: 1, domains: [], users: [], aliases: [] };
}

/** Identity of one version of the file: a rename-replaced file gets a new inode/ctime. "missing" when absent. */
function signatureOf(st: BigIntStats): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
}

/** The signature of the file now, without reading it. */
export function accountsFileSignature(path: string): string {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return "missing";
    throw err;
  }
  try {
    return signatureOf(fstatSync(fd, { bigint: true }));
  } finally {
    closeSync(fd);
  }
}

/**
 * Read and validate the file (empty when missing), with the signature of the very version read.
 * Synchronous on purpose: the file is small and the sender check (`mayUseSender`) is synchronous.
 * Throws AccountError "corrupt" when it is not a valid accounts file.
 */
export function readAccountsFile(path: string): { data: AccountsFile; signature: string } {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { data: emptyAccountsFile(), signature: "missing" };
    throw err;
  }
  try {
    const signature = signatureOf(fstatSync(fd, { bigint: true }));
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(fd, "utf8"));
    } catch (err) {
      throw new AccountError("corrupt", `${path} is not valid JSON (${(err as Error).message}); fix or restore it`);
    }
    const parsed = accountsFileSchema.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new AccountError("corrupt", `${path} is not a Petrel accounts file: ${issue.path.join(".") || "(top)"}: ${issue.message}`);
    }
    return { data: parsed.data, signature };
  } finally {
    closeSync(fd);
  }
}

/**
 * Replace the file atomically: write a temporary file in the same directory, fsync it, rename it
 * over the file, fsync the directory. Call with the lock held.
 */
export async function writeAccountsFile(path: string, data: AccountsFile): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
  const fh = await open(tmp, "wx", 0o600);
  try {
    try {
      await fh.writeFile(JSON.stringify(data, null, 2) + "\n");
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  const dh = await open(dir, "r");
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}

/** Remove temporary files left by a writer that crashed. Call with the lock held (only lock holders make them). */
export function removeLeftoverTemps(path: string): void {
  const dir = dirname(path);
  const prefix = `.${basename(path)}.`;
  for (const name of readdirSync(dir)) {
    if (!name.startsWith(prefix) || !name.endsWith(".tmp")) continue;
    try {
      unlinkSync(join(dir, name));
    } catch {
      // gone already
    }
  }
}
