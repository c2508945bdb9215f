/**
 * Per-destination concurrency held across a cluster's nodes (queue.perDestination for all of
 * them together): the queue manager starts a delivery to a destination only within the slots its
 * node holds. The PostgreSQL implementation: storage/postgres/postgres-destination-slots.ts.
 */
/** What the queue manager asks of a cluster's slot keeper. */
export interface DestinationSlots {
  /** Slots this node holds for `destination` now. */
  held(destination: string): number;
  /** Ask for `want` slots in all (at most `limit` in the cluster); `granted()` is called when more are held (or it may be asked again). */
  grow(destination: string, want: number, limit: number): void;
  /** Give back what `destination` holds beyond `keep` (nothing waits for it here). */
  shrink(destination: string, keep: number): void;
  /** Keep the slots `inUse` says are in use (extending their lease), give back the rest. */
  renew(inUse: ReadonlyMap<string, number>): Promise<void>;
  open(): Promise<void>;
  close(): Promise<void>;
  /** Called when `grow` got more slots, and when a grow that got none may be asked again. */
  granted: () => void;
}
