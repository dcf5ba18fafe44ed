/**
 * Inbound state in the store's schema: `checkpoints` (one row per mailbox: the checkpoint with its copy intent and
 * quarantine, as the file store writes it), `delivered` (the ledger: Message-ID and content hash, the newest
 * LEDGER_MAX_ENTRIES per mailbox or more), and the queue tables of the PostgreSQL sink. A batch's commit writes all of
 * them in one transaction (fenced by the lease), then `NOTIFY mailctl_inbound` once per queue that got rows: PostgreSQL
 * sends notifications at commit, so a consumer never wakes for rows it cannot see yet.
 */
import { escapeIdentifier, type PoolClient } from 'pg';
import type { QuarantineListing } from '../../api/quarantine.js';
import { STORE_TABLES } from '../../config/sinks.js';
import { fromStored, toStored, type StoredCheckpoint } from '../checkpoint-format.js';
import { StoreError } from '../errors.js';
import {
  CHECKPOINT_FORMAT_VERSION,
  LEDGER_MAX_ENTRIES,
  type BatchCommit,
  type Checkpoint,
  type InboundStore,
  type LedgerEntry,
  type MailboxRef,
  type QueueRow,
} from '../ports.js';
import { quarantineListing, releaseInCheckpoint } from '../quarantine.js';
import type { PgContext } from './context.js';
import { IDENTIFIER } from './url.js';

/** The channel consumers LISTEN on; the payload is `{"schema":…,"table":…,"queue":…}`. */
export const INBOUND_CHANNEL = 'mailctl_inbound';

/** A queue table's columns (README: "The PostgreSQL sink"); `claimed_*` belong to consumers. */
const QUEUE_COLUMNS: readonly [string, string][] = [
  ['key', 'text PRIMARY KEY'],
  ['queue', 'text NOT NULL'],
  ['server', 'text NOT NULL'],
  ['folder', 'text NOT NULL'],
  ['uid_validity', 'bigint NOT NULL'],
  ['uid', 'bigint NOT NULL'],
  ['message_id', 'text'],
  ['from_addr', 'text'],
  ['to_addrs', 'text[] NOT NULL'],
  ['cc_addrs', 'text[] NOT NULL'],
  ['subject', 'text NOT NULL'],
  ['date', 'timestamptz'],
  ['auto_reply', 'boolean NOT NULL'],
  ['received_at', 'timestamptz NOT NULL'],
  ['source', 'bytea NOT NULL'],
  ['claimed_at', 'timestamptz'],
  ['claimed_by', 'text'],
  ['delivered_by', 'text'],
  ['lease_epoch', 'bigint'],
];
/** Added after the first release: a table made before gets them at the next apply. */
const ADDED_COLUMNS = QUEUE_COLUMNS.slice(17);
const INSERTED = [...QUEUE_COLUMNS.slice(0, 15), ...ADDED_COLUMNS].map(([name]) => name);
/** One INSERT carries at most this many rows or bytes of sources (a batch may need several, in one transaction). */
const ROWS_PER_INSERT = 100;
const BYTES_PER_INSERT = 16 * 1024 * 1024;

/** As the file ledger normalises it: a Message-ID is one token (and text holds no NUL). */
export const ledgerId = (messageId: string | null): string => (messageId ?? '').replace(/[\s\0]+/g, '');

/** Who delivered a row: the replica and the epoch of its lease on the mailbox (null outside a group). */
interface Deliverer {
  replica: string | null;
  epoch: number | null;
}

const rowValues = (r: QueueRow, by: Deliverer): unknown[] => [
  r.key,
  r.queue,
  r.server,
  r.folder,
  r.uidValidity,
  r.uid,
  r.messageId,
  r.from[0] ?? null,
  r.to,
  r.cc,
  r.subject,
  r.date,
  r.autoReply,
  r.receivedAt,
  Buffer.from(r.source.buffer, r.source.byteOffset, r.source.byteLength),
  by.replica,
  by.epoch,
];

/** Rows in INSERTs of at most ROWS_PER_INSERT rows and BYTES_PER_INSERT bytes (a single larger row goes alone). */
function chunks(rows: readonly QueueRow[]): QueueRow[][] {
  const out: QueueRow[][] = [];
  let bytes = 0;
  for (const row of rows) {
    const last = out.at(-1);
    if (!last || last.length >= ROWS_PER_INSERT || bytes + row.source.byteLength > BYTES_PER_INSERT) {
      out.push([row]);
      bytes = row.source.byteLength;
    } else {
      last.push(row);
      bytes += row.source.byteLength;
    }
  }
  return out;
}

export class PgInboundStore implements InboundStore {
  /** Ledger entries added per mailbox since this process last trimmed it. */
  private readonly sinceTrim = new Map<string, number>();
  /**
   * The checkpoint this replica last committed per mailbox, with the epoch of its lease then: while it still holds
   * that lease no one else can have written it, so a poll that finds nothing new reads nothing from the database.
   */
  private readonly committed = new Map<string, { epoch: number; stored: string }>();

