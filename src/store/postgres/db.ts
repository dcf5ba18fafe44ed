/**
 * The store's connection pool, with a timeout on everything (connecting, waiting for a connection, each statement on
 * the server and each answer on the client: under a partition that holds packets only the client's own timer fires),
 * and the store's health: a failure that says the database cannot be reached marks the store unavailable and turns
 * into StoreUnavailableError; a probe then asks every second until it answers again.
 */
import type { Logger } from 'pino';
import {
  Client,
  DatabaseError,
  Pool,
  type ClientConfig,
  type PoolClient,
  type QueryResult,
  type QueryResultRow,
} from 'pg';
import { StoreError, StoreUnavailableError } from '../errors.js';
import { type StoreHealth } from '../ports.js';
import { passwordFor, tlsOptions, type StoreUrl } from './url.js';

/** Server-side limit of one statement; the client waits a little longer, so the server's clearer error comes first. */
const STATEMENT_TIMEOUT_MS = 5_000;
const QUERY_TIMEOUT_MS = 6_000;
const CONNECT_TIMEOUT_MS = 5_000;
const PROBE_EVERY_MS = 1_000;
const POOL_SIZE = 10;

/** SQLSTATE classes and codes that mean "the database is not there for us now", not "this statement is wrong". */
const UNAVAILABLE_STATES = /^(08|53|28|57P0|3D000|57014|55P03)/;
const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOENT', // a Unix socket that is not there
]);
const UNAVAILABLE_MESSAGES = new RegExp(
  [
    'Connection terminated',
    'connection timeout',
    'Query read timeout',
    'timeout exceeded when trying to connect',
    'not queryable',
    'does not support SSL',
    'establishing an SSL connection',
    'Client was closed',
  ].join('|'),
  'i',
);

const isTlsError = (err: NodeJS.ErrnoException): boolean =>
  typeof err.code === 'string' && /CERT|SELF_SIGNED|UNABLE_TO_|ERR_TLS|ERR_SSL/.test(err.code);

/**
 * Whether an error of node-postgres means the store cannot be reached (or refuses us), as opposed to a bad statement.
 */
function isUnavailable(err: unknown): boolean {
  if (err instanceof StoreUnavailableError) return true;
  if (err instanceof StoreError) return false;
  if (err instanceof DatabaseError) return UNAVAILABLE_STATES.test(err.code ?? '');
  const e = err as NodeJS.ErrnoException;
  if (!(e instanceof Error)) return false;
  return UNAVAILABLE_CODES.has(e.code ?? '') || isTlsError(e) || UNAVAILABLE_MESSAGES.test(e.message);
}

/** Why, in words a person can act on: the server's message and SQLSTATE, or the socket's error and code. */
export function describeFailure(err: unknown): string {
  if (err instanceof StoreError) return err.message;
  if (err instanceof DatabaseError) return `${err.message} (SQLSTATE ${err.code ?? '?'})`;
  const e = err as NodeJS.ErrnoException;
  const code = e.code ?? '';
  if (code === 'ECONNREFUSED') return 'connection refused (ECONNREFUSED)';
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return `host not found (${code})`;
  if (isTlsError(e)) return `TLS: ${e.message} (${code})`;
  if (/Query read timeout/.test(e.message)) return 'no answer within the query timeout';
  if (/timeout/i.test(e.message) && /connect/i.test(e.message)) return 'no connection within the connect timeout';
  return code ? `${e.message} (${code})` : (e.message ?? String(err));
}

export interface DbOptions {
  url: StoreUrl;
  /**
   * The group's lease TTL in seconds: every statement, answer, connection and open transaction then has a timeout below
   * TTL/3, so a replica that cannot reach the database notices before its renewal is due, and a transaction left open
   * by a partition never holds a lease's row past it (a takeover would wait for it).
   */
  leaseTtlS?: number | undefined;
  /** How messages name the store (no password). */
  location: string;
  env: NodeJS.ProcessEnv;
  log?: Logger | undefined;
}

/** How soon a lost LISTEN connection is made again. */
const LISTEN_RETRY_MS = 1_000;

