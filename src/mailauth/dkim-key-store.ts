/**
 * Where a cluster keeps its DKIM keys (`storage.kind: postgres`): one key per (domain, selector)
 * for every node, so that every node signs with the one key whose record is published — a key
 * per node under one selector would fail DKIM (RFC 6376 §6.1.3) for the share of mail the other
 * nodes sign. The single-node default keeps them as files (dkim-keys.ts); this is the interface
 * the signing and the commands use, implemented in storage/postgres/dkim-key-store.ts.
 */

/** One key pair as stored: PEM text, PKCS#8 private and SPKI public. */
export interface StoredDkimKey {
  readonly domain: string;
  readonly selector: string;
  readonly privateKeyPem: string;
  readonly publicKeyPem: string;
  /** The node that made it (or moved it in from its data directory). */
  readonly node: string;
  readonly createdAt: Date;
}

export interface DkimKeyStore {
  /** Store a new key; false (and nothing changed) when (domain, selector) already has one: keys are never overwritten. */
  create(domain: string, selector: string, privateKeyPem: string, publicKeyPem: string): Promise<boolean>;
  get(domain: string, selector: string): Promise<StoredDkimKey | undefined>;
  /** Every key of a domain, by selector. */
  list(domain: string): Promise<StoredDkimKey[]>;
}
