import { DkimMessageVerifier, type DkimVerification } from "../../mailauth/dkim-verify.ts";
import type { Check, CheckResult } from "../check.ts";
import { checkedClients, forwardingDomain, type AuthenticationOptions } from "./authentication.ts";

/**
 * DKIM (RFC 6376 §6): every signature of the message (the first `dkim.maxSignatures`) verified
 * as the content streams to the spool — the verifier keeps hash state and the header section,
 * never the body, and stops reading the body once the header section shows nothing needs it
 * (an unsigned message costs its header section). One Authentication-Results resinfo per
 * signature, `dkim=none` for an unsigned message.
 *
 * The same pass collects what ARC and DMARC need (arc.ts, dmarc.ts: their `after`): the
 * author addresses, the ARC chain, and — only when a recipient is an alias forwarded outside,
 * which is known at DATA — the relaxed body hash the ARC seal signs.
 */

export interface DkimFindings {
  readonly verification: DkimVerification;
  /** The local domain that forwards the message (its key seals the ARC set); absent when nothing is forwarded. */
  readonly forwarding?: string;
}

export function dkimCheck(options: AuthenticationOptions): Check {
  const checked = checkedClients(options.settings);
  return {
    name: "dkim",
    open(client) {
      if (!checked(client)) return {};
      return {
        async message(session, tx) {
          if (session.authUser !== null) return undefined;
          const forwarding = options.settings.arc.seal ? await forwardingDomain(tx.recipients, options) : undefined;
          const verifier = new DkimMessageVerifier({
            resolver: options.resolver,
            maxSignatures: options.settings.dkim.maxSignatures,
            maxHeaderBytes: options.headerSizeLimit,
            now: () => options.clock.now(),
            sealBodyHash: forwarding !== undefined,
          });
          return {
            body: (chunk) => verifier.write(chunk),
            async endOfData(): Promise<CheckResult> {
              const verification = await verifier.end();
              const findings: DkimFindings = { verification, ...(forwarding !== undefined ? { forwarding } : {}) };
              return { authResults: verification.authResults, findings };
            },
            abort: () => verifier.abort(),
          };
        },
      };
    },
  };
}

/** What the DKIM check found (CheckResult.findings of "dkim"). */
export function dkimFindings(result: CheckResult | undefined): DkimFindings | undefined {
  return result?.findings as DkimFindings | undefined;
}
