/**
 * Who may order a certificate now. Nodes sharing one certificate (a cluster
 * behind one name) order one at a time: N nodes each ordering would hit the
 * CA's duplicate-certificate limit (Let's Encrypt: 5 a week for the same
 * names) and would answer challenges for orders the CA's request may not
 * reach. A single node needs no lease (its data directory is locked).
 *
 * The lease is held for `leaseTime` and renewed while the order runs; a node
 * that dies while ordering loses it when that time has passed. After a failed
 * order its node keeps it until its retry, so that the retry delay, doubled
 * per failure, holds for the whole cluster.
 */
export type LeaseTaken =
  | { readonly taken: true }
  | { readonly taken: false; readonly holder: string; readonly until: number };

export interface OrderLease {
  /** How long a taken or renewed lease lasts (ms). */
  readonly leaseTime: number;
  /** Take the lease unless another node holds it and it has not expired. */
  acquire(): Promise<LeaseTaken>;
  /** Extend a lease this node holds; false when it was lost (expired and taken by another). */
  renew(): Promise<boolean>;
  /** Keep a lease this node holds until `at` (ms), renewed no more: the retry after a failed order. */
  holdUntil(at: number): Promise<void>;
  /** Give the lease up (only if this node holds it). */
  release(): Promise<void>;
}
