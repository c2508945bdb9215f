/**
 * The database schema as numbered migrations, applied in order in one transaction under an
 * advisory lock (several nodes starting at once apply each migration once). A database whose
 * schema is newer than this Petrel knows is refused: an older node must not write to tables whose
 * meaning changed under it. A migration is never edited once released; a change is a new one.
 */
import type { PostgresPool } from "./postgres-pool.ts";
import { inTransaction } from "./postgres-pool.ts";
import { petrelVersion } from "../../system/version.ts";

export interface Migration {
  readonly version: number;
  readonly description: string;
  readonly sql: string;
}

/** The schema, oldest first; versions are consecutive from 1. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: "the nodes of the cluster",
    sql: `
      CREATE TABLE petrel_node (
        name         text PRIMARY KEY,
        host         text NOT NULL,
        pid          integer NOT NULL,
        version      text NOT NULL,
        started_at   timestamptz NOT NULL,
        heartbeat_at timestamptz NOT NULL
      );`,
  },
  {
    version: 2,
    description: "accounts (domains, users, aliases, a change counter for LISTEN/NOTIFY); the node registry's instance and clean stop",
    sql: `
      CREATE TABLE account_domain (
        name text PRIMARY KEY
      );
      CREATE TABLE account_user (
        address    text PRIMARY KEY,
        password   text NOT NULL,
        scram      text,
        quota      bigint CHECK (quota >= 0),
        created_at timestamptz NOT NULL,
        admin      boolean NOT NULL DEFAULT false
      );
      CREATE TABLE account_alias (
        source  text PRIMARY KEY,
        targets text[] NOT NULL CHECK (cardinality(targets) > 0)
      );
      CREATE TABLE account_change (
        id      integer PRIMARY KEY CHECK (id = 1),
        version bigint NOT NULL
      );
      INSERT INTO account_change (id, version) VALUES (1, 0);
      ALTER TABLE petrel_node ADD COLUMN instance text, ADD COLUMN stopped_at timestamptz;`,
  },
  {
    version: 3,
    description: "the spool: committed messages, their body chunks, writers in flight",
    // Bodies as chunk rows rather than large objects: plain rows stream in and out with ordinary
    // queries, are removed with the message in one DELETE, and need no lo_unlink bookkeeping.
    // STORAGE EXTERNAL: mail is mostly base64 already; compressing it costs CPU for little.
    sql: `
      CREATE TABLE spool_message (
        id           text PRIMARY KEY,
        envelope     text NOT NULL,
        size         bigint NOT NULL,
        crc          bigint NOT NULL,
        chunks       integer NOT NULL,
        node         text NOT NULL,
        committed_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE TABLE spool_chunk (
        id    text NOT NULL,
        seq   integer NOT NULL,
        bytes bytea NOT NULL,
        PRIMARY KEY (id, seq)
      );
      ALTER TABLE spool_chunk ALTER COLUMN bytes SET STORAGE EXTERNAL;
      CREATE TABLE spool_writer (
        id         text PRIMARY KEY,
        node       text NOT NULL,
        touched_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE INDEX spool_writer_touched ON spool_writer (touched_at);`,
  },
  {
    version: 4,
    description: "the shared queue: message state with leases, destination slots, the reconcile job",
    // postgres-queue-store.ts and postgres-destination-slots.ts say what each column means.
    sql: `
      CREATE TABLE queue_message (
        id          text PRIMARY KEY,
        arrival     bigint NOT NULL,
        sender      text NOT NULL,
        size        bigint,
        held        boolean NOT NULL,
        hold_reason text,
        due         bigint,
        tried       boolean NOT NULL,
        retry_at    bigint,
        recipients  text NOT NULL,
        w_domain    text[] NOT NULL,
        w_status    text[] NOT NULL,
        w_count     integer[] NOT NULL,
        lease_node  text,
        lease_until bigint,
        request     text
      );
      CREATE INDEX queue_message_due ON queue_message (tried, due) WHERE lease_node IS NULL AND NOT held AND due IS NOT NULL;
      CREATE INDEX queue_message_lease ON queue_message (lease_until) WHERE lease_node IS NOT NULL;
      CREATE INDEX queue_message_held ON queue_message (id) WHERE held;
      CREATE TABLE queue_destination_slot (
        destination text NOT NULL,
        node        text NOT NULL,
        slots       integer NOT NULL,
        lease_until bigint NOT NULL,
        PRIMARY KEY (destination, node)
      );
      CREATE TABLE queue_reconcile (
        one         boolean PRIMARY KEY DEFAULT true CHECK (one),
        node        text,
        lease_until bigint,
        finished_at bigint
      );
      INSERT INTO queue_reconcile (one) VALUES (true);`,
  },
  {
    version: 5,
    description: "TLS-RPT day counts of the whole cluster, and who sends each day's reports",
    // postgres-tls-rpt-counts.ts says what each column means. Policies and failure groups are
    // keyed by a hash of their canonical JSON: a TLSA policy's records can outgrow an index entry.
    sql: `
      CREATE TABLE tlsrpt_day (
        day    text PRIMARY KEY,
        closed boolean NOT NULL DEFAULT false,
        done   boolean NOT NULL DEFAULT false
      );
      CREATE TABLE tlsrpt_domain (
        day        text NOT NULL REFERENCES tlsrpt_day ON DELETE CASCADE,
        domain     text NOT NULL,
        sent       boolean NOT NULL DEFAULT false,
        holder     text,
        hold_until bigint,
        report_id  text,
        PRIMARY KEY (day, domain)
      );
      CREATE TABLE tlsrpt_policy (
        day        text NOT NULL,
        domain     text NOT NULL,
        policy_key text NOT NULL,
        policy     text NOT NULL,
        successful bigint NOT NULL,
        failed     bigint NOT NULL,
        PRIMARY KEY (day, domain, policy_key),
        FOREIGN KEY (day, domain) REFERENCES tlsrpt_domain ON DELETE CASCADE
      );
      CREATE TABLE tlsrpt_failure (
        day         text NOT NULL,
        domain      text NOT NULL,
        policy_key  text NOT NULL,
        failure_key text NOT NULL,
        failure     text NOT NULL,
        count       bigint NOT NULL,
        PRIMARY KEY (day, domain, policy_key, failure_key),
        FOREIGN KEY (day, domain, policy_key) REFERENCES tlsrpt_policy ON DELETE CASCADE
      );`,
  },
  {
    version: 6,
    description: "ACME shared by the nodes: the account key, the certificate, the open challenges, the lease to order",
    // storage/postgres/acme-store.ts and acme-lease.ts say what each column means.
    sql: `
      CREATE TABLE acme_account (
        one         boolean PRIMARY KEY DEFAULT true CHECK (one),
        private_key text NOT NULL,
        created_at  timestamptz NOT NULL DEFAULT now()
      );
      CREATE TABLE acme_certificate (
        one        boolean PRIMARY KEY DEFAULT true CHECK (one),
        key_pem    text NOT NULL,
        chain_pem  text NOT NULL,
        serial     text NOT NULL,
        not_after  timestamptz NOT NULL,
        node       text NOT NULL,
        stored_at  timestamptz NOT NULL DEFAULT now()
      );
      CREATE TABLE acme_challenge (
        type        text NOT NULL CHECK (type IN ('http-01', 'tls-alpn-01')),
        key         text NOT NULL,
        answer      text NOT NULL,
        private_key text,
        node        text NOT NULL,
        created_at  timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (type, key)
      );
      CREATE TABLE acme_order_lease (
        one         boolean PRIMARY KEY DEFAULT true CHECK (one),
        node        text,
        lease_until bigint
      );
      INSERT INTO acme_order_lease (one) VALUES (true);`,
  },
  {
    version: 7,
    description: "DKIM keys shared by the nodes, one per (domain, selector)",
    // storage/postgres/dkim-key-store.ts says what each column means.
    sql: `
      CREATE TABLE dkim_key (
        domain      text NOT NULL,
        selector    text NOT NULL,
        private_key text NOT NULL,
        public_key  text NOT NULL,
        node        text NOT NULL,
        created_at  timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (domain, selector)
      );`,
  },
  {
    version: 8,
    description: "AUTH failures and bans shared by the nodes",
    // Times are milliseconds of the nodes' clocks, as the leases are. Rows expire: a failure row
    // when its window (limits.authBanTime) is over, a ban when its time is; the writer deletes
    // them, so both tables hold only the addresses of the last window.
    sql: `
      CREATE TABLE auth_failure (
        address  text PRIMARY KEY,
        failures integer NOT NULL,
        since    bigint NOT NULL
      );
      CREATE INDEX auth_failure_since ON auth_failure (since);
      CREATE TABLE auth_ban (
        address text PRIMARY KEY,
        until   bigint NOT NULL
      );
      CREATE INDEX auth_ban_until ON auth_ban (until);`,
  },
];

/** Any number; the one lock every node takes while it migrates ("petrel" in ASCII). */
const MIGRATION_LOCK = 0x70657472656c;

