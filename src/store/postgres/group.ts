/**
 * The group of daemons on one store and schema (GroupStore in ports.ts). Membership is a `replicas` row per replica id
 * with a token of the process that holds it; ownership is a `leases` row per mailbox (and one named `reconciler`):
 * holder, epoch, expiry by the database's clock. One statement per replica renews its row and every lease it holds,
 * and reads the live members and the applied generation. Taking a lease bumps its epoch, the fencing token: each
 * write about a mailbox checks holder and epoch `FOR SHARE` in its own transaction (`fence`), so a takeover waits for
 * a write in flight and every later write of the old holder fails. Membership changes, releases and applies are
 * announced with NOTIFY on one channel (payload `<schema>:<what>`) so the others act at once; they poll as well. Each
 * heartbeat is announced too, so the others notice a member that falls silent long before its row expires.
 */
import { randomUUID } from 'node:crypto';
import type { PoolClient } from 'pg';
import type { LocalState } from '../local.js';
import { FencedError, LockHeldError } from '../errors.js';
import {
  type GroupStore,
  type GroupNotice,
  type GroupView,
  type HeldLease,
  type Heartbeat,
  type ReplicaIdentity,
  type ReplicaSnapshot,
} from '../group-ports.js';
import type { LeaseFence, PgContext } from './context.js';

/** The channel of the group's announcements (NOTIFY is per database: the payload names the schema). */
export const GROUP_CHANNEL = 'mailctl_group';

interface ReplicaRow {
  id: string;
  url: string;
  host: string;
  pid: number;
  started_at: Date;
  heartbeat_at: Date;
  age: number;
  live: boolean;
  sink_shared: boolean;
  snapshot: ReplicaSnapshot | null;
}

export class PgGroup implements GroupStore, LeaseFence {
  private me: ReplicaIdentity | null = null;
  /** This process's token in its replica row: a row with another token belongs to another process of the same id. */
  private readonly token = randomUUID();
  private machine: { release(): Promise<void> } | null = null;
  /** Leases this process believes it holds, by name: the epoch every write about it is fenced with. */
  private readonly held = new Map<string, number>();
  private readonly fencedListeners = new Set<(name: string) => void>();

  constructor(
    private readonly ctx: PgContext,
    private readonly local: LocalState,
  ) {}

  /** This replica's id (once joined). */
  get replicaId(): string {
    return this.id;
  }

  private get id(): string {
    if (!this.me) throw new Error('the replica has not joined its group');
    return this.me.id;
  }

  private announce(what: string): string {
    return `SELECT pg_notify('${GROUP_CHANNEL}', ${quote(`${this.ctx.schema}:${what}`)})`;
  }

  async join(me: ReplicaIdentity): Promise<void> {
    this.machine = await this.local.lock();
    try {
      const instance = await this.local.instanceId();
      const s = this.ctx.s;
      // a row whose heartbeat expired, or one of this state folder (whose lock proves its process gone), is taken
      const { rowCount } = await this.ctx.db.query(
        `WITH joined AS (
           INSERT INTO ${s}.replicas AS r
             (id, token, instance, pid, host, url, sink_shared, started_at, heartbeat_at, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, now(), now(), now() + make_interval(secs => $8))
           ON CONFLICT (id) DO UPDATE SET token = excluded.token, instance = excluded.instance, pid = excluded.pid,
             host = excluded.host, url = excluded.url, sink_shared = excluded.sink_shared, started_at = now(),
             heartbeat_at = now(), expires_at = excluded.expires_at, snapshot = NULL
           WHERE r.expires_at <= now() OR r.instance = excluded.instance
           RETURNING id)
         SELECT id, (${this.announce('members')}) FROM joined`,
        [me.id, this.token, instance, me.pid, me.host, me.url, me.sinkShared, me.ttlS],
      );
      if (rowCount === 0) {
        const { rows } = await this.ctx.db.query<{ pid: number; host: string; started_at: Date }>(
          `SELECT pid, host, started_at FROM ${s}.replicas WHERE id = $1`,
          [me.id],
        );
        const h = rows[0];
        throw new LockHeldError(
          { pid: h?.pid ?? 0, host: h?.host ?? '?', since: h ? h.started_at.toISOString() : '?' },
          `the replica id "${me.id}" of the store ${this.ctx.db.location} (give each replica its own --replica-id)`,
        );
      }
      this.me = me;
    } catch (err) {
      await this.machine.release();
      this.machine = null;
      throw err;
    }
  }

