/**
 * DKIM verification (RFC 6376 §6) of a message as it streams: mailauth's verifier is fed the
 * chunks as they go to the spool — it parses the header section when it ends, keeps one running
 * body hash per distinct canonicalization, and looks the keys up at the end. Nothing of the body
 * is kept, whatever the size.
 *
 * mailauth runs in its strict mode: RFC 6376, RFC 8301 (rsa-sha1 and RSA keys under 1024 bits
 * are refused: dkim=policy) and RFC 8463 exactly, and a body that does not match its hash is
 * dkim=fail (RFC 8601 §2.7.1), not neutral. The first `maxSignatures` DKIM-Signature fields are
 * checked; the rest are counted, not verified, so a message cannot make Petrel do unbounded key
 * lookups and hashing.
 *
 * The same pass collects what ARC (arc.ts) and DMARC (dmarc.ts) need: the ARC chain with its
 * newest ARC-Message-Signature verified, the author addresses, the relaxed body hash for a seal.
 */
import { DkimVerifier, type VerifierSignature } from "mailauth/lib/dkim/dkim-verifier.js";
import type { ARCData } from "mailauth";
import type { MailauthResolver } from "./dns-resolver.ts";
import { MessageFeed } from "./message-feed.ts";

export const DEFAULT_MAX_SIGNATURES = 5;

export type DkimResult = "pass" | "fail" | "neutral" | "policy" | "temperror" | "permerror" | "none";

export interface DkimSignatureResult {
  readonly result: DkimResult;
  /** d= */
  readonly domain: string;
  /** s= */
  readonly selector: string;
  /** a= */
  readonly algorithm: string;
  /** Why it did not pass ("body hash did not verify", "no key", …). */
  readonly comment?: string;
  /** The key record says t=y: the domain is testing DKIM (RFC 6376 §3.6.1). */
  readonly testing: boolean;
  /** The Authentication-Results resinfo for this signature (RFC 8601 §2.7.1). */
  readonly authResults: string;
}

export interface DkimVerification {
  /** One entry per checked signature, in header order; empty when the message is unsigned. */
  readonly signatures: readonly DkimSignatureResult[];
  /** DKIM-Signature fields beyond `maxSignatures`, not verified. */
  readonly unchecked: number;
  /** Authentication-Results resinfo: one per signature, or "dkim=none" when unsigned. */
  readonly authResults: readonly string[];
  /** The addr-specs of the From field(s), for DMARC. */
  readonly authors: readonly string[];
  /** How many From fields the header section has (DMARC needs exactly one). */
  readonly fromFields: number;
  /** The ARC chain as parsed, with its newest ARC-Message-Signature checked: for verifyArc(). */
  readonly arc: ARCData;
  /** The relaxed/sha256 body hash, for sealing the message with ARC later ("" when not asked for: `sealBodyHash`). */
  readonly bodyHash: string;
}

export interface DkimVerifyOptions {
  readonly resolver: MailauthResolver;
  /** Signatures verified per message (default 5). */
  readonly maxSignatures?: number;
  /** Largest header section looked at (default 1 MiB). */
  readonly maxHeaderBytes?: number;
  /** For x= (expiry) checks; default: now. */
  readonly now?: () => number;
  /**
   * Compute the relaxed/sha256 body hash an ARC seal needs (default true). Without it and
   * without a signature or ARC set to check, the body is not looked at once the header
   * section has ended: an unsigned message costs its header section only.
   */
  readonly sealBodyHash?: boolean;
}

const UNCHECKED = "not checked: too many signatures";

class LimitedDkimVerifier extends DkimVerifier {
  private readonly maxSignatures: number;
  private seen = 0;
  unchecked = 0;

  constructor(options: DkimVerifyOptions) {
    super({
      resolver: options.resolver,
      strict: true,
      minBitLength: 1024,
      curTime: new Date(options.now?.() ?? Date.now()),
      ...(options.sealBodyHash === false ? {} : { seal: {} }),
    });
    this.maxSignatures = options.maxSignatures ?? DEFAULT_MAX_SIGNATURES;
  }

  override prepareSignature(signature: VerifierSignature): void {
    if (signature.type === "DKIM" && ++this.seen > this.maxSignatures) {
      this.unchecked++;
      signature.skip = UNCHECKED;
      return;
    }
    super.prepareSignature(signature);
  }

  /** No signature, ARC set or seal needs a body hash: the rest of the message can pass by unread. */
  override wantsBody(): boolean {
    return this.bodyHashes.size > 0;
  }
}

/** One verification per message: write() every chunk (header section first), then end(). */
export class DkimMessageVerifier {
  private readonly verifier: LimitedDkimVerifier;
  private readonly feed: MessageFeed;

  constructor(options: DkimVerifyOptions) {
    this.verifier = new LimitedDkimVerifier(options);
    this.feed = new MessageFeed(this.verifier, options.maxHeaderBytes);
  }

  /** A promise only while the verifier is taking the chunk (never once the body needs no hashing). */
  write(chunk: Buffer): void | Promise<void> {
    return this.feed.write(chunk);
  }

  async end(): Promise<DkimVerification> {
    if (this.feed.tooLarge) {
      const comment = "header section too large to verify";
      return {
        signatures: [],
        unchecked: 0,
        authResults: [`dkim=permerror (${comment})`],
        authors: [],
        fromFields: 0,
        arc: { chain: [] },
        bodyHash: "",
      };
    }
    await this.feed.end();
    const v = this.verifier;
    const signatures: DkimSignatureResult[] = [];
    for (const r of v.results) {
      if (r.status.result === "none" || r.status.comment === UNCHECKED) continue;
      signatures.push({
        result: r.status.result as DkimResult,
        domain: r.signingDomain ?? "",
        selector: r.selector ?? "",
        algorithm: r.algo ?? "",
        ...(r.status.comment ? { comment: r.status.comment } : {}),
        testing: r.status.testing === true,
        authResults: r.info,
      });
    }
    return {
      signatures,
      unchecked: v.unchecked,
      authResults: signatures.length > 0 ? signatures.map((s) => s.authResults) : ["dkim=none"],
      authors: [...v.headerFrom],
      fromFields: v.fromFields,
      arc: v.arc,
      bodyHash: v.seal?.bodyHash ?? "",
    };
  }

  abort(): void {
    this.feed.abort();
  }
}
