/**
 * Types for the parts of mailauth (pinned to one exact version in package.json) that its public
 * API does not offer and Petrel needs for streaming: the message parser and DKIM verifier as
 * Writables fed chunk by chunk, the body hasher, and the header canonicalization used to sign
 * with a header list of Petrel's choosing (over-signing) after the body hash is known.
 * Only what Petrel uses is declared.
 */

declare module "mailauth/lib/tools.js" {
  export interface ParsedHeader {
    /** Lower-cased field name. */
    key: string;
    /** Field name as written. */
    casedKey: string;
    /** The whole field, folds included, without the final CRLF. */
    line: Buffer;
  }
  export interface ParsedHeaders {
    parsed: ParsedHeader[];
    original: Buffer;
  }
  export function parseHeaders(buf: Buffer): ParsedHeaders;
  /** An Authentication-Results resinfo ("dmarc=fail (…) header.from=…") from a result's status. */
  export function formatAuthHeaderRow(method: string, status: object, options: { strict: boolean }): string;
  export function formatSignatureHeaderLine(type: "DKIM" | "ARC" | "AS", values: Record<string, unknown>, folded: boolean): string;
}

declare module "mailauth/lib/dkim/message-parser.js" {
  import { Writable } from "node:stream";
  import type { ParsedHeaders } from "mailauth/lib/tools.js";

  /** Splits a message written to it into the header section (parsed once complete) and body chunks. */
  export class MessageParser extends Writable {
    constructor();
    state: "header" | "body";
    /** Octets of the header section seen so far. */
    headerBytes: number;
    headers: ParsedHeaders | false;
    /** Declared by Petrel's subclasses (message-feed.ts): once the header section is parsed, does the body matter? */
    wantsBody?(): boolean;
    nextChunk(chunk: Buffer): Promise<void>;
    messageHeaders(headers: ParsedHeaders): Promise<void>;
    finalChunk(): Promise<void>;
  }
}

declare module "mailauth/lib/dkim/body/index.js" {
  export interface BodyHash {
    update(chunk: Buffer): void;
    digest(encoding: "base64"): string;
  }
  export function dkimBody(canonicalization: "relaxed" | "simple", algorithm: "sha256", maxBodyLength: number | false): BodyHash;
}

declare module "mailauth/lib/dkim/header/index.js" {
  import type { ParsedHeader } from "mailauth/lib/tools.js";

  export interface SigningHeaderLines {
    /** The h= value: the field names, separated by ": ". */
    keys: string;
    /** The fields hashed, in h= order. */
    headers: ParsedHeader[];
  }
  export function generateCanonicalizedHeader(
    type: "DKIM",
    signingHeaderLines: SigningHeaderLines,
    options: {
      signingDomain: string;
      selector: string;
      algorithm: string;
      canonicalization: string;
      bodyHash: string;
      timestamp: number;
      expiration: false;
    },
  ): { canonicalizedHeader: Buffer; dkimHeaderOpts: Record<string, unknown> };
}

declare module "mailauth/lib/dkim/dkim-verifier.js" {
  import { MessageParser } from "mailauth/lib/dkim/message-parser.js";
  import type { ARCData, AuthStatus } from "mailauth";

  export interface VerifierSignature {
    type: "DKIM" | "ARC";
    /** Set to a reason to leave the signature unprocessed. */
    skip?: string;
  }

  export interface VerifierResult {
    signingDomain?: string;
    selector?: string;
    algo?: string;
    status: AuthStatus & { aligned?: string | false; testing?: boolean; underSized?: number };
    /** The Authentication-Results resinfo ("dkim=pass header.d=…"). */
    info: string;
  }

  export class DkimVerifier extends MessageParser {
    constructor(options: {
      resolver: (name: string, rrtype: string) => Promise<unknown[]>;
      minBitLength?: number;
      strict?: boolean;
      curTime?: Date;
      /** Computes the relaxed/sha256 body hash for an ARC seal into `seal.bodyHash`. */
      seal?: Record<string, unknown>;
    });
    results: VerifierResult[];
    /** One running hash per canonicalization and length the signatures (and a seal) need. */
    bodyHashes: Map<string, unknown>;
    headerFrom: string[];
    fromFields: number;
    arc: ARCData & { warnings: string[] };
    seal?: { bodyHash?: string };
    prepareSignature(signature: VerifierSignature): void;
  }
}

declare module "mailauth/lib/dmarc/index.js" {
  import type { DMARCOptions, DMARCResult } from "mailauth";

  export function evaluateDmarc(opts: DMARCOptions & { strict?: boolean }): Promise<{
    response: DMARCResult | false;
    reason?: "no-author-domain" | "multiple-author-domains" | "invalid-author-domain" | "multiple-from-fields";
  }>;
}
