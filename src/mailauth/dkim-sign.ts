/**
 * DKIM signing (RFC 6376) of a message as it streams: the body is hashed chunk by chunk, and at
 * the end — given the final header section, which may hold fields added after the content
 * streamed (Message-ID, Date on submission) — the DKIM-Signature fields are made, to be
 * prepended to the message. One signature per key: rsa-sha256 and ed25519-sha256 (RFC 8463)
 * side by side when a domain has both keys, so verifiers that know only RSA still see a valid
 * one.
 *
 * Always relaxed/relaxed (survives the whitespace and folding changes of relays), never l=
 * (a body length limit lets anyone append content under the signature, RFC 6376 §8.2), no x=.
 * The header fields that matter to the reader are over-signed (RFC 6376 §5.4.2, §8.15): their
 * names appear in h= once more than they occur, so a second From or Subject added in transit
 * breaks the signature instead of being shown under it.
 */
import { createHash, sign, type KeyObject } from "node:crypto";
import { generateCanonicalizedHeader, type SigningHeaderLines } from "mailauth/lib/dkim/header/index.js";
import { formatSignatureHeaderLine, parseHeaders, type ParsedHeaders } from "mailauth/lib/tools.js";
import { RelaxedBodyHash } from "./body-hash.ts";

/** Fields signed when present (RFC 6376 §5.4.1, RFC 8058 §4 for List-Unsubscribe-Post). */
export const SIGNED_FIELDS: readonly string[] = [
  "From", "Reply-To", "Subject", "Date", "To", "Cc", "Message-ID", "In-Reply-To", "References",
  "MIME-Version", "Content-Type", "Content-Transfer-Encoding", "Content-Language", "Sender",
  "Resent-Date", "Resent-From", "Resent-Sender", "Resent-To", "Resent-Cc", "Resent-Message-ID",
  "List-Id", "List-Help", "List-Unsubscribe", "List-Unsubscribe-Post", "List-Subscribe",
  "List-Post", "List-Owner", "List-Archive",
];

/** Fields a reader sees or a client threads by: one more instance than present is signed. */
export const OVERSIGNED_FIELDS: readonly string[] = [
  "From", "Reply-To", "Subject", "Date", "To", "Cc", "Message-ID", "MIME-Version", "Content-Type",
];

/** RFC 8301 §3.2: verifiers ignore RSA keys shorter than this. */
export const MIN_RSA_BITS = 1024;

export type DkimAlgorithm = "rsa-sha256" | "ed25519-sha256";

export interface DkimSigningKey {
  /** d=, the signing domain (A-labels). */
  readonly domain: string;
  /** s=, the selector. */
  readonly selector: string;
  readonly privateKey: KeyObject;
}

export interface DkimSignOptions {
  /** t=, in milliseconds since the epoch (default: now). */
  readonly now?: () => number;
  /** Largest header section hashed (default 1 MiB). */
  readonly maxHeaderBytes?: number;
  readonly signedFields?: readonly string[];
  readonly oversignedFields?: readonly string[];
}

/** The signature algorithm a key makes; throws for key types and sizes no verifier accepts. */
export function dkimAlgorithm(key: KeyObject): DkimAlgorithm {
  if (key.asymmetricKeyType === "ed25519") return "ed25519-sha256";
  if (key.asymmetricKeyType === "rsa") {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS) throw new Error(`RSA key of ${bits} bits: DKIM needs at least ${MIN_RSA_BITS} (RFC 8301 §3.2)`);
    return "rsa-sha256";
  }
  throw new Error(`a ${key.asymmetricKeyType ?? "symmetric"} key cannot make DKIM signatures (rsa or ed25519)`);
}

/**
 * One signing session per message: write() the content as it streams (header section first),
 * then end() with the final header section for the DKIM-Signature fields to prepend.
 */
export class DkimSigner {
  private readonly keys: readonly DkimSigningKey[];
  private readonly options: DkimSignOptions;
  private readonly body: RelaxedBodyHash;

  constructor(keys: readonly DkimSigningKey[], options: DkimSignOptions = {}) {
    for (const key of keys) dkimAlgorithm(key.privateKey);
    this.keys = keys;
    this.options = options;
    this.body = new RelaxedBodyHash(options.maxHeaderBytes);
  }

  write(chunk: Buffer): void | Promise<void> {
    return this.body.write(chunk);
  }

  /**
   * The DKIM-Signature fields, each ending in CRLF. `header` is the header section the message
   * will carry (without the empty line) — raw, or as fields (name, value without the space
   * after the colon; relaxed canonicalization makes "Name: value" equivalent to what was
   * written) — by default the one that streamed in.
   */
  async end(header?: Buffer | string | readonly { readonly name: string; readonly value: string }[]): Promise<string> {
    const hashed = await this.body.end();
    const raw = Array.isArray(header) ? header.map((f) => `${f.name}: ${f.value}\r\n`).join("") : header;
    const fields = raw === undefined ? hashed.header : parseHeaders(Buffer.from(raw as string | Buffer));
    return this.keys.map((key) => signatureField(key, fields, hashed.bodyHash, this.options) + "\r\n").join("");
  }

  abort(): void {
    this.body.abort();
  }
}

/** One DKIM-Signature field (folded, without the final CRLF) over `header` and a body hash. */
export function signatureField(key: DkimSigningKey, header: ParsedHeaders, bodyHash: string, options: DkimSignOptions = {}): string {
  const algorithm = dkimAlgorithm(key.privateKey);
  const lines = signingHeaderLines(header, options.signedFields ?? SIGNED_FIELDS, options.oversignedFields ?? OVERSIGNED_FIELDS);
  if (!lines.headers.some((h) => h.key === "from")) throw new Error("the message has no From field: DKIM must sign it (RFC 6376 §5.4)");
  const { canonicalizedHeader, dkimHeaderOpts } = generateCanonicalizedHeader("DKIM", lines, {
    signingDomain: key.domain,
    selector: key.selector,
    algorithm,
    canonicalization: "relaxed/relaxed",
    bodyHash,
    timestamp: Math.floor((options.now?.() ?? Date.now()) / 1000),
    expiration: false,
  });
  // RFC 8463 §3: Ed25519 signs the SHA-256 hash of the canonicalized header ("PureEdDSA" over it).
  const signature =
    algorithm === "rsa-sha256"
      ? sign("sha256", canonicalizedHeader, key.privateKey)
      : sign(null, createHash("sha256").update(canonicalizedHeader).digest(), key.privateKey);
  return formatSignatureHeaderLine("DKIM", { ...dkimHeaderOpts, b: signature.toString("base64") }, true);
}

/**
 * The fields to hash, in the order a verifier picks them for h= (RFC 6376 §5.4.2: each name
 * takes the last instance not yet used), and the h= value with the over-signed names repeated.
 */
function signingHeaderLines(header: ParsedHeaders, signed: readonly string[], oversigned: readonly string[]): SigningHeaderLines {
  const over = new Set(oversigned.map((n) => n.toLowerCase()));
  const names: string[] = [];
  const headers: SigningHeaderLines["headers"] = [];
  const seen = new Set<string>();
  for (const name of signed) {
    const key = name.toLowerCase();
    if (seen.has(key)) continue;
    seen.add(key);
    const present = header.parsed.filter((h) => h.key === key).reverse();
    for (const h of present) {
      names.push(h.casedKey);
      headers.push(h);
    }
    if (over.has(key)) names.push(name);
  }
  return { keys: names.join(": "), headers };
}
