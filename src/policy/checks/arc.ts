import { unmapIpv4 } from "../../mail/networks.ts";
import { verifyArc, type ArcOutcome } from "../../mailauth/arc.ts";
import type { Check, CheckResult } from "../check.ts";
import { checkedClients, type AuthenticationOptions } from "./authentication.ts";
import { dkimFindings } from "./dkim.ts";

/**
 * ARC (RFC 8617): the chain of custody the message arrived with, validated at the end of data
 * from what the DKIM pass collected (hence `after: ["dkim"]`) — `arc=pass|fail|none` for the
 * Authentication-Results field, and for DMARC (a trusted forwarder's chain, §7.2).
 *
 * And the seal, when the message will be forwarded (the DKIM check resolved the recipients at
 * DATA and found an alias to an outside address): this check asks for it (`arcSeal`), the
 * intake makes it when it stores the message, over the header section as stored and with the
 * Authentication-Results field the runner wrote, so the next hop sees the SPF, DKIM and DMARC
 * verdicts given here although forwarding broke SPF. Deciding it here, where the chain's
 * validation is known, and making it there, where the final header section and this server's
 * Authentication-Results are known, keeps a filter's header change (a tagged Subject) under
 * the seal. A chain that failed only because a key lookup failed is not sealed (cv=fail would
 * end it for good): the message is forwarded without a set of ours.
 */

export function arcCheck(options: AuthenticationOptions): Check {
  const checked = checkedClients(options.settings);
  return {
    name: "arc",
    after: ["dkim"],
    open(client) {
      if (!checked(client)) return {};
      const ip = unmapIpv4(client.address);
      return {
        message(session) {
          if (session.authUser !== null) return undefined;
          return {
            async endOfData(_header, earlier): Promise<CheckResult | undefined> {
              const dkim = dkimFindings(earlier.get("dkim"));
              if (dkim === undefined) return undefined;
              const outcome = await verifyArc(dkim.verification, { resolver: options.resolver, ip });
              const bodyHash = dkim.verification.bodyHash;
              const seal = dkim.forwarding !== undefined && outcome.temporary !== true && bodyHash !== "";
              return {
                authResults: [outcome.authResults],
                findings: outcome,
                ...(seal ? { arcSeal: { domain: dkim.forwarding!, chainValidation: outcome.result, bodyHash } } : {}),
              };
            },
          };
        },
      };
    },
  };
}

/** The ARC validation the check found (CheckResult.findings of "arc"). */
export function arcOutcome(result: CheckResult | undefined): ArcOutcome | undefined {
  return result?.findings as ArcOutcome | undefined;
}
