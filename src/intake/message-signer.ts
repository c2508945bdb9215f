import { Readable } from "node:stream";
import type { Logger } from "pino";
import { parseHeaders, type ParsedHeaders } from "mailauth/lib/tools.js";
import type { Now } from "../mail/clock.ts";
import type { ClientInfo } from "../mail/envelope.ts";
import type { HeaderEdit, ReceivedField } from "../mail/header-field.ts";
import { sealArc } from "../mailauth/arc.ts";
import { authorDomain } from "../mailauth/author-domain.ts";
import { RelaxedBodyHash } from "../mailauth/body-hash.ts";
import { DkimSigner, signatureField } from "../mailauth/dkim-sign.ts";
import type { SigningKeys } from "../mailauth/signing-keys.ts";
import type { Decided } from "../policy/merge.ts";
import { storedMessage } from "../spool/stored-message.ts";

/**
 * What the intake adds to a message it signs, like the trace fields it writes: DKIM signatures
 * (RFC 6376, RFC 8463) with the keys of the From domain (`dkim.domains`) on mail from
 * authenticated users and on the messages Petrel composes (DSNs, TLS reports), and the ARC set
 * (RFC 8617) a check asked for on mail that will be forwarded.
 *
 * Both are made over the header section exactly as every reader will get it back from the
 * spool (spool/stored-message.ts): the fields decided at the end of data on top
 * (Authentication-Results, a filter's fields), the header edits applied (a filter's changed
 * Subject, a forged Authentication-Results removed), Petrel's Received: field and the
 * Message-ID:/Date: a submission got included. The body hash is computed as the message
 * streams to the spool, never from a second read. The new fields go on top of everything: a
 * field added later (Return-Path:, Delivered-To:, the next hop's Received:) is not in their
 * h= lists, so it cannot break them.
 *
 * Signing never costs a message: a key that cannot sign, or a message without a From field,
 * is logged and the message stored as it is.
 */

export interface MessageSignerOptions {
  readonly keys: SigningKeys;
  readonly clock: Now;
  readonly log: Logger;
  /** Largest header section hashed (limits.headerSize: the intake refuses larger ones anyway). */
  readonly headerSizeLimit: number;
}

export class MessageSigner {
  private readonly options: MessageSignerOptions;

  constructor(options: MessageSignerOptions) {
    this.options = options;
  }

  /**
   * The body hash of a message received over SMTP, computed as it streams in, when it is to be
   * signed: mail from an authenticated user (RFC 6409 §8: submission is where a message gets
   * its signature; mail from elsewhere is verified, not signed).
   */
  bodyHashFor(client: ClientInfo): RelaxedBodyHash | undefined {
    return client.authUser === undefined ? undefined : new RelaxedBodyHash(this.options.headerSizeLimit);
  }

  /**
   * The fields (CRLF-terminated) to put on top of a received message: its DKIM signatures (when
   * `hash` was fed it) and the ARC set `decided` asks for. `prepend` is the decided fields as
   * the envelope stores them, `header` the stored header section.
   */
  async fields(queueId: string, header: readonly ReceivedField[], decided: Decided, prepend: string, hash?: RelaxedBodyHash): Promise<string> {
    if (hash === undefined && decided.arcSeal === undefined) return "";
    const stored = await headerAsStored(header, prepend, decided.headerEdits);
    let signatures = "";
    if (hash !== undefined) {
      try {
        const { bodyHash } = await hash.end();
        signatures = this.sign(queueId, parseHeaders(stored), bodyHash);
      } catch (err) {
        this.options.log.error({ queueId, err: (err as Error).message }, "DKIM signing failed; the message is sent unsigned");
      }
    }
    const request = decided.arcSeal;
    if (request === undefined) return signatures;
    const key = this.options.keys.sealingKeyFor(request.domain);
    if (key === undefined) {
      this.options.log.warn({ queueId, domain: request.domain }, "no RSA key in dkim.domains to seal with: forwarded without an ARC set");
      return signatures;
    }
    try {
      const set = await sealArc({
        header: Buffer.concat([Buffer.from(signatures), stored]),
        bodyHash: request.bodyHash,
        chainValidation: request.chainValidation,
        authResults: request.authResults,
        key,
        now: () => this.options.clock.now(),
      });
      return set + signatures;
    } catch (err) {
      this.options.log.warn({ queueId, domain: request.domain, err: (err as Error).message }, "ARC sealing failed: forwarded without an ARC set");
      return signatures;
    }
  }

  /** A message Petrel composed, with its DKIM signatures on top (unchanged when its From domain has no keys). */
  async signComposed(content: Buffer): Promise<Buffer> {
    const end = content.indexOf("\r\n\r\n");
    const keys = this.keysFor(parseHeaders(end === -1 ? content : content.subarray(0, end + 2)));
    if (keys.length === 0) return content;
    try {
      const signer = new DkimSigner(keys, { now: () => this.options.clock.now(), maxHeaderBytes: this.options.headerSizeLimit });
      await signer.write(content);
      return Buffer.concat([Buffer.from(await signer.end()), content]);
    } catch (err) {
      this.options.log.error({ err: (err as Error).message }, "DKIM signing of a composed message failed; it is sent unsigned");
      return content;
    }
  }

  private sign(queueId: string, header: ParsedHeaders, bodyHash: string): string {
    const keys = this.keysFor(header);
    if (keys.length === 0) {
      this.options.log.debug({ queueId }, "no DKIM key for the From domain: not signed");
      return "";
    }
    const now = () => this.options.clock.now();
    return keys.map((key) => signatureField(key, header, bodyHash, { now }) + "\r\n").join("");
  }

  private keysFor(header: ParsedHeaders) {
    const from = header.parsed.filter((h) => h.key === "from").map((h) => h.line.toString("utf8").replace(/^[^:]*:/, ""));
    const domain = authorDomain(from);
    return domain === undefined ? [] : this.options.keys.keysFor(domain);
  }
}

/** The header section as spool/stored-message.ts gives it back: `prepend` on top, `edits` applied; without the empty line. */
async function headerAsStored(header: readonly ReceivedField[], prepend: string, edits: readonly HeaderEdit[]): Promise<Buffer> {
  const section = Readable.from([Buffer.concat([...header.map((f) => f.raw), Buffer.from("\r\n")])]);
  const out: Buffer[] = [];
  for await (const chunk of storedMessage({ prepend, headerEdits: edits }, section)) out.push(chunk as Buffer);
  const all = Buffer.concat(out);
  return all.subarray(0, all.length - 2);
}
