/**
 * The store-wide lease: one daemon per store and schema. A lease is a row in `leases` (name, holder, epoch, expiry by
 * the database's clock), never a session lock: it survives the holder's connections coming and going (a database
 * restart), and a holder that is gone is recognised by its expiry, not by a socket that may hang for hours. Taking it
 * bumps the epoch; every write of the store checks holder and epoch in its own transaction (`fence`, FOR SHARE, so a
 * takeover waits for writes in flight and later ones fail). The holder renews it every TTL/3.
 *
 * A lease is taken when it is free, expired, or held under this daemon's own name: the instance id of its local state
 * folder, whose lock proves the previous daemon of that folder is gone (a restart after a crash takes over at once).
 * The replicas issue turns the one `store` lease into one per mailbox with the same row, epoch and fence.
 */
import { escapeIdentifier, type PoolClient } from 'pg';
import { LeaseLostError, LockHeldError } from '../errors.js';
import { type StoreLock } from '../ports.js';
import type { Db } from './db.js';

const STORE_LEASE = 'store';
const LEASE_TTL_S = 15;
const RENEW_EVERY_MS = (LEASE_TTL_S * 1000) / 3;

export interface Holder {
  /** The instance id of the daemon's local state folder. */
  id: string;
  pid: number;
  host: string;
}

interface HeldRow {
  holder: string;
  pid: number;
  host: string;
  acquired_at: Date;
}

export class StoreLease implements StoreLock {
  private timer: NodeJS.Timeout | null = null;
  private lost: LeaseLostError | null = null;
  private readonly listeners = new Set<(err: LeaseLostError) => void>();

  private constructor(
    private readonly db: Db,
    private readonly table: string,
    readonly holder: Holder,
    readonly epoch: number,
  ) {}

  /** Takes the lease or throws LockHeldError naming its holder. */
  static async acquire(db: Db, schema: string, holder: Holder): Promise<StoreLease> {
    const table = `${escapeIdentifier(schema)}.leases`;
    const taken = await db.query<{ epoch: string }>(
      `INSERT INTO ${table} AS l (name, holder, pid, host, epoch, acquired_at, renewed_at, expires_at)
       VALUES ($1, $2, $3, $4, 1, now(), now(), now() + make_interval(secs => $5))
       ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, pid = excluded.pid, host = excluded.host,
         epoch = l.epoch + 1, acquired_at = now(), renewed_at = now(), expires_at = excluded.expires_at
       WHERE l.expires_at <= now() OR l.holder = excluded.holder
       RETURNING epoch`,
      [STORE_LEASE, holder.id, holder.pid, holder.host, LEASE_TTL_S],
    );
    const row = taken.rows[0];
    if (!row) {
      const held = await db.query<HeldRow>(`SELECT holder, pid, host, acquired_at FROM ${table} WHERE name = $1`, [
        STORE_LEASE,
      ]);
      const h = held.rows[0];
      throw new LockHeldError(
        { pid: h?.pid ?? 0, host: h?.host ?? '?', since: h ? h.acquired_at.toISOString() : '?' },
        `the store ${db.location}`,
      );
    }
    const lease = new StoreLease(db, table, holder, Number(row.epoch));
    lease.timer = setInterval(() => void lease.renew(), RENEW_EVERY_MS).unref();
    return lease;
  }

  onLost(listener: (err: LeaseLostError) => void): void {
    if (this.lost) listener(this.lost);
    else this.listeners.add(listener);
  }

  private lose(): LeaseLostError {
    if (!this.lost) {
      this.lost = new LeaseLostError(
        `another daemon took over the store ${this.db.location} (this one held it as epoch ${this.epoch}); ` +
          'this daemon stops writing',
      );
      this.stop();
      for (const l of this.listeners) l(this.lost);
    }
    return this.lost;
  }

  /** Extends the lease; a store that cannot be reached is retried at the next tick (its health says so meanwhile). */
  async renew(): Promise<void> {
    if (this.lost) return;
    try {
      const { rowCount } = await this.db.query(
        `UPDATE ${this.table} SET renewed_at = now(), expires_at = now() + make_interval(secs => $4)
         WHERE name = $1 AND holder = $2 AND epoch = $3`,
        [STORE_LEASE, this.holder.id, this.epoch, LEASE_TTL_S],
      );
      if (rowCount === 0) this.lose();
    } catch {
      /* unavailable: tried again at the next tick; a takeover meanwhile shows at the next renewal or write (fence) */
    }
  }

  /** The fence's query, with its three parameters numbered from `first`: a row while this daemon holds the lease. */
  fenceQuery(first: number): string {
    return (
      `SELECT 1 FROM ${this.table} WHERE name = $${first} AND holder = $${first + 1} AND epoch = $${first + 2} ` +
      'FOR SHARE'
    );
  }

  fenceValues(): unknown[] {
    return [STORE_LEASE, this.holder.id, this.epoch];
  }

  /** The lease is gone (a fence found no row): LeaseLostError, told to the listeners once. */
  lostNow(): LeaseLostError {
    return this.lose();
  }

  /** Inside a write's transaction: fails (LeaseLostError) unless this daemon still holds the lease. */
  async fence(client: PoolClient): Promise<void> {
    if (this.lost) throw this.lost;
    const { rowCount } = await client.query(this.fenceQuery(1), this.fenceValues());
    if (rowCount === 0) throw this.lose();
  }

  /** Stops renewing (the lease then expires by itself). */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Gives the lease up at once (the next daemon need not wait for it to expire); the epoch stays for the next one. */
  async release(): Promise<void> {
    this.stop();
    if (this.lost) return;
    await this.db.query(`UPDATE ${this.table} SET expires_at = now() WHERE name = $1 AND holder = $2 AND epoch = $3`, [
      STORE_LEASE,
      this.holder.id,
      this.epoch,
    ]);
  }
}
