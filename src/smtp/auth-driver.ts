import type { Reply } from "./reply.ts";
import * as R from "./replies.ts";
import { lineEndProblem } from "./command-line.ts";
import type { SaslExchange } from "../sasl/exchange.ts";
import { decodeBase64Strict } from "../sasl/base64.ts";

/**
 * The AUTH continuation loop (RFC 4954 §4): base64 in and out of one SASL
 * exchange, the "*" that cancels it, and the extra 334 that carries SASL
 * "additional data with success" (SMTP's 235 has no field for it, RFC 4422
 * §4 item 3c). It says what happened; the session turns that into replies.
 */

export type AuthOutcome =
  /** Send "334 base64(data)" and wait for the next response line. */
  | { readonly kind: "challenge"; readonly data: Buffer }
  | { readonly kind: "success"; readonly user: string }
  | { readonly kind: "failure"; readonly reason: "credentials" | "malformed" | "authzid" }
  /** The exchange is over without a verdict (cancelled, undecodable); answer with this reply. */
  | { readonly kind: "refused"; readonly reply: Reply };

export class AuthDriver {
  private exchange: SaslExchange | null = null;
  /** The user of a success whose additional data went out as a 334; the client must answer it empty. */
  private pendingSuccess: string | null = null;

  /** AUTH <mechanism> [initial-response]: the exchange starts with the decoded initial response, if any. */
  begin(exchange: SaslExchange, initial: Buffer | null): Promise<AuthOutcome> {
    this.exchange = exchange;
    return this.step(initial);
  }

  /**
   * A response line (with its CRLF) to the last 334. Decided at once when the
   * line itself ends the exchange or answers the success data; a promise when
   * the mechanism has to look at it.
   */
  respond(raw: Buffer): AuthOutcome | Promise<AuthOutcome> {
    if (lineEndProblem(raw)) return { kind: "refused", reply: R.bareLf };
    const text = raw.subarray(0, raw.length - 2).toString("latin1").trim();
    if (text === "*") return { kind: "refused", reply: R.authCancelled };
    const decoded = decodeBase64Strict(text);
    if (decoded === null) return { kind: "refused", reply: R.cannotDecode };
    if (this.pendingSuccess !== null) {
      // RFC 4422 §4 item 3c: the additional data went out as a challenge; only an empty response completes the success.
      const user = this.pendingSuccess;
      this.pendingSuccess = null;
      return decoded.length > 0 ? { kind: "failure", reason: "malformed" } : { kind: "success", user };
    }
    return this.step(decoded);
  }

  /** The exchange is over (any verdict): forget it. */
  end(): void {
    this.exchange = null;
    this.pendingSuccess = null;
  }

  private async step(response: Buffer | null): Promise<AuthOutcome> {
    const result = await this.exchange!.step(response);
    if (result.kind === "success" && result.data && result.data.length > 0) {
      this.pendingSuccess = result.user;
      return { kind: "challenge", data: result.data };
    }
    if (result.kind === "success") return { kind: "success", user: result.user };
    return result;
  }
}

/** The initial response of AUTH (RFC 4954 §4: "=" is an empty one); null if it is not base64. */
export function decodeInitialResponse(s: string): Buffer | null {
  return s === "=" ? Buffer.alloc(0) : decodeBase64Strict(s);
}
