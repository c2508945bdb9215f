/**
 * PostgresDkimKeyStore: the DKIM keys of a cluster (`storage.kind: postgres`) in the table
 * `dkim_key`, one row per (domain, selector) — private_key (PKCS#8 PEM), public_key (SPKI PEM),
 * node (who made it or moved it in) and created_at. A row is inserted once and never updated:
 * a selector names one key for as long as its record is published (RFC 6376 §3.1), so rotation
 * is a new selector, as with the files. The private keys are here: access to the database and
 * its backups is access to the domains' signing keys.
 */
import type { DkimKeyStore, StoredDkimKey } from "../../mailauth/dkim-key-store.ts";
import type { PostgresPool } from "./postgres-pool.ts";

interface Row {
  domain: string;
  selector: string;
  private_key: string;
  public_key: string;
  node: string;
  created_at: Date;
}

export class PostgresDkimKeyStore implements DkimKeyStore {
  readonly #pool: PostgresPool;
  readonly #node: string;

  constructor(options: { readonly pool: PostgresPool; readonly node: string }) {
    this.#pool = options.pool;
    this.#node = options.node;
  }

  async create(domain: string, selector: string, privateKeyPem: string, publicKeyPem: string): Promise<boolean> {
    // ON CONFLICT DO NOTHING: two nodes (or two keygens) at once keep the first key, never a mix.
    const r = await this.#pool.query(
      `INSERT INTO dkim_key (domain, selector, private_key, public_key, node) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (domain, selector) DO NOTHING`,
      [domain, selector, privateKeyPem, publicKeyPem, this.#node],
    );
    return r.rowCount === 1;
  }

  async get(domain: string, selector: string): Promise<StoredDkimKey | undefined> {
    const r = await this.#pool.query<Row>("SELECT * FROM dkim_key WHERE domain = $1 AND selector = $2", [domain, selector]);
    return r.rows[0] ? stored(r.rows[0]) : undefined;
  }

  async list(domain: string): Promise<StoredDkimKey[]> {
    const r = await this.#pool.query<Row>("SELECT * FROM dkim_key WHERE domain = $1 ORDER BY selector", [domain]);
    return r.rows.map(stored);
  }
}

function stored(row: Row): StoredDkimKey {
  return {
    domain: row.domain, selector: row.selector, privateKeyPem: row.private_key, publicKeyPem: row.public_key,
    node: row.node, createdAt: row.created_at,
  };
}
