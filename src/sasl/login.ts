/**
 * SASL LOGIN (draft-murchison-sasl-login): the server asks "Username:" then "Password:"; the
 * client answers each with the bare value. An initial response, if given, is the user name.
 */
import type { SaslCredentials, SaslExchange, SaslStep } from "./exchange.ts";
import { FAIL_CREDENTIALS, FAIL_MALFORMED, decodeUtf8 } from "./exchange.ts";

const MAX_USER_OCTETS = 255;
const MAX_PASSWORD_OCTETS = 1024;

const USERNAME_PROMPT = Buffer.from("Username:", "ascii");
const PASSWORD_PROMPT = Buffer.from("Password:", "ascii");

export class LoginExchange implements SaslExchange {
  #credentials: SaslCredentials;
  #state: "start" | "username" | "password" | "done" = "start";
  #username = "";

  constructor(credentials: SaslCredentials) {
    this.#credentials = credentials;
  }

  async step(response: Buffer | null): Promise<SaslStep> {
    switch (this.#state) {
      case "start":
        if (response === null || response.length === 0) {
          this.#state = "username";
          return { kind: "challenge", data: USERNAME_PROMPT };
        }
        return this.#takeUsername(response);
      case "username":
        return this.#takeUsername(response);
      case "password": {
        this.#state = "done";
        if (response === null || response.length === 0 || response.length > MAX_PASSWORD_OCTETS) return FAIL_MALFORMED;
        const password = decodeUtf8(response);
        if (password === null) return FAIL_MALFORMED;
        const user = await this.#credentials.verifyPlain(this.#username, password);
        return user === null ? FAIL_CREDENTIALS : { kind: "success", user };
      }
      default:
        return FAIL_MALFORMED;
    }
  }

  #takeUsername(response: Buffer | null): SaslStep {
    if (response === null || response.length === 0 || response.length > MAX_USER_OCTETS) {
      this.#state = "done";
      return FAIL_MALFORMED;
    }
    const name = decodeUtf8(response);
    if (name === null || name.includes("\0")) {
      this.#state = "done";
      return FAIL_MALFORMED;
    }
    this.#username = name;
    this.#state = "password";
    return { kind: "challenge", data: PASSWORD_PROMPT };
  }
}
