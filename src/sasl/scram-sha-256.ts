/**
 * SASL SCRAM-SHA-256 server (RFC 5802, RFC 7677), without channel binding (no -PLUS).
 *
 *   C: n,,n=user,r=<cnonce>                             client-first
 *   S: r=<cnonce><snonce>,s=<salt>,i=<iterations>       server-first (challenge)
 *   C: c=biws,r=<cnonce><snonce>,p=<ClientProof>        client-final
 *   S: v=<ServerSignature>                              server-final (success data)
 *
 * Unknown users are not distinguishable from known ones by the server-first message: they get a
 * salt derived from a per-process secret and their name (stable within the process), the default
 * iteration count, and fail only at the end, with the same "credentials" failure as a bad proof.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { SaslCredentials, SaslExchange, SaslStep } from "./exchange.ts";
import { FAIL_AUTHZID, FAIL_CREDENTIALS, FAIL_MALFORMED, decodeUtf8 } from "./exchange.ts";
import { hmacSha256, sha256, unescapeSaslName } from "./scram.ts";
import { decodeBase64Strict } from "./base64.ts";
import { saslPrep } from "./saslprep.ts";

/** Iteration count announced for unknown users; the same as `scramVerifier`'s default. */
export const UNKNOWN_USER_ITERATIONS = 10000;
const FAKE_SALT_SECRET = randomBytes(32);
const MAX_MESSAGE_OCTETS = 4096;
const MAX_NAME_OCTETS = 255;

/** printable = %x21-2B / %x2D-7E (no ","). */
const NONCE = /^[\x21-\x2b\x2d-\x7e]+$/;
/** saslname characters before unescaping: anything but NUL and ",". */
const SASLNAME = /^[^\0,]+$/;

interface ClientFirst {
  gs2Header: string;
  bare: string;
  authzid: string | null;
  username: string;
  nonce: string;
}

type ParseResult<T> = T | "malformed" | "channel-binding";

function parseClientFirst(text: string): ParseResult<ClientFirst> {
  // gs2-header = gs2-cbind-flag "," [ authzid ] ","
  const c1 = text.indexOf(",");
  if (c1 < 0) return "malformed";
  const flag = text.slice(0, c1);
  if (flag.startsWith("p=")) return "channel-binding";
  if (flag !== "n" && flag !== "y") return "malformed";
  const c2 = text.indexOf(",", c1 + 1);
  if (c2 < 0) return "malformed";
  const zidField = text.slice(c1 + 1, c2);
  let authzid: string | null = null;
  if (zidField !== "") {
    if (!zidField.startsWith("a=") || !SASLNAME.test(zidField.slice(2))) return "malformed";
    authzid = unescapeSaslName(zidField.slice(2));
    if (authzid === null) return "malformed";
  }
  const gs2Header = text.slice(0, c2 + 1);
  const bare = text.slice(c2 + 1);
  const attrs = bare.split(",");
  // [reserved-mext ","] username "," nonce ["," extensions]; "m=" MUST cause failure (§5.1).
  if (attrs.length < 2 || attrs[0].startsWith("m=")) return "malformed";
  if (!attrs[0].startsWith("n=") || !attrs[1].startsWith("r=")) return "malformed";
  const rawName = attrs[0].slice(2);
  if (!SASLNAME.test(rawName)) return "malformed";
  const username = unescapeSaslName(rawName);
  const nonce = attrs[1].slice(2);
  if (username === null || username === "" || !NONCE.test(nonce)) return "malformed";
  for (const ext of attrs.slice(2)) if (!/^[A-Za-z]=/.test(ext)) return "malformed";
  return { gs2Header, bare, authzid, username, nonce };
}

interface ClientFinal {
  withoutProof: string;
  channelBinding: string;
  nonce: string;
  proof: Buffer;
}

function parseClientFinal(text: string): ClientFinal | null {
  const at = text.lastIndexOf(",p=");
  if (at < 0) return null;
  const withoutProof = text.slice(0, at);
  const proof = decodeBase64Strict(text.slice(at + 3));
  if (!proof || proof.length !== 32) return null;
  const attrs = withoutProof.split(",");
  if (attrs.length < 2 || !attrs[0].startsWith("c=") || !attrs[1].startsWith("r=")) return null;
  for (const ext of attrs.slice(2)) if (!/^[A-Za-z]=/.test(ext) || ext.startsWith("m=")) return null;
  return { withoutProof, channelBinding: attrs[0].slice(2), nonce: attrs[1].slice(2), proof };
}

function randomNonce(): string {
  return randomBytes(18).toString("base64"); // base64 has no ","
}

interface Pending {
  user: string | null; // null = unknown user, will fail at the end
  iterations: number;
  salt: Buffer;
  storedKey: Buffer;
  serverKey: Buffer;
  gs2Header: string;
  clientFirstBare: string;
  serverFirst: string;
  nonce: string;
}

export class ScramSha256Exchange implements SaslExchange {
  #credentials: SaslCredentials;
  #nonce: () => string;
  #state: "start" | "client-first" | "client-final" | "done" = "start";
  #pending: Pending | null = null;

