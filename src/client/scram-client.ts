/**
 * Client side of SASL SCRAM-SHA-256 (RFC 5802, RFC 7677), without channel binding: used by
 * Petrel's submission client and by tests.
 *
 *   const c = new ScramSha256Client("user", "pencil");
 *   send(c.clientFirst());                 // n,,n=user,r=<nonce>
 *   send(c.clientFinal(serverFirst));      // c=biws,r=...,p=...  (throws on a bad server-first)
 *   c.verifyServerFinal(serverFinal);      // true only for the right "v=" signature
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import { SCRAM_MAX_ITERATIONS, hmacSha256, scramSaltedPassword, sha256 } from "../sasl/scram.ts";
import { decodeBase64Strict } from "../sasl/base64.ts";
import { saslPrep } from "../sasl/saslprep.ts";

const GS2_HEADER = "n,,";

function escapeSaslName(name: string): string {
  return name.replace(/=/g, "=3D").replace(/,/g, "=2C");
}

export class ScramSha256Client {
  #user: string;
  #password: string;
  #nonce: string;
  #clientFirstBare: string | null = null;
  #expectedServerSignature: Buffer | null = null;

  /**
   * @param nonce client nonce (printable ASCII without ","); random when omitted. For tests.
   * Throws if user or password fail SASLprep.
   */
  constructor(user: string, password: string, nonce?: string) {
    this.#user = saslPrep(user);
    saslPrep(password); // fail early, before anything is sent
    this.#password = password;
    this.#nonce = nonce ?? randomBytes(18).toString("base64");
    if (!/^[\x21-\x2b\x2d-\x7e]+$/.test(this.#nonce)) throw new Error("SCRAM nonce must be printable ASCII without ','");
    if (this.#user === "") throw new Error("SCRAM user name is empty");
  }

  /** client-first-message: `n,,n=<user>,r=<nonce>`. */
  clientFirst(): Buffer {
    this.#clientFirstBare = `n=${escapeSaslName(this.#user)},r=${this.#nonce}`;
    return Buffer.from(GS2_HEADER + this.#clientFirstBare, "utf8");
  }

  /** client-final-message for the server-first message; throws if the server-first is malformed. */
  clientFinal(serverFirst: Buffer): Buffer {
    if (this.#clientFirstBare === null) throw new Error("SCRAM: clientFirst() must come first");
    const text = serverFirst.toString("utf8");
    const attrs = text.split(",");
    if (attrs.length < 3 || attrs[0].startsWith("m=")) throw new Error("SCRAM: malformed server-first message");
    if (!attrs[0].startsWith("r=") || !attrs[1].startsWith("s=") || !attrs[2].startsWith("i=")) {
      throw new Error("SCRAM: malformed server-first message");
    }
    const nonce = attrs[0].slice(2);
    if (!nonce.startsWith(this.#nonce) || nonce.length <= this.#nonce.length || !/^[\x21-\x2b\x2d-\x7e]+$/.test(nonce)) {
      throw new Error("SCRAM: server nonce does not extend the client nonce");
    }
    const salt = decodeBase64Strict(attrs[1].slice(2));
    if (!salt || salt.length === 0) throw new Error("SCRAM: malformed salt");
    const iText = attrs[2].slice(2);
    if (!/^[1-9][0-9]{0,7}$/.test(iText) || Number(iText) > SCRAM_MAX_ITERATIONS) throw new Error("SCRAM: bad iteration count");
    const iterations = Number(iText);

    const salted = scramSaltedPassword(this.#password, salt, iterations);
    const clientKey = hmacSha256(salted, "Client Key");
    const storedKey = sha256(clientKey);
    const withoutProof = `c=${Buffer.from(GS2_HEADER).toString("base64")},r=${nonce}`;
    const authMessage = `${this.#clientFirstBare},${text},${withoutProof}`;
    const clientSignature = hmacSha256(storedKey, authMessage);
    const proof = Buffer.alloc(clientKey.length);
    for (let i = 0; i < proof.length; i++) proof[i] = clientKey[i] ^ clientSignature[i];
    this.#expectedServerSignature = hmacSha256(hmacSha256(salted, "Server Key"), authMessage);
    return Buffer.from(`${withoutProof},p=${proof.toString("base64")}`, "utf8");
  }

  /** True only if the server-final message is `v=<the expected ServerSignature>` (an `e=` error is false). */
  verifyServerFinal(serverFinal: Buffer): boolean {
    const expected = this.#expectedServerSignature;
    if (!expected) return false;
    const text = serverFinal.toString("utf8");
    const m = /^v=([A-Za-z0-9+/=]+)(?:,.*)?$/.exec(text);
    if (!m) return false;
    const got = decodeBase64Strict(m[1]);
    return got !== null && got.length === expected.length && timingSafeEqual(got, expected);
  }
}
