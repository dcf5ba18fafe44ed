/**
 * The store's tables, created and upgraded by versioned, forward-only migrations in the store's own PostgreSQL schema.
 * `migrate` runs them in one transaction under `pg_advisory_xact_lock` (two daemons starting together: the second
 * waits, then finds nothing to do) and records each in `migrations`; a schema at a version newer than this mailctl
 * knows is refused. A migration is never edited once released: a change is a new entry at the end.
 *
 * Built to grow into several daemons on one store (per-mailbox leases): `leases` is keyed by name with an epoch that
 * only ever grows (the fencing token every write checks), checkpoints and ledger are keyed by mailbox, outbox rows by
 * id with their server. Documents the store reads back whole (checkpoint, outbox message, events) are `json`, not
 * `jsonb`: they are never queried inside, and `json` keeps a `\u0000` that a message header may carry (jsonb refuses
 * it).
 */
import { escapeIdentifier, type PoolClient } from 'pg';
import { StoreError } from '../errors.js';

interface Migration {
  version: number;
  name: string;
  /** SQL with `{s}` for the (quoted) schema. */
  sql: string;
}

const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial',
    sql: `
      CREATE TABLE {s}.leases (
        name text PRIMARY KEY,
        holder text NOT NULL,
        pid integer NOT NULL,
        host text NOT NULL,
        epoch bigint NOT NULL,
        acquired_at timestamptz NOT NULL,
        renewed_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL
      );
      CREATE TABLE {s}.settings (
        name text PRIMARY KEY,
        value json NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE TABLE {s}.applied (
        id boolean PRIMARY KEY DEFAULT true CHECK (id),
        record json NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE TABLE {s}.apply_log (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        entry json NOT NULL
      );
      CREATE TABLE {s}.checkpoints (
        server text PRIMARY KEY,
        identity text NOT NULL,
        folder text NOT NULL,
        checkpoint json NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE TABLE {s}.delivered (
        server text NOT NULL,
        hash text NOT NULL,
        message_id text NOT NULL,
        seq bigint GENERATED ALWAYS AS IDENTITY,
        PRIMARY KEY (server, hash, message_id)
      );
      CREATE INDEX delivered_server_seq ON {s}.delivered (server, seq);
      CREATE TABLE {s}.outbox (
        id text PRIMARY KEY,
        seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
        server text NOT NULL,
        message json,
        last_event json,
        finished_at timestamptz
      );
      CREATE INDEX outbox_finished ON {s}.outbox (finished_at) WHERE finished_at IS NOT NULL;
      CREATE TABLE {s}.credentials (
        id text PRIMARY KEY,
        credential json NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE TABLE {s}.queue_tables (
        name text PRIMARY KEY,
        created_at timestamptz NOT NULL DEFAULT now()
      );
    `,
  },
  {
    version: 2,
    name: 'replicas',
    // the group: one row per replica (a token per process: a second live process with the same id is refused), the
    // applied record's generation (followers run what it names), and a compact snapshot per replica for `status`
    sql: `
      CREATE TABLE {s}.replicas (
        id text PRIMARY KEY,
        token text NOT NULL,
        instance text NOT NULL,
        pid integer NOT NULL,
        host text NOT NULL,
        url text NOT NULL,
        sink_shared boolean NOT NULL,
        started_at timestamptz NOT NULL,
        heartbeat_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL,
        snapshot json
      );
      CREATE INDEX leases_holder ON {s}.leases (holder);
      ALTER TABLE {s}.applied ADD COLUMN generation bigint NOT NULL DEFAULT 1;
    `,
  },
];

export const LATEST_VERSION = MIGRATIONS.at(-1)!.version;

/** A key for `pg_advisory_xact_lock` that only migrations of this schema take. */
const lockKey = (schema: string) => `mailctl-migrate:${schema}`;

/** The version the schema is at (0: no store there yet); reads only. */
async function schemaVersion(client: PoolClient, schema: string): Promise<number> {
  const table = `${escapeIdentifier(schema)}.migrations`;
  const { rows } = await client.query<{ present: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS present`, [table]);
  if (!rows[0]?.present) return 0;
  const max = await client.query<{ version: number | null }>(`SELECT max(version)::int AS version FROM ${table}`);
  return max.rows[0]?.version ?? 0;
}

function newerSchemaError(schema: string, location: string, found: number): StoreError {
  return new StoreError(
    'store-schema-newer',
    `the store ${location} has schema "${schema}" at version ${found}, newer than this mailctl knows ` +
      `(${LATEST_VERSION}): upgrade mailctl, or use another --store-schema`,
  );
}

/**
 * Brings the schema to LATEST_VERSION inside the caller's transaction; returns the versions it applied. Throws
 * StoreError `store-schema-newer` when the schema is ahead of this mailctl.
 */
export async function migrate(
  client: PoolClient,
  schema: string,
  location: string,
): Promise<{ from: number; to: number }> {
  const s = escapeIdentifier(schema);
  // DDL on a large table may take longer than a daemon's statements are allowed to
  await client.query(`SET LOCAL statement_timeout = '120s'`);
  await client.query(`SET LOCAL lock_timeout = '60s'`);
  await client.query(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, [lockKey(schema)]);
  await client.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
  await client.query(
    `CREATE TABLE IF NOT EXISTS ${s}.migrations ` +
      '(version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())',
  );
  const from = await schemaVersion(client, schema);
  if (from > LATEST_VERSION) throw newerSchemaError(schema, location, from);
  for (const m of MIGRATIONS.filter((m) => m.version > from)) {
    await client.query(m.sql.replaceAll('{s}', s));
    await client.query(`INSERT INTO ${s}.migrations (version, name) VALUES ($1, $2)`, [m.version, m.name]);
  }
  return { from, to: LATEST_VERSION };
}
