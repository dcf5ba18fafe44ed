/** What every part of the PostgreSQL store shares: the pool, the schema, and the lease that fences its writes. */
import { escapeIdentifier, type PoolClient } from 'pg';
import type { Db } from './db.js';
import type { StoreLease } from './lease.js';

export class PgContext {
  /** The schema, quoted for SQL text. */
  readonly s: string;
  /** Set once this process holds the store (lock()); from then on every write checks it. */
  lease: StoreLease | null = null;

  constructor(
    readonly db: Db,
    readonly schema: string,
  ) {
    this.s = escapeIdentifier(schema);
  }

  /** `fn` in one transaction that commits only while this daemon holds the store. */
  write<T>(fn: (client: PoolClient) => Promise<T>): Promise<T> {
    return this.db.transaction(async (client) => {
      await this.lease?.fence(client);
      return fn(client);
    });
  }

  /**
   * One data-modifying statement (an INSERT … SELECT or an UPDATE with a WHERE, no RETURNING) that writes only while
   * this daemon holds the store, fenced in the statement itself: `statement(held)` puts the condition `held` into its
   * WHERE. One round trip instead of a transaction's four, for the writes that come by the hundred (the outbox).
   */
  async writeOne(statement: (held: string) => string, values: unknown[]): Promise<void> {
    const lease = this.lease;
    if (!lease) {
      await this.db.query(statement('true'), values);
      return;
    }
    const n = values.length;
    const { rows } = await this.db.query<{ held: boolean }>(
      `WITH fence AS (${lease.fenceQuery(n + 1)}), done AS (${statement('EXISTS (SELECT 1 FROM fence)')})
       SELECT EXISTS (SELECT 1 FROM fence) AS held`,
      [...values, ...lease.fenceValues()],
    );
    if (!rows[0]?.held) throw lease.lostNow();
  }
}