  constructor(private readonly ctx: PgContext) {}

  private table(name: string): string {
    return `${this.ctx.s}.${escapeIdentifier(name)}`;
  }

  async prepareQueue(table: string): Promise<void> {
    if (!IDENTIFIER.test(table) || (STORE_TABLES as readonly string[]).includes(table))
      throw new StoreError('queue-table', `"${table}" cannot be a queue table (a name like inbound_messages)`);
    const t = this.table(table);
    await this.ctx.write(async (c) => {
      await c.query(`CREATE TABLE IF NOT EXISTS ${t} (${QUEUE_COLUMNS.map(([n, type]) => `${n} ${type}`).join(', ')})`);
      for (const [n, type] of ADDED_COLUMNS) await c.query(`ALTER TABLE ${t} ADD COLUMN IF NOT EXISTS ${n} ${type}`);
      await c.query(
        `CREATE INDEX IF NOT EXISTS ${escapeIdentifier(`${table.slice(0, 50)}_unclaimed`)} ON ${t} ` +
          '(queue, received_at) WHERE claimed_at IS NULL',
      );
      // a table of that name made by someone else would refuse every row: say so at apply, not at the first message
      const { rows } = await c.query<{ column_name: string }>(
        `SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2`,
        [this.ctx.schema, table],
      );
      const present = new Set(rows.map((r) => r.column_name));
      const missing = QUEUE_COLUMNS.map(([n]) => n).filter((n) => !present.has(n));
      if (missing.length)
        throw new StoreError(
          'queue-table',
          `the table ${this.ctx.schema}.${table} exists but lacks the columns ${missing.join(', ')}: it is ` +
            'not a mailctl queue table; give the flow another table',
        );
      await c.query(`INSERT INTO ${this.ctx.s}.queue_tables (name) VALUES ($1) ON CONFLICT DO NOTHING`, [table]);
    });
  }

  async load(mailbox: MailboxRef): Promise<Checkpoint | null> {
    const cached = this.committed.get(mailbox.server);
    const epoch = this.ctx.group?.epochOf(mailbox.server) ?? null;
    if (cached && cached.epoch === epoch) {
      const cp = fromStored(JSON.parse(cached.stored) as StoredCheckpoint);
      return cp.identity === mailbox.identity && cp.folder === mailbox.folder ? cp : null;
    }
    this.committed.delete(mailbox.server);
    const { rows } = await this.ctx.db.query<{ identity: string; folder: string; checkpoint: StoredCheckpoint }>(
      `SELECT identity, folder, checkpoint FROM ${this.ctx.s}.checkpoints WHERE server = $1`,
      [mailbox.server],
    );
    const row = rows[0];
    if (!row || row.identity !== mailbox.identity || row.folder !== mailbox.folder) return null;
    const version: unknown = row.checkpoint.formatVersion;
    if (version !== CHECKPOINT_FORMAT_VERSION)
      throw new StoreError(
        'checkpoint-format',
        `the checkpoint of ${mailbox.server} has formatVersion ${String(version)}; this mailctl reads ` +
          `${String(CHECKPOINT_FORMAT_VERSION)}`,
      );
    return fromStored(row.checkpoint);
  }

  private async saveCheckpoint(c: PoolClient, server: string, cp: Checkpoint): Promise<string> {
    cp.updatedAt = new Date().toISOString();
    const stored = JSON.stringify(toStored(cp));
    await c.query(
      `INSERT INTO ${this.ctx.s}.checkpoints (server, identity, folder, checkpoint) VALUES ($1, $2, $3, $4)
       ON CONFLICT (server) DO UPDATE SET identity = excluded.identity, folder = excluded.folder,
         checkpoint = excluded.checkpoint, updated_at = now()`,
      [server, cp.identity, cp.folder, stored],
    );
    return stored;
  }

  /** Remembers what was committed under the lease's epoch (a commit without a lease forgets it). */
  private remember(server: string, stored: string): void {
    const epoch = this.ctx.group?.epochOf(server) ?? null;
    if (epoch === null) this.committed.delete(server);
    else this.committed.set(server, { epoch, stored });
  }

  private async insertRows(c: PoolClient, table: string, rows: readonly QueueRow[], by: Deliverer): Promise<void> {
    for (const chunk of chunks(rows)) {
      const values = chunk.flatMap((r) => rowValues(r, by));
      const tuples = chunk.map((_, i) => `(${INSERTED.map((_, j) => `$${i * INSERTED.length + j + 1}`).join(', ')})`);
      // a key that is there already was delivered by a commit whose answer was lost: once is enough
      await c.query(
        `INSERT INTO ${this.table(table)} (${INSERTED.join(', ')}) VALUES ${tuples.join(', ')} ON CONFLICT ` +
          '(key) DO NOTHING',
        values,
      );
    }
  }

