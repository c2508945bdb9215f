/**
 * Group commit for an fsync that many callers need but one call can serve:
 * the directory fsync that makes renames durable.
 *
 * `request()` resolves once a sync that *started after the request* has
 * completed. When no sync is running, one starts at once (no timer, no added
 * latency when idle). Requests that arrive while a sync runs wait together
 * and share the next one. So under load there are at most two syncs in the
 * pipeline and the number of syncs grows with time, not with commits.
 */
export class GroupSync {
  private readonly syncFn: () => Promise<void>;
  private waiting: Array<{ resolve: () => void; reject: (err: unknown) => void }> = [];
  private running: Promise<void> | null = null;
  /** How many syncs have run (for tests and metrics). */
  syncs = 0;

  constructor(syncFn: () => Promise<void>) {
    this.syncFn = syncFn;
  }

  request(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      if (this.running === null) this.running = this.run();
    });
  }

  /** Resolves when no sync is running or waiting. */
  async idle(): Promise<void> {
    while (this.running !== null) await this.running;
  }

  private async run(): Promise<void> {
    // Let the current macrotask's other requests join the first batch: a
    // microtask hop costs no latency but catches callers that rename in the
    // same tick.
    await Promise.resolve();
    while (this.waiting.length > 0) {
      const batch = this.waiting;
      this.waiting = [];
      this.syncs++;
      try {
        await this.syncFn();
        for (const w of batch) w.resolve();
      } catch (err) {
        for (const w of batch) w.reject(err);
      }
    }
    this.running = null;
  }
}