  async heartbeat(snapshot: ReplicaSnapshot | null): Promise<Heartbeat> {
    const s = this.ctx.s;
    const { rows } = await this.ctx.db.query<{ beat: Heartbeat }>(
      `WITH me AS (
         UPDATE ${s}.replicas SET heartbeat_at = now(), expires_at = now() + make_interval(secs => $3),
           snapshot = coalesce($4::json, snapshot)
         WHERE id = $1 AND token = $2 RETURNING id),
       renewed AS (
         UPDATE ${s}.leases SET renewed_at = now(), expires_at = now() + make_interval(secs => $3)
         WHERE holder = $1 AND EXISTS (SELECT 1 FROM me) RETURNING name, epoch)
       SELECT json_build_object(
         'member', EXISTS (SELECT 1 FROM me),
         'leases', (SELECT coalesce(json_agg(json_build_object('name', name, 'epoch', epoch)), '[]') FROM renewed),
         'members', (SELECT coalesce(json_agg(id ORDER BY id), '[]') FROM ${s}.replicas
                     WHERE expires_at > now() OR id IN (SELECT id FROM me)),
         'generation', coalesce((SELECT generation FROM ${s}.applied), 0),
         'peers', (SELECT coalesce(json_agg(json_build_object(
                       'id', id, 'silentS', extract(epoch FROM now() - heartbeat_at),
                       'ttlS', extract(epoch FROM expires_at - heartbeat_at))), '[]')
                   FROM ${s}.replicas WHERE expires_at > now() AND id <> $1)) AS beat,
         pg_notify('${GROUP_CHANNEL}', $5)`,
      [
        this.id,
        this.token,
        this.me!.ttlS,
        snapshot === null ? null : JSON.stringify(snapshot),
        `${this.ctx.schema}:beat:${this.id}`,
      ],
    );
    const beat = rows[0]!.beat;
    return {
      ...beat,
      leases: beat.leases.map((l) => ({ name: l.name, epoch: Number(l.epoch) })),
      peers: beat.peers.map((p) => ({ id: p.id, silentS: Math.max(0, Number(p.silentS)), ttlS: Number(p.ttlS) })),
    };
  }

  async acquire(names: readonly string[]): Promise<HeldLease[]> {
    if (!names.length) return [];
    const s = this.ctx.s;
    const me = this.me!;
    // only a member whose row is its own takes leases (not a process whose membership was taken over)
    const { rows } = await this.ctx.db.query<{ name: string; epoch: string }>(
      `INSERT INTO ${s}.leases AS l (name, holder, pid, host, epoch, acquired_at, renewed_at, expires_at)
       SELECT n, $2, $3, $4, 1, now(), now(), now() + make_interval(secs => $5) FROM unnest($1::text[]) AS n
       WHERE EXISTS (SELECT 1 FROM ${s}.replicas WHERE id = $2 AND token = $6)
       ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, pid = excluded.pid, host = excluded.host,
         epoch = l.epoch + 1, acquired_at = now(), renewed_at = now(), expires_at = excluded.expires_at
       WHERE l.expires_at <= now() OR l.holder = excluded.holder
       RETURNING name, epoch`,
      [names, me.id, me.pid, me.host, me.ttlS, this.token],
    );
    return rows.map((r) => ({ name: r.name, epoch: Number(r.epoch) }));
  }

  async release(leases: readonly HeldLease[]): Promise<void> {
    if (!leases.length) return;
    this.forget(leases.map((l) => l.name));
    await this.ctx.db.query(
      `WITH released AS (
         UPDATE ${this.ctx.s}.leases l SET expires_at = now()
         FROM unnest($2::text[], $3::bigint[]) AS x(name, epoch)
         WHERE l.name = x.name AND l.holder = $1 AND l.epoch = x.epoch RETURNING 1)
       SELECT count(*), (${this.announce('released')}) FROM released`,
      [this.id, leases.map((l) => l.name), leases.map((l) => l.epoch)],
    );
  }

  hold(leases: readonly HeldLease[]): void {
    for (const l of leases) this.held.set(l.name, l.epoch);
  }

  forget(names: readonly string[]): void {
    for (const n of names) this.held.delete(n);
  }

  /** The epoch this process holds `name` under, or null. */
  epochOf(name: string): number | null {
    return this.held.get(name) ?? null;
  }

