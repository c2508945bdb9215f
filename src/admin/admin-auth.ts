/**
 * Who may use the admin API: a client that sends `Authorization: Bearer
 * <token>` with the API token (a file in the data directory, made on first
 * start, 0600 — whoever can read it already has the server's data), or with
 * a session token an administrator account got from POST /api/login.
 *
 * Why a header and no cookie: a browser attaches cookies to any request a
 * hostile page makes to the API (cross-site request forgery), but never an
 * Authorization header — only script of the dashboard's own origin can set
 * it, and a cross-origin script is stopped by the CORS preflight, which the
 * API never approves. So no request a browser makes on its own is ever
 * authenticated, and no CSRF token is needed.
 */
import { randomBytes, timingSafeEqual, createHash } from "node:crypto";
import { ExpiringTokens } from "./expiring-tokens.ts";
import { chmod, mkdir, open, readFile, stat } from "node:fs/promises";
import { dirname } from "node:path";
import type { Now } from "../mail/clock.ts";

/** Shortest API token accepted from a file someone wrote by hand (bytes of text). */
const MIN_TOKEN = 32;

export class TokenFileError extends Error {}

/**
 * The API token from `path`, made (32 random bytes, base64url, mode 0600)
 * when the file does not exist. A file others may read, or one too short to
 * be a secret, is refused.
 */
export async function loadOrCreateToken(path: string): Promise<string> {
  try {
    const st = await stat(path);
    if ((st.mode & 0o077) !== 0) throw new TokenFileError(`${path} is readable by others (mode ${(st.mode & 0o777).toString(8)}): chmod 600 ${path}`);
    const token = (await readFile(path, "utf8")).trim();
    if (token.length < MIN_TOKEN) throw new TokenFileError(`${path} holds a token shorter than ${MIN_TOKEN} characters: delete it and a new one is made at start`);
    return token;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const token = randomBytes(32).toString("base64url");
  const fh = await open(path, "wx", 0o600);
  try {
    await fh.writeFile(token + "\n");
    await fh.datasync();
  } finally {
    await fh.close();
  }
  await chmod(path, 0o600);
  return token;
}

/** The token of an `Authorization: Bearer …` header, or null. */
export function bearerToken(header: string | undefined | null): string | null {
  const m = /^Bearer +([\x21-\x7e]+) *$/i.exec(header ?? "");
  return m ? m[1] : null;
}

/** Comparing hashes makes the comparison constant-time whatever the lengths. */
function sameSecret(a: string, b: string): boolean {
  const h = (s: string) => createHash("sha256").update(s).digest();
  return timingSafeEqual(h(a), h(b));
}

/** The header carries the API token itself (the metrics listener's check). */
export function carriesToken(header: string | undefined | null, apiToken: string): boolean {
  const token = bearerToken(header);
  return token !== null && sameSecret(token, apiToken);
}

/** Who a request is: "token" (the API token) or an administrator's address. */
export type AdminIdentity = { readonly kind: "token" } | { readonly kind: "user"; readonly address: string };

export function identityName(who: AdminIdentity): string {
  return who.kind === "token" ? "api-token" : who.address;
}

/** Logins of administrator accounts: random session tokens, in memory (a restart logs everyone out), bounded in number. */
export class AdminSessions {
  private readonly tokens: ExpiringTokens<string>;

  constructor(options: { lifetime: number; clock: Now; max?: number }) {
    this.tokens = new ExpiringTokens({ lifetime: options.lifetime, clock: options.clock, max: options.max ?? 1000 });
  }

  create(address: string): { token: string; expiresAt: number } {
    return this.tokens.issue(address);
  }

  /** The administrator a session token belongs to, while it is valid. */
  find(token: string): string | null {
    return this.tokens.find(token);
  }

  revoke(token: string): void {
    this.tokens.revoke(token);
  }

  /** Every session of `address` ends (the account lost its admin flag, or was removed). */
  revokeUser(address: string): void {
    this.tokens.revokeWhere((a) => a === address);
  }
}

export interface Authenticator {
  /** Who sends this Authorization header, or null. `stillAdmin` is asked for a login's account. */
  identify(header: string | undefined | null): Promise<AdminIdentity | null>;
}

export function authenticator(apiToken: string, sessions: AdminSessions, stillAdmin: (address: string) => Promise<boolean>): Authenticator {
  return {
    async identify(header) {
      const token = bearerToken(header);
      if (token === null) return null;
      if (sameSecret(token, apiToken)) return { kind: "token" };
      const address = sessions.find(token);
      if (address === null) return null;
      if (!(await stillAdmin(address))) {
        sessions.revokeUser(address);
        return null;
      }
      return { kind: "user", address };
    },
  };
}
