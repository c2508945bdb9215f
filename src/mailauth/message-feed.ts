/**
 * Feeds one of mailauth's message parsers (a Writable that splits the header section from the
 * body and hashes the body as it passes) with a message's chunks as they stream to the spool.
 * Each write resolves once the parser has taken the chunk, so nothing piles up in its buffer;
 * the parser keeps the header section (to parse it) and hash state, never the body.
 *
 * The header section is bounded: past `maxHeaderBytes` the parser is dropped and the feed
 * reports `tooLarge` (Petrel's intake refuses such a message anyway, limits.headerSize).
 */
import { finished } from "node:stream/promises";
import type { MessageParser } from "mailauth/lib/dkim/message-parser.js";

export const DEFAULT_MAX_HEADER_BYTES = 1024 * 1024;

export class MessageFeed {
  private readonly parser: MessageParser;
  private readonly maxHeaderBytes: number;
  private failure: Error | undefined;
  /** "skipping": the header section is parsed and the parser wants no body (wantsBody). */
  private state: "open" | "skipping" | "ended" | "dropped" = "open";
  /** Octets written. */
  size = 0;

  constructor(parser: MessageParser, maxHeaderBytes = DEFAULT_MAX_HEADER_BYTES) {
    this.parser = parser;
    this.maxHeaderBytes = maxHeaderBytes;
    // A failing parser must not become an unhandled 'error' event; end() reports it.
    parser.on("error", (err: Error) => {
      this.failure ??= err;
    });
  }

  /** The header section grew past the limit before it ended; the parser saw no more. */
  get tooLarge(): boolean {
    return this.state === "dropped";
  }

  /** A promise while the parser takes the chunk; nothing once the parser has no use for the rest. */
  write(chunk: Buffer): void | Promise<void> {
    if (this.state !== "open" || this.failure !== undefined || chunk.length === 0) return;
    this.size += chunk.length;
    return new Promise<void>((resolve) => this.parser.write(chunk, () => resolve())).then(() => this.afterWrite());
  }

  private afterWrite(): void {
    const parser = this.parser;
    if (parser.state === "header") {
      if (parser.headerBytes > this.maxHeaderBytes) {
        this.state = "dropped";
        parser.destroy();
      }
    } else if (this.state === "open" && parser.wantsBody?.() === false) {
      this.state = "skipping";
    }
  }

  /** All content written: the parser finishes (hashes, signature checks). Throws what failed. */
  async end(): Promise<void> {
    if (this.state !== "open" && this.state !== "skipping") {
      if (this.state === "dropped") throw new Error(`header section larger than ${this.maxHeaderBytes} octets`);
      throw new Error("message already ended");
    }
    this.state = "ended";
    if (this.failure === undefined) {
      this.parser.end();
      await finished(this.parser).catch((err: Error) => {
        this.failure ??= err;
      });
    }
    if (this.failure !== undefined) throw this.failure;
  }

  /** Give up on the message (RSET, aborted transfer). */
  abort(): void {
    if (this.state === "open" || this.state === "skipping") this.state = "ended";
    this.parser.destroy();
  }
}
