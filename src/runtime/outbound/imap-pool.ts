/**
 * IMAP connections for sent copies and stored-mail lookups, separate from the polling loops (whose connection IDLEs
 * on the inbox): at most `max` per server, opened on demand, reused, each used by one caller at a time.
 */
import { connectMailbox, type Mailbox } from '../../adapters/imap.js';
import { resolveConnection } from '../../connect/connection.js';
import type { SecretResolver } from '../../connect/secrets.js';
import type { ImapServerSpec } from '../../config/model.js';

interface Pool {
  key: string;
  idle: Mailbox[];
  open: number;
  waiters: (() => void)[];
}

export class ImapPool {
  private readonly pools = new Map<string, Pool>();
  private closed = false;

  constructor(
    private readonly resolver: SecretResolver,
    private readonly max = 4,
  ) {}

  private poolOf(id: string, spec: ImapServerSpec): Pool {
    const key = JSON.stringify(spec);
    let pool = this.pools.get(id);
    if (pool && pool.key !== key) {
      // the server changed: new connections from now on; idle old ones are closed
      for (const c of pool.idle) void c.disconnect();
      pool = undefined;
    }
    if (!pool) this.pools.set(id, (pool = { key, idle: [], open: 0, waiters: [] }));
    return pool;
  }

  /** Runs `fn` with a logged-in connection of server `id` that nobody else uses meanwhile. */
  async with<T>(id: string, spec: ImapServerSpec, fn: (client: Mailbox) => Promise<T>): Promise<T> {
    if (this.closed) throw new Error('the daemon is shutting down');
    const pool = this.poolOf(id, spec);
    const client = await this.acquire(pool, spec);
    try {
      return await fn(client);
    } finally {
      this.release(id, pool, client);
    }
  }

  private async acquire(pool: Pool, spec: ImapServerSpec): Promise<Mailbox> {
    for (;;) {
      const idle = pool.idle.pop();
      if (idle) {
        if (idle.usable) return idle;
        pool.open -= 1;
        void idle.disconnect();
        continue;
      }
      if (pool.open < this.max) {
        pool.open += 1;
        try {
          const { settings } = await resolveConnection(spec, this.resolver);
          return await connectMailbox(settings, { disableAutoIdle: true });
        } catch (err) {
          pool.open -= 1;
          pool.waiters.shift()?.();
          throw err;
        }
      }
      await new Promise<void>((resolve) => pool.waiters.push(resolve));
    }
  }

  private release(id: string, pool: Pool, client: Mailbox): void {
    if (client.usable && !this.closed && this.pools.get(id) === pool) pool.idle.push(client);
    else {
      pool.open -= 1;
      void client.disconnect();
    }
    pool.waiters.shift()?.();
  }

  async closeAll(): Promise<void> {
    this.closed = true;
    const all = [...this.pools.values()].flatMap((p) => p.idle.splice(0));
    await Promise.all(all.map((c) => c.disconnect()));
  }
}
