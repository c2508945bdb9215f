import type { Reply } from "./reply.ts";
import { DataDecoder, type BareNewlinePolicy, type DecodeResult } from "./data-decoder.ts";
import { LineEndNormalizer } from "./line-end-normalizer.ts";
import type { MessageSink } from "./session-handler.ts";
import type { LineFramer } from "./line-framer.ts";

/**
 * The message of the current transaction on its way in, by DATA (RFC 5321
 * §4.1.1.4: dot-stuffed, decoded by DataDecoder) or by BDAT chunks (RFC 3030:
 * counted octets, line ends normalised): the decoder or normaliser, the size
 * limit enforced while it streams (RFC 1870 §6), and the sink it streams to.
 */
export class MessageReceiver {
  private readonly messageSize: number;
  private readonly bareNewline: BareNewlinePolicy;
  private sink: MessageSink | null = null;
  private decoder: DataDecoder | null = null;
  private normalizer: LineEndNormalizer | null = null;
  /** Content octets received so far. */
  octets = 0;
  /** The size limit was passed: the sink is gone, the rest is read and dropped. */
  tooBig = false;
  /** BDAT: octets of the current chunk still to read, and whether it is LAST. */
  chunkRemaining = 0;
  lastChunk = false;
  /** BDAT: a refusal that sticks until LAST or RSET (RFC 3030 §2: later chunks are read and refused too). */
  failure: Reply | null = null;
  /** BDAT: the first chunk of this transaction was seen (DATA and RCPT are out of sequence after it). */
  started = false;

  constructor(messageSize: number, bareNewline: BareNewlinePolicy) {
    this.messageSize = messageSize;
    this.bareNewline = bareNewline;
  }

  /** DATA was accepted: the body streams into `sink`. */
  beginData(sink: MessageSink): void {
    this.sink = sink;
    this.decoder = new DataDecoder(this.bareNewline);
    this.octets = 0;
    this.tooBig = false;
  }

  /** The first BDAT chunk was accepted: chunks stream into `sink`. */
  beginChunks(sink: MessageSink): void {
    this.sink = sink;
    this.normalizer = new LineEndNormalizer(this.bareNewline);
    this.octets = 0;
    this.tooBig = false;
  }

  /**
   * DATA input: the next chunk from the input; once the end of data is seen,
   * what follows it. A promise only while the sink makes the stream wait.
   */
  data(input: LineFramer): DecodeResult | Promise<DecodeResult> {
    const decoded = this.decoder!.feed(input.shift());
    const writing = this.write(decoded.content, 0);
    return writing === undefined ? decoded : writing.then(() => decoded);
  }

  /** After the end of data: whether a bare line end was seen (the decoder is done). */
  endData(): boolean {
    const decoder = this.decoder!;
    this.decoder = null;
    return decoder.bareNewlineSeen;
  }

  /** BDAT input: take what belongs to the current chunk from the input; the rest stays queued. */
  async chunk(input: LineFramer): Promise<void> {
    let chunk = input.shift();
    if (chunk.length > this.chunkRemaining) {
      input.unshift(chunk.subarray(this.chunkRemaining));
      chunk = chunk.subarray(0, this.chunkRemaining);
    }
    this.chunkRemaining -= chunk.length;
    if (this.failure === null && this.normalizer) await this.write(this.normalizer.feed(chunk), 0);
  }

  /** After BDAT LAST: the normaliser's last octets; returns whether a bare line end was seen. */
  async endChunks(): Promise<boolean> {
    const normalizer = this.normalizer!;
    await this.write(normalizer.finish(), 0);
    return normalizer.bareNewlineSeen;
  }

  /** All content is in and within limits: the sink stores it and gives the final reply. */
  end(): Promise<Reply> {
    const sink = this.sink!;
    this.sink = null;
    return sink.end();
  }

  /** The message is refused or the connection is gone: discard what the sink holds. */
  async abort(): Promise<void> {
    this.decoder = null;
    this.normalizer = null;
    await this.abortSink();
  }

  /** A new transaction (RFC 5321 §4.1.4): nothing of the last message's accounting remains. */
  reset(): void {
    this.started = false;
    this.failure = null;
    this.lastChunk = false;
    this.tooBig = false;
    this.octets = 0;
  }

  /** parts[from…] to the sink, in order; a promise only when the sink makes the stream wait. */
  private write(parts: readonly Buffer[], from: number): void | Promise<void> {
    for (let i = from; i < parts.length; i++) {
      if (this.tooBig) return;
      const part = parts[i];
      this.octets += part.length;
      if (this.octets > this.messageSize) {
        // Enforced while the message streams in (RFC 1870 §6): stop storing,
        // keep reading to the end, then answer 552.
        this.tooBig = true;
        return this.abortSink();
      }
      const pending = this.sink?.write(part);
      if (pending) return pending.then(() => this.write(parts, i + 1));
    }
  }

  private async abortSink(): Promise<void> {
    const sink = this.sink;
    this.sink = null;
    if (sink) await sink.abort();
  }
}