export class Db implements StoreHealth {
  readonly pool: Pool;
  private readonly config: ClientConfig;
  private readonly listeners = new Set<Client>();
  private down: { reason: string; since: string } | null = null;
  private readonly waiters = new Set<() => void>();
  private probe: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(private readonly options: DbOptions) {
    const { url, env } = options;
    const third = options.leaseTtlS === undefined ? Infinity : (options.leaseTtlS * 1000) / 3;
    const queryMs = Math.min(QUERY_TIMEOUT_MS, third - 100);
    const statementMs = Math.min(STATEMENT_TIMEOUT_MS, queryMs - 100);
    this.config = {
      host: url.host,
      port: url.port,
      user: url.user,
      database: url.database,
      // read at every new connection: a rotated PGPASSFILE or secret is used from then on
      password: () => {
        const password = passwordFor(url, env);
        if (password === null)
          throw new StoreError('store-no-password', 'the server wants a password: set PGPASSWORD or a PGPASSFILE');
        return password;
      },
      ssl: tlsOptions(url),
      application_name: url.applicationName ?? 'mailctl',
      connectionTimeoutMillis: Math.min((url.connectTimeoutS ?? 0) * 1000 || CONNECT_TIMEOUT_MS, queryMs),
      statement_timeout: statementMs,
      lock_timeout: statementMs,
      idle_in_transaction_session_timeout: Math.min(4 * STATEMENT_TIMEOUT_MS, queryMs),
      query_timeout: queryMs,
      keepAlive: true,
    };
    this.pool = new Pool({ ...this.config, max: POOL_SIZE, idleTimeoutMillis: 30_000 });
    // an idle connection that the server closed (a restart): the pool drops it; without a listener the process dies
    this.pool.on('error', (err) => this.failed(err));
  }

  get location(): string {
    return this.options.location;
  }

  problem(): { reason: string; since: string } | null {
    return this.down;
  }

  whenAvailable(signal?: AbortSignal): Promise<void> {
    if (!this.down || signal?.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.waiters.delete(done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      this.waiters.add(done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  /** The error as the store's callers see it: StoreUnavailableError when the database is not there for us. */
  private failed(err: unknown): unknown {
    if (!isUnavailable(err)) return err;
    const reason = describeFailure(err);
    if (!this.down && !this.closed) {
      this.down = { reason, since: new Date().toISOString() };
      this.options.log?.warn({ store: this.location, reason }, `the store is unavailable: ${reason}`);
      // not unref()ed: whoever waits for the store (whenAvailable) keeps the process alive until close()
      this.probe = setInterval(() => void this.ping(), PROBE_EVERY_MS);
    }
    return err instanceof StoreUnavailableError
      ? err
      : new StoreUnavailableError(`the store ${this.location} is unavailable: ${reason}`, { cause: err });
  }

  private answered(): void {
    if (!this.down) return;
    this.options.log?.info({ store: this.location }, 'the store is available again');
    this.down = null;
    if (this.probe) clearInterval(this.probe);
    this.probe = null;
    for (const wake of [...this.waiters]) wake();
  }

  private async ping(): Promise<void> {
    try {
      await this.pool.query('SELECT 1');
      this.answered();
    } catch {
      /* still away; the next tick asks again */
    }
  }

  /** One statement on any connection of the pool. */
  async query<R extends QueryResultRow = QueryResultRow>(text: string, values?: unknown[]): Promise<QueryResult<R>> {
    try {
      const result = await this.pool.query<R>(text, values);
      this.answered();
      return result;
    } catch (err) {
      throw this.failed(err);
    }
  }

  /**
   * Runs `fn` on one connection inside BEGIN … COMMIT; any failure rolls back. A connection that failed is closed, not
   * given back: after a timeout it may still be busy with the statement.
   */
  async transaction<T>(fn: (client: PoolClient) => Promise<T>): Promise<T> {
    let client: PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      throw this.failed(err);
    }
    // a connection cut while checked out (between statements) is reported as 'error' on it: keep it off the process
    let cut: unknown = null;
    const onError = (err: unknown) => (cut = err);
    client.on('error', onError);
    try {
      await client.query('BEGIN');
      const result = await fn(client);
      await client.query('COMMIT');
      client.removeListener('error', onError);
      client.release();
      this.answered();
      return result;
    } catch (err) {
      client.removeListener('error', onError);
      client.on('error', () => undefined); // the socket may still report its end after release
      client.release(true);
      throw this.failed(cut ?? err);
    }
  }

  /**
   * LISTENs on `channel` on a connection of its own, made again after it is lost (a restart, a partition): what is
   * notified meanwhile is lost, so callers poll as well. `onConnected` runs after each (re)connection.
   */
  listen(channel: string, onMessage: (payload: string) => void, onConnected: () => void): void {
    const connect = async () => {
      if (this.closed) return;
      const client = new Client(this.config);
      this.listeners.add(client);
      let retried = false;
      const retry = () => {
        if (retried) return;
        retried = true;
        this.listeners.delete(client);
        void client.end().catch(() => undefined);
        if (!this.closed) setTimeout(() => void connect(), LISTEN_RETRY_MS).unref();
      };
      client.on('error', retry);
      client.on('end', retry);
      client.on('notification', (n) => n.channel === channel && onMessage(n.payload ?? ''));
      try {
        await client.connect();
        await client.query(`LISTEN ${channel}`);
        onConnected();
      } catch {
        retry();
      }
    };
    void connect();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.listeners].map((c) => c.end().catch(() => undefined)));
    if (this.probe) clearInterval(this.probe);
    this.probe = null;
    for (const wake of [...this.waiters]) wake();
    await this.pool.end();
  }
}
