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
}
