import { unmapIpv4 } from "../../mail/networks.ts";
import { checkSpfMailFrom, type SpfOutcome } from "../../mailauth/spf.ts";
import { formatMailbox } from "../../smtp/address.ts";
import type { Check, CheckResult, HeaderField } from "../check.ts";
import { reject } from "../replies.ts";
import { checkedClients, exceptedClients, type AuthenticationOptions } from "./authentication.ts";

/**
 * SPF (RFC 7208) at MAIL FROM: may the client's address send for the domain of the
 * reverse-path — or, for the null reverse-path of a bounce, of HELO (§2.4)? The evaluation
 * starts at MAIL and runs while the client sends its recipients and the message; its result is
 * written at the end of data (Authentication-Results, a Received-SPF: field, §9.1) and read by
 * DMARC there.
 *
 * An SPF failure is refused at MAIL (`550 5.7.23`, RFC 7372) only with `spf.rejectFail`, as
 * Postfix's policyd-spf can: off by default, as in most MTAs, because forwarded mail fails SPF
 * through no fault of its sender, and DMARC, which sees DKIM too, decides better. temperror
 * and permerror are never refused here (the domain's DNS is down or its record broken — DMARC
 * still applies), nor are clients in `exceptions`.
 */

export function spfCheck(options: AuthenticationOptions): Check {
  const checked = checkedClients(options.settings);
  const excepted = exceptedClients(options.settings);
  const { resolver, hostname, spfTimeLimit } = options;
  return {
    name: "spf",
    open(client) {
      if (!checked(client)) return {};
      const ip = unmapIpv4(client.address);
      let pending: Promise<SpfOutcome> | undefined;
      return {
        async mail(session, from) {
          pending = undefined;
          if (session.authUser !== null) return undefined;
          const evaluation = checkSpfMailFrom({ ip, helo: session.helo ?? "" }, from ? formatMailbox(from) : null, { resolver, hostname, timeLimit: spfTimeLimit });
          pending = evaluation;
          if (!options.settings.spf.rejectFail || excepted(ip)) {
            // Awaited at the end of data; a failure then is that stage's.
            evaluation.catch(() => {});
            return undefined;
          }
          const outcome = await evaluation;
          if (outcome.result !== "fail") return undefined;
          return reject(550, "5.7.23", `<${from ? formatMailbox(from) : `postmaster@${session.helo ?? ""}`}>: SPF check failed: ${ip} may not send mail for ${outcome.domain}`, outcome.comment);
        },
        message() {
          const evaluation = pending;
          if (evaluation === undefined) return undefined;
          return {
            async endOfData(): Promise<CheckResult> {
              const outcome = await evaluation;
              return { authResults: [outcome.authResults], headers: [receivedSpfField(outcome)], findings: outcome };
            },
          };
        },
        reset() {
          pending = undefined;
        },
      };
    },
  };
}

/** The SPF outcome the check found (CheckResult.findings of "spf"). */
export function spfOutcome(result: CheckResult | undefined): SpfOutcome | undefined {
  return result?.findings as SpfOutcome | undefined;
}

function receivedSpfField(outcome: SpfOutcome): HeaderField {
  const colon = outcome.receivedSpf.indexOf(":");
  return { name: "Received-SPF", value: outcome.receivedSpf.slice(colon + 1).trimStart() };
}