export class SchemaTooNew extends Error {
  override readonly name = "SchemaTooNew";
}

export interface SchemaState {
  /** The version the database is at (0: no Petrel schema yet). */
  readonly current: number;
  /** The newest version this Petrel knows. */
  readonly latest: number;
}

export async function schemaState(pool: PostgresPool): Promise<SchemaState> {
  const exists = await pool.query<{ t: string | null }>("SELECT to_regclass('petrel_schema')::text AS t");
  const current = exists.rows[0]?.t == null ? 0 : Number((await pool.query<{ v: number | null }>("SELECT max(version) AS v FROM petrel_schema")).rows[0]?.v ?? 0);
  return { current, latest: latestVersion() };
}

/** Bring the database to this Petrel's schema; says which versions were applied. Throws SchemaTooNew. */
export async function migrate(pool: PostgresPool, migrations: readonly Migration[] = MIGRATIONS): Promise<number[]> {
  return inTransaction(pool, async (client) => {
    await client.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK]);
    await client.query(`CREATE TABLE IF NOT EXISTS petrel_schema (
      version integer PRIMARY KEY, description text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now(), applied_by text NOT NULL)`);
    const current = Number((await client.query<{ v: number | null }>("SELECT max(version) AS v FROM petrel_schema")).rows[0]?.v ?? 0);
    const latest = migrations.length === 0 ? 0 : migrations[migrations.length - 1].version;
    if (current > latest) {
      throw new SchemaTooNew(`the database schema is version ${current}, newer than this Petrel ${petrelVersion()} knows (${latest}): upgrade this node before it uses the database`);
    }
    const applied: number[] = [];
    for (const m of migrations) {
      if (m.version <= current) continue;
      await client.query(m.sql);
      await client.query("INSERT INTO petrel_schema (version, description, applied_by) VALUES ($1, $2, $3)", [m.version, m.description, `petrel ${petrelVersion()}`]);
      applied.push(m.version);
    }
    return applied;
  });
}

function latestVersion(): number {
  return MIGRATIONS[MIGRATIONS.length - 1].version;
}
