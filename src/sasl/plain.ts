/**
 * SASL PLAIN (RFC 4616): message = [authzid] NUL authcid NUL passwd, UTF-8.
 * Proxy authorization is not supported: a non-empty authzid must name the same user.
 */
import type { SaslCredentials, SaslExchange, SaslStep } from "./exchange.ts";
import { FAIL_AUTHZID, FAIL_CREDENTIALS, FAIL_MALFORMED, decodeUtf8 } from "./exchange.ts";

/** RFC 4616 §2 allows up to 255 octets per field; we allow a little more for passwords. */
const MAX_ID_OCTETS = 255;
const MAX_PASSWORD_OCTETS = 1024;

export interface PlainMessage {
  authzid: string;
  authcid: string;
  password: string;
}

/** Parse a PLAIN message; null if malformed (wrong NUL count, empty authcid/passwd, bad UTF-8, too long). */
export function parsePlainMessage(msg: Buffer): PlainMessage | null {
  const first = msg.indexOf(0);
  if (first < 0) return null;
  const second = msg.indexOf(0, first + 1);
  if (second < 0 || msg.indexOf(0, second + 1) >= 0) return null;
  const zid = msg.subarray(0, first);
  const cid = msg.subarray(first + 1, second);
  const pwd = msg.subarray(second + 1);
  if (cid.length === 0 || pwd.length === 0) return null;
  if (zid.length > MAX_ID_OCTETS || cid.length > MAX_ID_OCTETS || pwd.length > MAX_PASSWORD_OCTETS) return null;
  const authzid = decodeUtf8(zid);
  const authcid = decodeUtf8(cid);
  const password = decodeUtf8(pwd);
  if (authzid === null || authcid === null || password === null) return null;
  return { authzid, authcid, password };
}

export class PlainExchange implements SaslExchange {
  #credentials: SaslCredentials;
  #state: "start" | "waiting" | "done" = "start";

  constructor(credentials: SaslCredentials) {
    this.#credentials = credentials;
  }

  async step(response: Buffer | null): Promise<SaslStep> {
    if (this.#state === "done") return FAIL_MALFORMED;
    if (response === null || (response.length === 0 && this.#state === "start")) {
      if (this.#state !== "start") {
        this.#state = "done";
        return FAIL_MALFORMED;
      }
      // No initial response (or an empty one, "AUTH PLAIN ="): ask for the message.
      this.#state = "waiting";
      return { kind: "challenge", data: Buffer.alloc(0) };
    }
    this.#state = "done";
    const msg = parsePlainMessage(response);
    if (!msg) return FAIL_MALFORMED;
    const user = await this.#credentials.verifyPlain(msg.authcid, msg.password);
    if (user === null) return FAIL_CREDENTIALS;
    if (msg.authzid !== "" && msg.authzid !== msg.authcid && msg.authzid !== user) return FAIL_AUTHZID;
    return { kind: "success", user };
  }
}
