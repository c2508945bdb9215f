import type { Now } from "../mail/clock.ts";
import type { EventSink, PetrelEvent, PetrelEventBody } from "./petrel-event.ts";

/**
 * The one sink every box is given: it numbers and times each event and
 * hands it, synchronously and in order, to whoever listens (the trace
 * store, the metrics, the admin API's live streams). A listener that throws
 * is logged through `onError` and does not stop the others — nor the SMTP
 * session or delivery that emitted the event.
 */
export class EventBus implements EventSink {
  private readonly clock: Now;
  private readonly listeners = new Set<(event: PetrelEvent) => void>();
  private readonly onError: (err: unknown) => void;
  private seq: number;

  constructor(options: { clock: Now; firstSeq?: number; onError?: (err: unknown) => void }) {
    this.clock = options.clock;
    this.seq = options.firstSeq ?? 1;
    this.onError = options.onError ?? (() => {});
  }

  /** Number the next event from `seq` on (after the trace store read the last one on disk). */
  continueFrom(seq: number): void {
    if (seq > this.seq) this.seq = seq;
  }

  emit(body: PetrelEventBody): void {
    if (this.listeners.size === 0) return;
    const event = { ...body, seq: this.seq++, at: this.clock.now() } as PetrelEvent;
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch (err) {
        this.onError(err);
      }
    }
  }

  /** Listen until the returned function is called. */
  subscribe(listener: (event: PetrelEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