  async view(): Promise<GroupView> {
    const s = this.ctx.s;
    const [replicas, leases] = await Promise.all([
      this.ctx.db.query<ReplicaRow>(
        `SELECT id, url, host, pid, started_at, heartbeat_at, extract(epoch FROM now() - heartbeat_at)::float8 AS age,
           expires_at > now() AS live, sink_shared, snapshot
         FROM ${s}.replicas ORDER BY id`,
      ),
      this.ctx.db.query<{ name: string; holder: string; epoch: string }>(
        `SELECT name, holder, epoch FROM ${s}.leases WHERE expires_at > now()`,
      ),
    ]);
    return {
      replicas: replicas.rows.map((r) => ({
        id: r.id,
        url: r.url,
        host: r.host,
        pid: r.pid,
        startedAt: r.started_at.toISOString(),
        heartbeatAt: r.heartbeat_at.toISOString(),
        heartbeatAgeS: Math.max(0, r.age),
        live: r.live,
        sinkShared: r.sink_shared,
        snapshot: r.snapshot,
      })),
      leases: Object.fromEntries(leases.rows.map((l) => [l.name, { holder: l.holder, epoch: Number(l.epoch) }])),
    };
  }

  onFenced(listener: (name: string) => void): void {
    this.fencedListeners.add(listener);
  }

  private fenced(name: string, why: string): FencedError {
    this.held.delete(name);
    for (const l of this.fencedListeners) l(name);
    return new FencedError(name, `${name}: ${why}; this replica (${this.id}) writes nothing more about it`);
  }

  /** The fence's query and values, numbered from `first`: a row while this replica holds `name` under its epoch. */
  fenceOf(name: string, first: number): { sql: string; values: unknown[] } {
    const epoch = this.held.get(name);
    if (epoch === undefined) throw this.fenced(name, 'this replica does not hold its lease');
    return {
      sql:
        `SELECT 1 FROM ${this.ctx.s}.leases ` +
        `WHERE name = $${first} AND holder = $${first + 1} AND epoch = $${first + 2} FOR SHARE`,
      values: [name, this.id, epoch],
    };
  }

  /** A writeOne found no lease row: a newer owner has it. */
  fencedNow(name: string): FencedError {
    return this.fenced(name, 'a newer owner holds its lease');
  }

  /** Inside a write's transaction: fails (FencedError) unless this replica still holds `name` under its epoch. */
  async fence(client: PoolClient, name: string): Promise<void> {
    const { sql, values } = this.fenceOf(name, 1);
    const { rowCount } = await client.query(sql, values);
    if (rowCount === 0) throw this.fencedNow(name);
  }

  listen(listener: (channel: GroupNotice, payload: string) => void): Promise<void> {
    const prefix = `${this.ctx.schema}:`;
    this.ctx.db.listen(
      GROUP_CHANNEL,
      (payload) => {
        if (!payload.startsWith(prefix)) return;
        const what = payload.slice(prefix.length);
        if (what.startsWith('outbox:')) listener('outbox', what.slice('outbox:'.length));
        else if (what.startsWith('beat:')) listener('beat', what.slice('beat:'.length));
        else listener('applied', what);
      },
      // what was announced while the connection was away is found by asking again
      () => listener('applied', 'reconnected'),
    );
    return Promise.resolve();
  }

  /** `NOTIFY` text for the applied record's generation and for accepted outbound mail (inside their transactions). */
  notice(what: 'applied' | `outbox:${string}`): string {
    return this.announce(what);
  }

  async leave(): Promise<void> {
    const me = this.me;
    this.held.clear();
    try {
      if (me)
        await this.ctx.db.query(
          // a process whose id another process took over leaves that one's leases alone
          `WITH leases AS (UPDATE ${this.ctx.s}.leases SET expires_at = now() WHERE holder = $1
                           AND EXISTS (SELECT 1 FROM ${this.ctx.s}.replicas WHERE id = $1 AND token = $2) RETURNING 1),
                gone AS (UPDATE ${this.ctx.s}.replicas SET expires_at = now() WHERE id = $1 AND token = $2 RETURNING 1)
           SELECT (SELECT count(*) FROM leases), (SELECT count(*) FROM gone), (${this.announce('members')})`,
          [me.id, this.token],
        );
    } finally {
      await this.machine?.release();
      this.machine = null;
    }
  }
}

/** A SQL string literal (for the constant NOTIFY payloads: a schema name and a fixed word). */
const quote = (text: string): string => `'${text.replace(/'/g, "''")}'`;
