/**
 * The relaxed/sha256 body hash of a message streamed through it (RFC 6376 §3.4.4, §3.7), and its
 * header section: what a DKIM signature (signing.ts) and an ARC set (arc.ts) need, computed while
 * the message streams to the spool so the signature can be made at its end without reading the
 * body again.
 */
import { dkimBody } from "mailauth/lib/dkim/body/index.js";
import { MessageParser } from "mailauth/lib/dkim/message-parser.js";
import type { ParsedHeaders } from "mailauth/lib/tools.js";
import { MessageFeed } from "./message-feed.ts";

class RelaxedBodyHashParser extends MessageParser {
  private readonly hash = dkimBody("relaxed", "sha256", false);
  digest = "";

  override async nextChunk(chunk: Buffer): Promise<void> {
    this.hash.update(chunk);
  }

  override async finalChunk(): Promise<void> {
    this.digest = this.hash.digest("base64");
  }
}

export interface HashedMessage {
  /** base64, the bh= value of a relaxed/sha256 signature. */
  readonly bodyHash: string;
  /** The message's header section as it streamed in. */
  readonly header: ParsedHeaders;
}

export class RelaxedBodyHash {
  private readonly parser = new RelaxedBodyHashParser();
  private readonly feed: MessageFeed;

  constructor(maxHeaderBytes?: number) {
    this.feed = new MessageFeed(this.parser, maxHeaderBytes);
  }

  write(chunk: Buffer): void | Promise<void> {
    return this.feed.write(chunk);
  }

  async end(): Promise<HashedMessage> {
    await this.feed.end();
    const header = this.parser.headers;
    if (header === false) throw new Error("message has no header section");
    return { bodyHash: this.parser.digest, header };
  }

  abort(): void {
    this.feed.abort();
  }
}
