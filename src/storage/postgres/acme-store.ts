/**
 * PostgresAcmeStore: what ACME keeps, for a cluster (`storage.kind: postgres`) whose nodes share
 * one name and so one certificate — in the database, not in each node's data directory:
 *
 *   acme_account      the account key (one row), made by the first node that needs it
 *   acme_certificate  the certificate (one row): its private key and the chain (leaf first),
 *                     replaced in one statement, so a node never reads a key and a chain that do
 *                     not belong together; serial, not_after and node for the operator
 *   acme_challenge    the open challenges' answers, keyed by the HTTP-01 token or the lower-case
 *                     TLS-ALPN-01 name: the CA's request may reach any node behind the balancer
 *
 * The TLS listeners of a node load a file, as on a single node: <dataDir>/acme/certificate.pem
 * (FileAcmeStore) is this node's copy of the row, written when this node stores a certificate and
 * when `adopt` finds the row different from it. The private keys are in the database: its access
 * and its backups are as sensitive as the data directory was.
 *
 * A node that ran alone before (its <dataDir>/acme/ holds an account key and a CA-issued
 * certificate) brings them into an empty database, so that moving to a cluster neither orders a
 * duplicate certificate nor makes a new account; nodes doing so at once keep the first one stored.
 */
import { describeCertificate, type HeldCertificate } from "../../acme/renewal.ts";
import { joinPem, newPrivateKey, type AcmeStore, type ChallengeKey, type FileAcmeStore, type StoredChallenge } from "../../acme/acme-store.ts";
import type { PostgresPool } from "./postgres-pool.ts";

/** A challenge row older than this is left over from a node that died while ordering. */
const STALE_CHALLENGE = "1 day";

export interface PostgresAcmeStoreOptions {
  readonly pool: PostgresPool;
  /** This node's name (who stored what). */
  readonly node: string;
  /** This node's copy, which its TLS listeners load. */
  readonly served: FileAcmeStore;
}

export class PostgresAcmeStore implements AcmeStore {
  readonly #pool: PostgresPool;
  readonly #node: string;
  readonly #served: FileAcmeStore;

  constructor(options: PostgresAcmeStoreOptions) {
    this.#pool = options.pool;
    this.#node = options.node;
    this.#served = options.served;
  }

  /** The account key; nodes making it at once keep the one inserted first. */
  async accountKey(): Promise<string> {
    const existing = await this.#pool.query<{ private_key: string }>("SELECT private_key FROM acme_account");
    if (existing.rows[0]) return existing.rows[0].private_key;
    const key = (await this.#served.existingAccountKey()) ?? newPrivateKey("ecdsa");
    await this.#pool.query("INSERT INTO acme_account (private_key) VALUES ($1) ON CONFLICT (one) DO NOTHING", [key]);
    return (await this.#pool.query<{ private_key: string }>("SELECT private_key FROM acme_account")).rows[0].private_key;
  }

  /** The certificate in the database, or undefined when there is none or it does not parse. */
  async current(): Promise<HeldCertificate | undefined> {
    const row = await this.#row();
    if (!row) return undefined;
    try {
      return describeCertificate(row.chain_pem);
    } catch {
      return undefined;
    }
  }

  async saveCertificate(keyPem: string, chainPem: string): Promise<HeldCertificate> {
    const described = describeCertificate(chainPem); // refuse to store what will not load
    await this.#pool.query(
      `INSERT INTO acme_certificate (key_pem, chain_pem, serial, not_after, node, stored_at)
       VALUES ($1, $2, $3, to_timestamp($4::double precision / 1000), $5, now())
       ON CONFLICT (one) DO UPDATE SET key_pem = $1, chain_pem = $2, serial = $3, not_after = to_timestamp($4::double precision / 1000), node = $5, stored_at = now()`,
      [keyPem, chainPem, described.serialNumber, described.notAfter, this.#node],
    );
    await this.#served.writeServed(joinPem(keyPem, chainPem));
    return described;
  }

  async adopt(): Promise<HeldCertificate | undefined> {
    let row = await this.#row();
    if (!row && await this.#storeServed()) row = await this.#row();
    if (!row) return undefined;
    const pem = joinPem(row.key_pem, row.chain_pem);
    if ((await this.#served.servedPem()) === pem) return undefined;
    let described: HeldCertificate;
    try {
      described = describeCertificate(row.chain_pem);
    } catch {
      return undefined; // not served; current() says there is none, so a node orders a new one
    }
    await this.#served.writeServed(pem);
    return described;
  }

  async addChallenge(c: StoredChallenge): Promise<void> {
    await this.#pool.query(`DELETE FROM acme_challenge WHERE created_at < now() - interval '${STALE_CHALLENGE}'`);
    const [key, answer, privateKey] = c.type === "http-01" ? [c.token, c.keyAuthorization, null] : [c.name.toLowerCase(), c.certPem, c.keyPem];
    await this.#pool.query(
      `INSERT INTO acme_challenge (type, key, answer, private_key, node) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (type, key) DO UPDATE SET answer = $3, private_key = $4, node = $5, created_at = now()`,
      [c.type, key, answer, privateKey, this.#node],
    );
  }

  async removeChallenge(k: ChallengeKey): Promise<void> {
    await this.#pool.query("DELETE FROM acme_challenge WHERE type = $1 AND key = $2", [k.type, keyOf(k)]);
  }

  async challenge(k: ChallengeKey): Promise<StoredChallenge | undefined> {
    const r = await this.#pool.query<{ answer: string; private_key: string | null }>(
      "SELECT answer, private_key FROM acme_challenge WHERE type = $1 AND key = $2", [k.type, keyOf(k)],
    );
    const row = r.rows[0];
    if (!row) return undefined;
    if (k.type === "http-01") return { type: "http-01", token: k.token, keyAuthorization: row.answer };
    return row.private_key === null ? undefined : { type: "tls-alpn-01", name: keyOf(k), certPem: row.answer, keyPem: row.private_key };
  }

  /** An empty database takes this node's own CA-issued certificate (never the placeholder); true if stored. */
  async #storeServed(): Promise<boolean> {
    const pem = await this.#served.servedPem();
    const key = pem?.match(/-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----\n?/);
    if (!pem || !key) return false;
    const chain = pem.replace(key[0], "");
    let described: HeldCertificate;
    try {
      described = describeCertificate(chain);
    } catch {
      return false;
    }
    if (described.selfSigned) return false;
    await this.#pool.query(
      `INSERT INTO acme_certificate (key_pem, chain_pem, serial, not_after, node, stored_at)
       VALUES ($1, $2, $3, to_timestamp($4::double precision / 1000), $5, now()) ON CONFLICT (one) DO NOTHING`,
      [key[0], chain, described.serialNumber, described.notAfter, this.#node],
    );
    return true;
  }

  async #row(): Promise<{ key_pem: string; chain_pem: string } | undefined> {
    return (await this.#pool.query<{ key_pem: string; chain_pem: string }>("SELECT key_pem, chain_pem FROM acme_certificate")).rows[0];
  }
}

function keyOf(k: ChallengeKey): string {
  return k.type === "http-01" ? k.token : k.name.toLowerCase();
}
