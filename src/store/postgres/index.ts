/**
 * The PostgreSQL store: the daemon's state in its own schema of a database (`--store postgres://…`,
 * `--store-schema`), with the same promises as the state folder (store/ports.ts). Opening it connects, checks the
 * schema's version and runs the migrations it lacks (migrations.ts). A daemon joins the store's group (group.ts: one
 * lease per mailbox); `lock`, for `mailctl store import`, takes the machine's own lock of the local state folder, then
 * the store-wide lease (lease.ts). The database keeps only the API token's hash.
 */
import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { LocalState } from '../local.js';
import { StoreError, StoreUnavailableError } from '../errors.js';
import { type Store, type StoreLock, type TokenStore } from '../ports.js';
import { PgAppliedStore } from './applied.js';
import { PgContext } from './context.js';
import { PgCredentialStore } from './credentials.js';
import { Db, describeFailure } from './db.js';
import { importSnapshot, type StoreSnapshot } from './import.js';
import { PgGroup } from './group.js';
import { PgInboundStore } from './inbound.js';
import { StoreLease } from './lease.js';
import { migrate } from './migrations.js';
import { PgOutboxStore } from './outbox.js';
import { parseStoreUrl, storeLocation } from './url.js';

export type { StoreSnapshot } from './import.js';
export { INBOUND_CHANNEL } from './inbound.js';
export { LATEST_VERSION } from './migrations.js';

export interface PostgresStoreOptions {
  /** `postgres://USER@HOST:PORT/DB?sslmode=…` (no password: it comes from PGPASSWORD or the passfile). */
  url: string;
  schema: string;
  /** The machine's state folder: its lock, and the instance id the lease is held under. */
  local: LocalState;
  env: NodeJS.ProcessEnv;
  log?: Logger | undefined;
  /** The group's lease TTL (s): the database's timeouts stay below a third of it (db.ts). */
  leaseTtlS?: number | undefined;
}

/** The token's hash only: what a request's token is checked against by every daemon on the store. */
class PgTokenStore implements TokenStore {
  constructor(private readonly ctx: PgContext) {}

  async establish(given: string | undefined): Promise<string> {
    if (!given)
      throw new StoreError(
        'token-required',
        "a PostgreSQL store keeps only the API token's hash, so the daemon must be given the token: " +
          '--token-file FILE (the same file for every daemon on the store)',
      );
    const sha256 = createHash('sha256').update(given).digest('hex');
    await this.ctx.write((c) =>
      c.query(
        `INSERT INTO ${this.ctx.s}.settings (name, value) VALUES ('api-token', $1)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = now()`,
        [JSON.stringify({ sha256 })],
      ),
    );
    return given;
  }
}

/** The PostgreSQL store, and what only it does: take a whole state in (`mailctl store import`). */
export interface PostgresStore extends Store {
  /** Copies `snapshot` into this store, which must be empty and locked by this process. */
  importSnapshot(snapshot: StoreSnapshot): Promise<void>;
}

/** Connects and brings the schema up to date; a database that cannot be used is a StoreError saying why. */
async function connect(
  options: Omit<PostgresStoreOptions, 'local'>,
): Promise<{ db: Db; location: string; versions: { from: number; to: number } }> {
  const location = storeLocation(options.url, options.schema);
  const db = new Db({
    url: parseStoreUrl(options.url),
    location,
    env: options.env,
    log: options.log,
    leaseTtlS: options.leaseTtlS,
  });
  try {
    const versions = await db.transaction((c) => migrate(c, options.schema, location));
    return { db, location, versions };
  } catch (err) {
    await db.close();
    if (err instanceof StoreUnavailableError)
      throw new StoreUnavailableError(`cannot use the store ${location}: ${describeFailure(err.cause)}`);
    throw err;
  }
}

/** `mailctl store migrate`: the schema's version before and after. */
export async function migrateStore(
  options: Omit<PostgresStoreOptions, 'local'>,
): Promise<{ location: string; from: number; to: number }> {
  const { db, location, versions } = await connect(options);
  await db.close();
  return { location, ...versions };
}

/** Connects, migrates, and returns the store. */
export async function openPostgresStore(options: PostgresStoreOptions): Promise<PostgresStore> {
  await options.local.init();
  const { db, location } = await connect(options);
  const ctx = new PgContext(db, options.schema);
  const local = options.local;
  const group = new PgGroup(ctx, local);
  return {
    importSnapshot: (snapshot) => importSnapshot(ctx, location, snapshot),
    kind: 'postgres',
    location,
    applied: new PgAppliedStore(ctx),
    inbound: new PgInboundStore(ctx),
    outbox: new PgOutboxStore(ctx),
    credentials: new PgCredentialStore(ctx),
    token: new PgTokenStore(ctx),
    health: db,
    group: {
      join: async (me) => {
        await group.join(me);
        ctx.group = group;
      },
      heartbeat: (snapshot) => group.heartbeat(snapshot),
      acquire: (names) => group.acquire(names),
      release: (leases) => group.release(leases),
      hold: (leases) => group.hold(leases),
      forget: (names) => group.forget(names),
      view: () => group.view(),
      onFenced: (listener) => group.onFenced(listener),
      listen: (listener) => group.listen(listener),
      leave: () => group.leave(),
    },
    // every daemon on a shared store must use the same credentials key: it is given (--credentials-key-file)
    ownCredentialsKeyFile: null,
    async lock(): Promise<StoreLock> {
      const machine = await local.lock();
      try {
        const lease = await StoreLease.acquire(db, options.schema, {
          id: await local.instanceId(),
          pid: process.pid,
          host: hostname(),
        });
        ctx.lease = lease;
        return {
          onLost: (listener) => lease.onLost(listener),
          async release() {
            await lease.release().catch(() => undefined); // unreachable: the lease expires by itself
            await machine.release();
          },
        };
      } catch (err) {
        await machine.release();
        throw err;
      }
    },
    async close() {
      ctx.lease?.stop();
      await db.close();
    },
  };
}
