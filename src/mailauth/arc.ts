/**
 * ARC (RFC 8617): validating the chain of custody a message arrives with, and adding Petrel's own
 * set when it forwards a message (an alias to an outside address), so the next hop can see that
 * SPF, DKIM and DMARC passed here although forwarding broke SPF (and a list footer DKIM).
 *
 * Validation reuses the DKIM verifier's pass over the message (dkim-verify.ts: the chain parsed
 * from the header section, the newest ARC-Message-Signature checked against the body); this
 * checks the ARC-Seals. Sealing needs no second pass either: the header section the forwarded
 * message carries, the relaxed body hash computed while it streamed in, the chain's validation
 * result (cv=) and the Authentication-Results this server wrote.
 */
// The subpaths, not the package's index: that one loads BIMI and VMC validation too (node-forge, undici, …), a third of the server's modules.
import { arc, createSeal, getARChain } from "mailauth/lib/arc/index.js";
import type { ARCChainEntry, DNSResolver } from "mailauth";
import { formatAuthHeaderRow, parseHeaders } from "mailauth/lib/tools.js";
import type { DkimSigningKey } from "./dkim-sign.ts";
import type { DkimVerification } from "./dkim-verify.ts";
import type { MailauthResolver } from "./dns-resolver.ts";

export type ArcResult = "none" | "pass" | "fail";

export interface ArcOutcome {
  readonly result: ArcResult;
  /**
   * The chain failed because a key could not be looked up (SERVFAIL, timeout), not because a
   * signature is wrong. RFC 8617 has only none/pass/fail, so the result is "fail", but a set
   * sealed now with cv=fail would end the chain for good: retry, or forward without sealing.
   */
  readonly temporary?: true;
  /** The highest instance (i=) of the chain; 0 when there is none. */
  readonly instance: number;
  readonly comment?: string;
  /** The Authentication-Results resinfo ("arc=pass …", RFC 8617 §6). */
  readonly authResults: string;
  /**
   * When the chain passes: who added its newest set (that ARC-Seal's d=, lower-cased) and the
   * DMARC result its ARC-Authentication-Results recorded — what a receiver weighs when it
   * trusts that intermediary (RFC 8617 §7.2).
   */
  readonly newest?: { readonly sealer: string; readonly dmarc?: string };
}

export interface ArcVerifyOptions {
  readonly resolver: MailauthResolver;
  /** The connecting client, reported as smtp.remote-ip. */
  readonly ip?: string;
}

export async function verifyArc(message: DkimVerification, options: ArcVerifyOptions): Promise<ArcOutcome> {
  // mailauth reads every failure as a broken chain; watch the lookups to tell a DNS failure apart.
  let dnsFailure: string | undefined;
  const resolver: MailauthResolver = async (name, type) => {
    try {
      return await options.resolver(name, type);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === "ETIMEOUT" || code === "ESERVFAIL") dnsFailure ??= (err as Error).message;
      throw err;
    }
  };
  const r = await arc(message.arc, {
    resolver: resolver as DNSResolver,
    strict: true,
    minBitLength: 1024,
    ...(options.ip === undefined ? {} : { ip: options.ip }),
  });
  const result = r.status.result as ArcResult;
  // The newest ARC-Message-Signature was checked during the DKIM pass, with its own lookups.
  const ams = (message.arc.lastEntry as { messageSignature?: { status?: { result?: string; comment?: string } } } | undefined)?.messageSignature?.status;
  if (ams?.result === "temperror") dnsFailure ??= ams.comment ?? "temporary DNS failure";
  if (result === "fail" && dnsFailure !== undefined) {
    const comment = `DNS failure: ${dnsFailure}`;
    return {
      result,
      temporary: true,
      instance: typeof r.i === "number" ? r.i : 0,
      comment,
      authResults: formatAuthHeaderRow("arc", { ...r.status, comment }, { strict: true }),
    };
  }
  const sealer = message.arc.lastEntry?.["arc-seal"]?.parsed?.d?.value;
  const dmarc = (r.authenticationResults as { dmarc?: { result?: unknown } } | undefined)?.dmarc?.result;
  return {
    result,
    instance: typeof r.i === "number" ? r.i : 0,
    ...(r.status.comment ? { comment: r.status.comment } : {}),
    authResults: r.info ?? `arc=${result}`,
    ...(result === "pass" && typeof sealer === "string"
      ? { newest: { sealer: sealer.toLowerCase(), ...(typeof dmarc === "string" ? { dmarc: dmarc.toLowerCase() } : {}) } }
      : {}),
  };
}

export interface ArcSealInput {
  /** The header section of the message as forwarded (Petrel's Authentication-Results included). */
  readonly header: Buffer | string;
  /** The relaxed/sha256 body hash (DkimVerification.bodyHash, or RelaxedBodyHash). */
  readonly bodyHash: string;
  /** This server's validation of the chain the message arrived with (verifyArc). */
  readonly chainValidation: ArcResult;
  /** The Authentication-Results value this server wrote: "authserv-id; spf=…; dkim=…; dmarc=…". */
  readonly authResults: string;
  /** An RSA key (see sealArc). */
  readonly key: DkimSigningKey;
  /** Milliseconds since the epoch (default: now). */
  readonly now?: () => number;
}

/**
 * The ARC-Seal, ARC-Message-Signature and ARC-Authentication-Results fields (each ending in CRLF)
 * to prepend. Throws when no set may be added (RFC 8617 §5.1: the newest seal already says
 * cv=fail, or the chain has 50 sets) or the key cannot sign.
 */
export async function sealArc(input: ArcSealInput): Promise<string> {
  // RFC 8463 adds Ed25519 to DKIM only; ARC validators in use (dkimpy among them) know
  // rsa-sha256 alone, and a set they cannot check fails the whole chain.
  if (input.key.privateKey.asymmetricKeyType !== "rsa") {
    throw new Error(`ARC sealing needs an RSA key; ${input.key.selector}._domainkey.${input.key.domain} is ${input.key.privateKey.asymmetricKeyType}`);
  }
  const headers = parseHeaders(Buffer.from(input.header));
  let chain: ARCChainEntry[] | false = false;
  try {
    chain = getARChain(headers, { strict: true });
  } catch {
    // A structurally broken chain is sealed with cv=fail, as validation will have found.
  }
  const sealed = await createSeal(false, {
    headers,
    arc: { chain: chain === false ? [] : chain },
    seal: {
      signingDomain: input.key.domain,
      selector: input.key.selector,
      privateKey: input.key.privateKey.export({ type: "pkcs8", format: "pem" }),
      bodyHash: input.bodyHash,
      cv: input.chainValidation,
      authResults: input.authResults,
      signTime: new Date(input.now?.() ?? Date.now()),
    },
    strict: true,
  });
  if (sealed.headers.length === 0) {
    const why = sealed.errors.map((e) => e.err.message).join("; ") || "no ARC set created";
    throw new Error(`ARC sealing failed: ${why}`);
  }
  return sealed.headers.map((h) => `${h}\r\n`).join("");
}
