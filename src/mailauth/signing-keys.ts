/**
 * The keys that sign, per domain (config `dkim.domains`), loaded at start-up so that a missing or
 * unsafe key stops start-up with its path rather than leaving mail unsigned, and again at each
 * reload; and the choice of keys for a message: those of its author domain or, failing that, of
 * the closest parent domain that has keys — a signature by the parent still aligns with the
 * author domain under DMARC's relaxed alignment (RFC 9989 §4.4).
 *
 * From the data directory on a single node; from the database (cluster-dkim-keys.ts) when a
 * store is given, so that every node of a cluster signs with the same key.
 */
import { loadStoredDkimKey, type KeyNote } from "./cluster-dkim-keys.ts";
import type { DkimKeyStore } from "./dkim-key-store.ts";
import { loadDkimKey } from "./dkim-keys.ts";
import type { DkimSigningKey } from "./dkim-sign.ts";

export type SigningDomains = Readonly<Record<string, { readonly selectors: readonly string[] }>>;

export interface SigningKeySource {
  /** The cluster's keys (storage.kind postgres); the data directory's files when absent. */
  readonly store?: DkimKeyStore;
  readonly note?: KeyNote;
}

export class SigningKeys {
  private byDomain: ReadonlyMap<string, readonly DkimSigningKey[]>;

  private constructor(byDomain: ReadonlyMap<string, readonly DkimSigningKey[]>) {
    this.byDomain = byDomain;
  }

  /** Every configured key; throws one error naming every key that cannot be used. */
  static async load(dataDir: string, domains: SigningDomains, source: SigningKeySource = {}): Promise<SigningKeys> {
    const byDomain = new Map<string, DkimSigningKey[]>();
    const problems: string[] = [];
    for (const [domain, { selectors }] of Object.entries(domains)) {
      const keys: DkimSigningKey[] = [];
      for (const selector of selectors) {
        try {
          keys.push(source.store
            ? await loadStoredDkimKey(source.store, dataDir, domain, selector, source.note)
            : await loadDkimKey(dataDir, domain, selector));
        } catch (err) {
          problems.push((err as Error).message);
        }
      }
      byDomain.set(domain, keys);
    }
    if (problems.length > 0) throw new Error(`DKIM keys in dkim.domains cannot be used:\n  ${problems.join("\n  ")}`);
    return new SigningKeys(byDomain);
  }

  /**
   * Sign with `next`'s keys from now on (a reload). The signer and the ARC check hold this
   * object, so they follow; a message being signed keeps the keys it started with.
   */
  replaceWith(next: SigningKeys): void {
    this.byDomain = next.byDomain;
  }

  /** The keys to sign mail from `authorDomain` with (the From address's domain); none when no domain at or above it has keys. */
  keysFor(authorDomain: string): readonly DkimSigningKey[] {
    const labels = authorDomain.toLowerCase().replace(/\.$/, "").split(".");
    for (let i = 0; i < labels.length - 1; i++) {
      const keys = this.byDomain.get(labels.slice(i).join("."));
      if (keys !== undefined && keys.length > 0) return keys;
    }
    return [];
  }

  /** The key an ARC set for mail forwarded by `domain` is sealed with: its RSA key (arc.ts sealArc says why). */
  sealingKeyFor(domain: string): DkimSigningKey | undefined {
    return this.keysFor(domain).find((k) => k.privateKey.asymmetricKeyType === "rsa");
  }
}
