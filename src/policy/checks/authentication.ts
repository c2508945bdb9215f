import type { Logger } from "pino";
import type { Now } from "../../mail/clock.ts";
import type { Mailbox } from "../../mail/envelope.ts";
import { networkMatcher } from "../../mail/networks.ts";
import type { MailauthResolver } from "../../mailauth/dns-resolver.ts";
import { formatMailbox } from "../../smtp/address.ts";
import type { ClientFacts } from "../check.ts";
import type { RecipientDirectory } from "./relay.ts";

/**
 * What the message-authentication checks share (spf.ts, dkim.ts, arc.ts, dmarc.ts): their
 * settings (config `authentication`), whom they look at — clients of mx listeners that did not
 * log in and are not in `ignoreClients`; submission is signed, not verified (RFC 6409) — and
 * the few questions more than one of them asks.
 */

export type QuarantineAction = "folder" | "header";

export interface AuthenticationSettings {
  readonly ignoreClients: readonly string[];
  readonly exceptions: readonly string[];
  readonly spf: { readonly rejectFail: boolean };
  readonly dkim: { readonly maxSignatures: number };
  readonly dmarc: {
    readonly enforce: boolean;
    readonly quarantine: QuarantineAction;
    readonly junkFolder: string;
    readonly localDomains: "reject" | "policy";
  };
  readonly arc: { readonly trustedSealers: readonly string[]; readonly seal: boolean };
  /** Per local domain of the recipients. */
  readonly domains: Readonly<Record<string, { readonly dmarc: { readonly enforce?: boolean; readonly quarantine?: QuarantineAction } }>>;
}

export interface AuthenticationOptions {
  readonly settings: AuthenticationSettings;
  /** Petrel's resolver, as mailauth asks it (mailauth/dns-resolver.ts). */
  readonly resolver: MailauthResolver;
  /** Local domains and where their recipients go (forwards are sealed; a local From domain is protected). */
  readonly directory: RecipientDirectory;
  /** This server's name, in SPF's comments. */
  readonly hostname: string;
  readonly clock: Now;
  /** Largest header section looked at (limits.headerSize). */
  readonly headerSizeLimit: number;
  /** Longest SPF evaluation (RFC 7208 §4.6.4: at least 20 s when the stage allows it). */
  readonly spfTimeLimit: number;
  /** Whether mail forwarded by this local domain can be sealed (an RSA key in dkim.domains). */
  readonly canSeal: (domain: string) => boolean;
  readonly log: Logger;
}

/** The clients whose mail the checks look at: unauthenticated on mx listeners, not ignored. */
export function checkedClients(settings: AuthenticationSettings): (client: ClientFacts) => boolean {
  const ignored = networkMatcher(settings.ignoreClients);
  return (client) => client.role === "mx" && !ignored(client.address);
}

/** The clients whose failures are recorded but never enforced. */
export function exceptedClients(settings: AuthenticationSettings): (address: string) => boolean {
  return networkMatcher(settings.exceptions);
}

/**
 * The local domain whose alias forwards one of `recipients` outside, when its key can seal the
 * ARC set (the first such recipient's); undefined when nothing is forwarded. A lookup that
 * fails counts as no forward: the message goes on unsealed rather than not at all.
 */
export async function forwardingDomain(
  recipients: readonly { readonly mailbox: Mailbox }[], options: Pick<AuthenticationOptions, "directory" | "canSeal">,
): Promise<string | undefined> {
  for (const r of recipients) {
    const domain = r.mailbox.domain;
    if (!options.canSeal(domain)) continue;
    try {
      const resolved = await options.directory.resolveRecipient(formatMailbox(r.mailbox));
      if (resolved.kind === "local" && resolved.targets.some((t) => t.type === "forward")) return domain;
    } catch {
      continue;
    }
  }
  return undefined;
}

/**
 * Relaxed alignment (RFC 9989 §4.4) for a domain of this server, without a DMARC record to
 * find the organizational domain by: the identifier is the author domain, or one is a parent
 * of the other. Stricter than DMARC's (two sibling subdomains do not align), which only ever
 * refuses more of what claims to come from here.
 */
export function alignsWithLocal(identifier: string, author: string): boolean {
  const id = identifier.toLowerCase();
  return id === author || id.endsWith(`.${author}`) || author.endsWith(`.${id}`);
}

/** Whether `domain` is a local domain or below one. */
export async function isLocalOrBelow(domain: string, directory: RecipientDirectory): Promise<boolean> {
  const labels = domain.split(".");
  for (let i = 0; i < labels.length; i++) {
    if (await directory.isLocalDomain(labels.slice(i).join("."))) return true;
  }
  return false;
}
