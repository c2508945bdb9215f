/**
 * The keys that sign, per domain (config `dkim.domains`), loaded once at start-up so that a
 * missing or unsafe key stops start-up with its path rather than leaving mail unsigned; and the
 * choice of keys for a message: those of its author domain or, failing that, of the closest
 * parent domain that has keys — a signature by the parent still aligns with the author domain
 * under DMARC's relaxed alignment (RFC 9989 §4.4).
 */
import { loadDkimKey } from "./dkim-keys.ts";
import type { DkimSigningKey } from "./dkim-sign.ts";

export type SigningDomains = Readonly<Record<string, { readonly selectors: readonly string[] }>>;

export class SigningKeys {
  private readonly byDomain: ReadonlyMap<string, readonly DkimSigningKey[]>;

  private constructor(byDomain: ReadonlyMap<string, readonly DkimSigningKey[]>) {
    this.byDomain = byDomain;
  }

  /** Every configured key; throws one error naming every key that cannot be used. */
  static async load(dataDir: string, domains: SigningDomains): Promise<SigningKeys> {
    const byDomain = new Map<string, DkimSigningKey[]>();
    const problems: string[] = [];
    for (const [domain, { selectors }] of Object.entries(domains)) {
      const keys: DkimSigningKey[] = [];
      for (const selector of selectors) {
        try {
          keys.push(await loadDkimKey(dataDir, domain, selector));
        } catch (err) {
          problems.push((err as Error).message);
        }
      }
      byDomain.set(domain, keys);
    }
    if (problems.length > 0) throw new Error(`DKIM keys in dkim.domains cannot be used:\n  ${problems.join("\n  ")}`);
    return new SigningKeys(byDomain);
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