  async commit(mailbox: MailboxRef, batch: BatchCommit): Promise<void> {
    const delivered = batch.delivered ?? [];
    const byTable = new Map<string, QueueRow[]>();
    for (const row of batch.rows ?? []) byTable.set(row.table, [...(byTable.get(row.table) ?? []), row]);
    const trim = (this.sinceTrim.get(mailbox.server) ?? 0) + delivered.length >= LEDGER_MAX_ENTRIES;
    const by: Deliverer = {
      replica: this.ctx.group ? this.ctx.group.replicaId : null,
      epoch: this.ctx.group?.epochOf(mailbox.server) ?? null,
    };
    this.committed.delete(mailbox.server);
    const stored = await this.ctx.write(async (c) => {
      const stored = await this.saveCheckpoint(c, mailbox.server, batch.checkpoint);
      if (delivered.length)
        await c.query(
          `INSERT INTO ${this.ctx.s}.delivered (server, hash, message_id)
           SELECT $1, h, m FROM unnest($2::text[], $3::text[]) AS x(h, m) ON CONFLICT DO NOTHING`,
          [mailbox.server, delivered.map((e) => e.hash), delivered.map((e) => ledgerId(e.messageId))],
        );
      if (trim)
        await c.query(
          `DELETE FROM ${this.ctx.s}.delivered WHERE server = $1 AND seq < (
             SELECT min(seq) FROM (
               SELECT seq FROM ${this.ctx.s}.delivered WHERE server = $1 ORDER BY seq DESC LIMIT $2
             ) newest)`,
          [mailbox.server, LEDGER_MAX_ENTRIES],
        );
      const notices = new Set<string>();
      for (const [table, rows] of byTable) {
        await this.insertRows(c, table, rows, by);
        for (const r of rows) notices.add(JSON.stringify({ schema: this.ctx.schema, table, queue: r.queue }));
      }
      if (notices.size)
        await c.query(`SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload`, [
          INBOUND_CHANNEL,
          [...notices],
        ]);
      return stored;
    }, mailbox.server);
    this.remember(mailbox.server, stored);
    this.sinceTrim.set(mailbox.server, trim ? 0 : (this.sinceTrim.get(mailbox.server) ?? 0) + delivered.length);
  }

  async wasDelivered(mailbox: MailboxRef, entry: LedgerEntry): Promise<boolean> {
    const { rowCount } = await this.ctx.db.query(
      `SELECT 1 FROM ${this.ctx.s}.delivered WHERE server = $1 AND hash = $2 AND message_id = $3`,
      [mailbox.server, entry.hash, ledgerId(entry.messageId)],
    );
    return rowCount !== 0;
  }

  async messageIdOf(key: string): Promise<string | null> {
    const { rows: tables } = await this.ctx.db.query<{ name: string }>(
      `SELECT name FROM ${this.ctx.s}.queue_tables WHERE to_regclass(quote_ident($1) || '.' || ` +
        'quote_ident(name)) IS NOT NULL ORDER BY name',
      [this.ctx.schema],
    );
    if (!tables.length) return null;
    const union = tables.map((t) => `SELECT message_id FROM ${this.table(t.name)} WHERE key = $1`).join(' UNION ALL ');
    const { rows } = await this.ctx.db.query<{ message_id: string | null }>(`${union} LIMIT 1`, [key]);
    return rows[0]?.message_id ?? null;
  }

  private async checkpoints(c?: PoolClient, server?: string, forUpdate = false): Promise<Checkpoint[]> {
    const sql =
      `SELECT checkpoint FROM ${this.ctx.s}.checkpoints ${server ? 'WHERE server = $1' : ''} ORDER BY server ` +
      `${forUpdate ? 'FOR UPDATE' : ''}`;
    const params = server ? [server] : [];
    const { rows } = c
      ? await c.query<{ checkpoint: StoredCheckpoint }>(sql, params)
      : await this.ctx.db.query<{ checkpoint: StoredCheckpoint }>(sql, params);
    return rows
      .filter((r) => r.checkpoint.formatVersion === CHECKPOINT_FORMAT_VERSION)
      .map((r) => fromStored(r.checkpoint));
  }

  async listQuarantine(server?: string): Promise<QuarantineListing[]> {
    return (await this.checkpoints(undefined, server)).flatMap(quarantineListing);
  }

  async release(key: string): Promise<string | null> {
    // found first, then changed under the fence of that mailbox's lease (in a group, its owner releases)
    const server = (await this.listQuarantine()).find((q) => q.key === key)?.server;
    if (server === undefined) return null;
    this.committed.delete(server);
    const stored = await this.ctx.write(async (c) => {
      const [cp] = await this.checkpoints(c, server, true);
      if (!cp || !releaseInCheckpoint(cp, key)) return null;
      return this.saveCheckpoint(c, cp.server, cp);
    }, server);
    if (stored === null) return null;
    this.remember(server, stored);
    return server;
  }
}
