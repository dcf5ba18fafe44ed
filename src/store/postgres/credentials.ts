/**
 * Kept credentials (already encrypted by the caller) in `credentials`, and `exclusive`: one holder of a credential at
 * a time across every daemon on the store — in this process a queue, across processes a transaction-scoped advisory
 * lock held for the duration of `fn` (on its own connection, so `fn` may use the store meanwhile).
 */
import { StoreError } from '../errors.js';
import { type CredentialStore, type KeptCredential } from '../ports.js';
import type { PgContext } from './context.js';

/** How long a holder may keep a credential, and another wait for it. */
const HOLD_S = 60;

export class PgCredentialStore implements CredentialStore {
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(private readonly ctx: PgContext) {}

  async get(id: string): Promise<KeptCredential | null> {
    const { rows } = await this.ctx.db.query<{ credential: KeptCredential }>(
      `SELECT credential FROM ${this.ctx.s}.credentials WHERE id = $1`,
      [id],
    );
    return rows[0]?.credential ?? null;
  }

  async put(credential: KeptCredential): Promise<void> {
    if (!/^[a-z0-9]+\/[0-9a-f]{12}$/.test(credential.id))
      throw new StoreError('credential-id', `not a credential id: ${JSON.stringify(credential.id)}`);
    await this.ctx.write((c) =>
      c.query(
        `INSERT INTO ${this.ctx.s}.credentials (id, credential) VALUES ($1, $2)
         ON CONFLICT (id) DO UPDATE SET credential = excluded.credential, updated_at = now()`,
        [credential.id, JSON.stringify(credential)],
      ),
    );
  }

  async remove(id: string): Promise<void> {
    await this.ctx.write((c) => c.query(`DELETE FROM ${this.ctx.s}.credentials WHERE id = $1`, [id]));
  }

  exclusive<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const across = () =>
      this.ctx.db.transaction(async (c) => {
        // waiting for another daemon's refresh, and holding the lock through ours (an HTTP exchange), take longer
        // than a statement may
        await c.query(
          `SET LOCAL statement_timeout = '${HOLD_S}s'; SET LOCAL lock_timeout = '${HOLD_S}s'; ` +
            `SET LOCAL idle_in_transaction_session_timeout = '${2 * HOLD_S}s'`,
        );
        // node-postgres reads a per-query `query_timeout` (not in its types)
        const wait = {
          text: `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`,
          values: [`mailctl-credential:${this.ctx.schema}:${id}`],
          query_timeout: (HOLD_S + 1) * 1000,
        };
        await c.query(wait);
        return fn();
      });
    const previous = this.locks.get(id) ?? Promise.resolve();
    const run = previous.then(across, across);
    const settled = run.catch(() => undefined);
    this.locks.set(id, settled);
    void settled.then(() => this.locks.get(id) === settled && this.locks.delete(id));
    return run;
  }
}
