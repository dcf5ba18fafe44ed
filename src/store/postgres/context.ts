/**
 * What every part of the PostgreSQL store shares: the pool, the schema, and what fences its writes — the store-wide
 * lease of one process that holds the store alone (`mailctl store import`), or, for the replicas of a group, the lease
 * of the mailbox (or of the reconciler) that a write is about.
 */
import { escapeIdentifier, type PoolClient } from 'pg';
import type { Db } from './db.js';
import type { FencedError } from '../errors.js';
import type { StoreLease } from './lease.js';

/**
 * What the other parts of the store need from the group (store/postgres/group.ts): how a write about one mailbox (or
 * the reconciler) is fenced by the lease row that must still be this replica's, and what a write records of it.
 */
export interface LeaseFence {
  /** This replica's id (once joined). */
  readonly replicaId: string;
  /** The epoch this process holds lease `name` under, or null. */
  epochOf(name: string): number | null;
  /** `NOTIFY` text for the applied record's generation and for accepted outbound mail (inside their transactions). */
  notice(what: 'applied' | `outbox:${string}`): string;
  /** A query selecting a row only while this replica holds lease `name`; its parameters are numbered from `first`. */
  fenceOf(name: string, first: number): { sql: string; values: unknown[] };
  /** The error for a write refused because lease `name` has a newer holder. */
  fencedNow(name: string): FencedError;
  /**
   * Throws fencedNow(name) unless this replica holds lease `name`, locking the lease row for `client`'s transaction.
   */
  fence(client: PoolClient, name: string): Promise<void>;
}

export class PgContext {
  /** The schema, quoted for SQL text. */
  readonly s: string;
  /** Set once this process holds the store alone (lock()); from then on every write checks it. */
  lease: StoreLease | null = null;
  /** Set once this process joined the store's group: writes about a mailbox check that mailbox's lease. */
  group: LeaseFence | null = null;

  constructor(
    readonly db: Db,
    readonly schema: string,
  ) {
    this.s = escapeIdentifier(schema);
  }

  /**
   * `fn` in one transaction that commits only while this process holds the store (alone), or, in a group, the lease
   * named `about` (a server id, or `reconciler`); a write about nothing in particular is not fenced in a group.
   */
  write<T>(fn: (client: PoolClient) => Promise<T>, about?: string): Promise<T> {
    return this.db.transaction(async (client) => {
      await this.lease?.fence(client);
      if (this.group && about !== undefined) await this.group.fence(client, about);
      return fn(client);
    });
  }

  /**
   * One data-modifying statement (an INSERT … SELECT or an UPDATE with a WHERE, no RETURNING) that writes only while
   * the fence holds (as `write`), fenced in the statement itself: `statement(held)` puts the condition `held` into its
   * WHERE. One round trip instead of a transaction's four, for the writes that come by the hundred (the outbox).
   */
  async writeOne(statement: (held: string) => string, values: unknown[], about?: string): Promise<void> {
    const n = values.length;
    const fence = this.lease
      ? { sql: this.lease.fenceQuery(n + 1), values: this.lease.fenceValues() }
      : this.group && about !== undefined
        ? this.group.fenceOf(about, n + 1)
        : null;
    if (!fence) {
      await this.db.query(statement('true'), values);
      return;
    }
    const { rows } = await this.db.query<{ held: boolean }>(
      `WITH fence AS (${fence.sql}), done AS (${statement('EXISTS (SELECT 1 FROM fence)')})
       SELECT EXISTS (SELECT 1 FROM fence) AS held`,
      [...values, ...fence.values],
    );
    if (rows[0]?.held) return;
    throw this.lease ? this.lease.lostNow() : this.group!.fencedNow(about!);
  }
}