  constructor(credentials: SaslCredentials, options?: { nonce?: () => string }) {
    this.#credentials = credentials;
    this.#nonce = options?.nonce ?? randomNonce;
  }

  async step(response: Buffer | null): Promise<SaslStep> {
    switch (this.#state) {
      case "start":
        if (response === null || response.length === 0) {
          // SCRAM is client-first: send an empty challenge and wait for client-first.
          this.#state = "client-first";
          return { kind: "challenge", data: Buffer.alloc(0) };
        }
        return this.#clientFirst(response);
      case "client-first":
        return this.#clientFirst(response);
      case "client-final":
        return this.#clientFinal(response);
      default:
        return FAIL_MALFORMED;
    }
  }

  #fail(step: SaslStep): SaslStep {
    this.#state = "done";
    this.#pending = null;
    return step;
  }

  async #clientFirst(response: Buffer | null): Promise<SaslStep> {
    if (response === null || response.length === 0 || response.length > MAX_MESSAGE_OCTETS) return this.#fail(FAIL_MALFORMED);
    const text = decodeUtf8(response);
    if (text === null) return this.#fail(FAIL_MALFORMED);
    const parsed = parseClientFirst(text);
    if (parsed === "malformed" || parsed === "channel-binding") return this.#fail(FAIL_MALFORMED);
    if (Buffer.byteLength(parsed.username) > MAX_NAME_OCTETS) return this.#fail(FAIL_MALFORMED);
    let authcid: string;
    try {
      authcid = saslPrep(parsed.username);
    } catch {
      return this.#fail(FAIL_MALFORMED);
    }
    if (authcid === "") return this.#fail(FAIL_MALFORMED);
    const record = await this.#credentials.scramVerifier(authcid);
    if (parsed.authzid !== null && parsed.authzid !== parsed.username && parsed.authzid !== authcid && parsed.authzid !== record?.user) {
      return this.#fail(FAIL_AUTHZID);
    }
    const serverNonce = this.#nonce();
    if (!NONCE.test(serverNonce)) throw new Error("SCRAM server nonce must be printable ASCII without ','");
    const nonce = parsed.nonce + serverNonce;
    let pending: Pending;
    if (record) {
      pending = { ...pick(record), user: record.user, gs2Header: parsed.gs2Header, clientFirstBare: parsed.bare, serverFirst: "", nonce };
    } else {
      // Unknown user: a deterministic fake salt, so repeated probes see a stable answer.
      const salt = createHmac("sha256", FAKE_SALT_SECRET).update(authcid).digest().subarray(0, 16);
      pending = {
        user: null,
        iterations: UNKNOWN_USER_ITERATIONS,
        salt,
        storedKey: randomBytes(32),
        serverKey: randomBytes(32),
        gs2Header: parsed.gs2Header,
        clientFirstBare: parsed.bare,
        serverFirst: "",
        nonce,
      };
    }
    pending.serverFirst = `r=${nonce},s=${pending.salt.toString("base64")},i=${pending.iterations}`;
    this.#pending = pending;
    this.#state = "client-final";
    return { kind: "challenge", data: Buffer.from(pending.serverFirst, "utf8") };
  }

  async #clientFinal(response: Buffer | null): Promise<SaslStep> {
    const p = this.#pending;
    if (!p || response === null || response.length === 0 || response.length > MAX_MESSAGE_OCTETS) return this.#fail(FAIL_MALFORMED);
    const text = decodeUtf8(response);
    if (text === null) return this.#fail(FAIL_MALFORMED);
    const final = parseClientFinal(text);
    if (!final) return this.#fail(FAIL_MALFORMED);
    // c= must be base64 of the gs2 header we received ("biws" for "n,,").
    const cb = decodeBase64Strict(final.channelBinding);
    if (!cb || !cb.equals(Buffer.from(p.gs2Header, "utf8"))) return this.#fail(FAIL_MALFORMED);
    if (final.nonce !== p.nonce) return this.#fail(FAIL_MALFORMED);
    const authMessage = `${p.clientFirstBare},${p.serverFirst},${final.withoutProof}`;
    const clientSignature = hmacSha256(p.storedKey, authMessage);
    const clientKey = Buffer.alloc(32);
    for (let i = 0; i < 32; i++) clientKey[i] = final.proof[i] ^ clientSignature[i];
    const ok = timingSafeEqual(sha256(clientKey), p.storedKey);
    const user = p.user;
    if (!ok || user === null) return this.#fail(FAIL_CREDENTIALS);
    const serverSignature = hmacSha256(p.serverKey, authMessage);
    this.#state = "done";
    this.#pending = null;
    return { kind: "success", user, data: Buffer.from(`v=${serverSignature.toString("base64")}`, "utf8") };
  }
}

function pick(r: { iterations: number; salt: Buffer; storedKey: Buffer; serverKey: Buffer }) {
  return { iterations: r.iterations, salt: r.salt, storedKey: r.storedKey, serverKey: r.serverKey };
}
