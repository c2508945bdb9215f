/**
 * The MTA-STS policies Petrel has fetched, kept until their max_age runs out (RFC 8461 §5.1)
 * and across restarts: one small JSON file per domain in <dataDir>/mta-sts/, replaced
 * atomically, so a crash leaves the old policy or the new one, never half of either. An attacker who blocks the policy host after a restart still meets the
 * policy (RFC 8461 §10.2); a file that cannot be read is treated as no policy and logged.
 *
 * At most `maxEntries` domains are kept; when full, the policy closest to expiry goes.
 */
import { mkdir, readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { writeAtomically } from "../disk/atomic-file.ts";
import type { FetchedPolicy } from "./sts-fetch.ts";

export interface CachedPolicy extends FetchedPolicy {
  readonly domain: string;
  /** The id of the `_mta-sts` TXT record when the policy was fetched (RFC 8461 §3.1). */
  readonly id: string;
  /** ms since the epoch. */
  readonly fetchedAt: number;
  readonly expiresAt: number;
}

export interface PolicyCacheOptions {
  readonly dir: string;
  readonly maxEntries?: number;
  readonly onError?: (message: string) => void;
}

/** Domain names are lower-case A-labels: letters, digits, "-" and "." — safe as file names. */
const FILE_NAME = /^[a-z0-9.-]+$/;

export class PolicyCache {
  readonly #dir: string;
  readonly #max: number;
  readonly #onError: (message: string) => void;
  #entries: Map<string, CachedPolicy> | undefined;
  #loading: Promise<Map<string, CachedPolicy>> | undefined;

  constructor(options: PolicyCacheOptions) {
    this.#dir = options.dir;
    this.#max = options.maxEntries ?? 10_000;
    this.#onError = options.onError ?? (() => {});
  }

  /** The cached policy of `domain`, expired or not (the caller decides what expiry means). */
  async get(domain: string): Promise<CachedPolicy | undefined> {
    return (await this.#load()).get(domain);
  }

  async all(): Promise<CachedPolicy[]> {
    return [...(await this.#load()).values()];
  }

  async put(policy: CachedPolicy): Promise<void> {
    if (!FILE_NAME.test(policy.domain)) return;
    const entries = await this.#load();
    entries.set(policy.domain, policy);
    await this.#write(policy);
    while (entries.size > this.#max) {
      const soonest = [...entries.values()].reduce((a, b) => (b.expiresAt < a.expiresAt ? b : a));
      await this.delete(soonest.domain);
    }
  }

  async delete(domain: string): Promise<void> {
    (await this.#load()).delete(domain);
    if (FILE_NAME.test(domain)) await rm(join(this.#dir, `${domain}.json`), { force: true });
  }

  #load(): Promise<Map<string, CachedPolicy>> {
    if (this.#entries) return Promise.resolve(this.#entries);
    this.#loading ??= this.#read().then((m) => (this.#entries = m));
    return this.#loading;
  }

  async #read(): Promise<Map<string, CachedPolicy>> {
    const entries = new Map<string, CachedPolicy>();
    let names: string[];
    try {
      names = await readdir(this.#dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") this.#onError(`MTA-STS policy cache ${this.#dir} unreadable: ${(err as Error).message}`);
      return entries;
    }
    for (const name of names) {
      if (!name.endsWith(".json")) continue;
      try {
        const p = checked(JSON.parse(await readFile(join(this.#dir, name), "utf8")));
        if (p && `${p.domain}.json` === name) entries.set(p.domain, p);
        else this.#onError(`MTA-STS policy cache: ${name} is not a cached policy; ignored`);
      } catch (err) {
        this.#onError(`MTA-STS policy cache: ${name} unreadable (${(err as Error).message}); ignored`);
      }
    }
    return entries;
  }

  async #write(p: CachedPolicy): Promise<void> {
    await mkdir(this.#dir, { recursive: true, mode: 0o700 });
    await writeAtomically(join(this.#dir, `${p.domain}.json`), JSON.stringify(p));
  }
}

/** A parsed file's content when it has the shape of a cached policy. */
function checked(v: unknown): CachedPolicy | undefined {
  const p = v as Partial<CachedPolicy> | null;
  if (!p || typeof p !== "object") return undefined;
  const ok = typeof p.domain === "string" && typeof p.id === "string" && (p.mode === "enforce" || p.mode === "testing" || p.mode === "none") &&
    Array.isArray(p.mx) && p.mx.every((m) => typeof m === "string") && typeof p.maxAgeSeconds === "number" &&
    Array.isArray(p.lines) && typeof p.fetchedAt === "number" && typeof p.expiresAt === "number";
  return ok ? (p as CachedPolicy) : undefined;
}
