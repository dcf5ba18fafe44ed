/**
 * This daemon as a replica of its group. Every TTL/3 one statement renews its membership and all its leases and tells
 * it the live members and the applied generation (heartbeat). From the members and the applied servers every replica
 * computes the same owners (ring.ts); a replica gives away what it no longer owns (stops the loop — its batch finished
 * or abandoned, its connection closed — then releases the lease) and takes what it now owns (epoch + 1), starting the
 * loop, which resumes from the checkpoint. A lease found gone at a heartbeat, or fenced at a write, stops its loop at
 * once. A member whose row expires before the next heartbeat (killed, frozen, cut off) is taken over by a heartbeat
 * sent just after its expiry; the sessions for its mailboxes are opened while its leases run out (takeover.ts). By
 * its own monotonic clock, a replica whose last successful renewal is 2/3 TTL old stops all its loops before any lease
 * can expire (the database expires them after a whole TTL), and `holds` answers false meanwhile: the inbound stage
 * checks it before every change on the mail server (sink delivery, COPY, STORE).
 */
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { ServerConfig } from '../../plan/model.js';
import { FencedError, LeaseLostError } from '../../store/errors.js';
import {
  RECONCILER_LEASE,
  type GroupStore,
  type HeldLease,
  type PeerBeat,
  type ReplicaIdentity,
  type ReplicaSnapshot,
} from '../../store/group-ports.js';
import type { OpenedImap } from '../loops/imap-loop.js';
import type { Supervisor } from '../loops/supervisor.js';
import { accountOf, assign } from './ring.js';
import { isOverdue, PreparedSessions, SilenceWatch } from './takeover.js';

/** What the reconciler asks of the loops (the Supervisor itself for a daemon alone). */
export type LoopControl = Pick<Supervisor, 'start' | 'update' | 'stop' | 'openFor' | 'secretDigests'>;

/** Stop IMAP work when the last successful renewal is this part of the TTL old. */
const VALID_FOR = 2 / 3;
/** How often the replica's own clock is looked at between heartbeats. */
const CLOCK_CHECK_MS = 100;
/**
 * How long after the last start or stop of a server the owners are computed again: a reconcile starts its servers one
 * by one, and one rebalance for all of them takes their leases in one statement, from shares of the whole set.
 */
const REBALANCE_AFTER_MS = 50;
/** How long after another member's expiry the heartbeat that takes its mailboxes over is sent. */
const EXPIRY_MARGIN_MS = 100;

export interface ReplicaGroupDeps {
  store: GroupStore;
  me: ReplicaIdentity;
  supervisor: Supervisor;
  log: Logger;
  /** What the replica writes about itself with each heartbeat. */
  snapshot: () => ReplicaSnapshot | null;
  /** The applied generation in the store moved on (the replica follows it; not awaited). */
  onGeneration: (generation: number) => void;
  /** This replica now holds the reconciler lease (it reconciles the folder; not awaited). */
  onReconciler: () => void;
  /** Another process took this replica's id over (it was gone longer than the TTL): stop at once, exit. */
  onLost: (err: LeaseLostError) => void;
  /** A write about `name` was refused because a newer owner holds it. */
  onFenced: (name: string) => void;
  /** Another replica accepted outbound mail for `server` (its owner claims it). */
  onOutbox: (server: string) => void;
}

export class ReplicaGroup implements LoopControl {
  /** The applied servers that should run (enabled), with what their loop is started with. */
  private readonly desired = new Map<string, { config: ServerConfig; digest: string | undefined }>();
  /** Leases this replica holds, by name (server ids and the reconciler's), with their epochs. */
  private readonly held = new Map<string, number>();
  /** Servers whose loop this replica runs now. */
  private readonly running = new Set<string>();
  private members: string[] = [];
  /** Members silent past their due renewal at the last heartbeat (their rows have not expired yet). */
  private overdue: string[] = [];
  private generation = -1;
  /** performance.now() when the last successful heartbeat was sent (its renewal counts from then). */
  private renewedAt = -Infinity;
  private readonly ttlMs: number;
  private queue: Promise<unknown> = Promise.resolve();
  private beatTimer: NodeJS.Timeout | null = null;
  private clockTimer: NodeJS.Timeout | null = null;
  private expiryTimer: NodeJS.Timeout | null = null;
  private rebalanceTimer: NodeJS.Timeout | null = null;
  private stopped = false;
  private stalled = false;
  /** When each other member falls overdue unless heard from (a heartbeat then says whether it is). */
  private readonly silence = new SilenceWatch(() => void this.beat());
  /** Sessions for the mailboxes this replica will hold soon (an overdue member's, one handed over), until it does. */
  private readonly prepared: PreparedSessions;
  /** Fenced writes since start (the metric). */
  fencedWrites = 0;

  constructor(private readonly deps: ReplicaGroupDeps) {
    this.ttlMs = deps.me.ttlS * 1000;
    this.prepared = new PreparedSessions({ supervisor: deps.supervisor, log: deps.log });
    deps.store.onFenced((name) => {
      this.fencedWrites += 1;
      deps.onFenced(name);
      void this.serially(() => this.lost(name, 'a write about it was fenced: a newer owner holds its lease'));
    });
  }

  get id(): string {
    return this.deps.me.id;
  }

  /** Joins (refused when a live process has this id), beats once, then every TTL/3; LISTEN wakes it early. */
  async join(url: string): Promise<void> {
    this.deps.me.url = url;
    await this.deps.store.join(this.deps.me);
    await this.deps.store.listen((channel, payload) => {
      if (channel === 'outbox') this.deps.onOutbox(payload);
      else if (channel === 'beat') this.silence.heard(payload);
      else void this.beat();
    });
    await this.beat();
    this.beatTimer = setInterval(() => void this.beat(), this.ttlMs / 3).unref();
    this.clockTimer = setInterval(() => void this.checkClock(), CLOCK_CHECK_MS).unref();
  }

  /** Runs `fn` after every change before it: loops and leases change one step at a time. */
  private serially<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Whether this replica's view of its leases is valid now (renewed within 2/3 TTL, by its own clock). */
  valid(): boolean {
    return !this.stopped && performance.now() - this.renewedAt < VALID_FOR * this.ttlMs;
  }

  /** Whether this replica may change anything about `name` now. */
  holds(name: string): boolean {
    return this.held.has(name) && this.valid();
  }

  /** Throws FencedError unless this replica may change anything about `name` now. */
  guard(name: string): void {
    if (!this.holds(name))
      throw new FencedError(
        name,
        this.held.has(name)
          ? `${name}: the lease was not renewed in time (${this.id}); its work stops before the lease can expire`
          : `${name}: ${this.id} no longer holds its lease`,
      );
  }

  epochOf(name: string): number | null {
    return this.held.get(name) ?? null;
  }

  /** The leases held now (server ids and the reconciler's). */
  leases(): HeldLease[] {
    return [...this.held].map(([name, epoch]) => ({ name, epoch }));
  }

  get liveMembers(): readonly string[] {
    return this.members;
  }

  get runningLoops(): number {
    return this.running.size;
  }

  holdsReconciler(): boolean {
    return this.holds(RECONCILER_LEASE);
  }

  /** Seconds since the last successful renewal (monotonic). */
  renewalAgeS(): number {
    return (performance.now() - this.renewedAt) / 1000;
  }

  private beating: Promise<void> | null = null;

  /** One heartbeat (never two at once), then the owners computed again. */
  beat(): Promise<void> {
    this.beating ??= this.serially(() => this.beatNow()).finally(() => (this.beating = null));
    return this.beating;
  }

  private async beatNow(): Promise<void> {
    if (this.stopped) return;
    const sentAt = performance.now();
    let beat;
    try {
      beat = await this.deps.store.heartbeat(this.deps.snapshot());
    } catch (err) {
      this.deps.log.warn({ err: (err as Error).message }, 'heartbeat failed; leases not renewed');
      return;
    }
    if (!beat.member) {
      this.stopped = true;
      this.silence.stop();
      this.prepared.dropAll();
      await this.stopLoops([...this.running]);
      this.deps.onLost(
        new LeaseLostError(
          `another process took over the replica id "${this.id}" (this one was gone longer than its lease ` +
            'TTL); it stops',
        ),
      );
      return;
    }
    this.renewedAt = sentAt;
    if (this.stalled) this.deps.log.info('leases renewed again; work resumes');
    this.stalled = false;
    const now = new Map(beat.leases.map((l) => [l.name, l.epoch]));
    for (const [name, epoch] of [...this.held])
      if (now.get(name) !== epoch) await this.lost(name, 'another replica took its lease over');
    // leases of an earlier process with this id (it crashed): taken again with a new epoch, or given away
    const earlier = beat.leases.filter((l) => !this.held.has(l.name));
    this.members = beat.members;
    this.silence.saw(beat.peers);
    this.beatAfterExpiry(beat.peers);
    if (beat.generation !== this.generation) {
      this.generation = beat.generation;
      this.deps.onGeneration(beat.generation);
    }
    this.overdue = beat.peers.filter(isOverdue).map((p) => p.id);
    await this.rebalance(earlier);
  }

  /**
   * Another member's row expires before this replica's next heartbeat (it stopped renewing: killed, frozen, cut off):
   * beat just after that, so its mailboxes are taken over at its expiry rather than up to TTL/3 later. Every live
   * replica sees the same expiry, so all of them take their shares at once.
   */
  private beatAfterExpiry(peers: readonly PeerBeat[]): void {
    const inMs = Math.min(...peers.map((p) => (p.ttlS - p.silentS) * 1000));
    if (inMs >= this.ttlMs / 3) return;
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.expiryTimer = setTimeout(() => void this.beat(), inMs + EXPIRY_MARGIN_MS).unref();
  }

  /**
   * Opens the sessions of the mailboxes this replica will soon hold: those it owns whose lease another member still
   * holds (it hands them over), and those it will own once the members silent past their due renewal expire. They
   * are closed again when that changes (a silent member speaks) or when the replica cannot renew its own leases.
   * `mine`: what it owns now (a rebalance just took every lease of those that was free).
   */
  private prepareTakeover(mine: ReadonlySet<string>): void {
    const wanted = new Map<string, ServerConfig>();
    if (this.valid()) {
      const soon = new Set(mine);
      const survivors = this.members.filter((m) => !this.overdue.includes(m));
      if (this.overdue.length) for (const id of this.ownedAmong(survivors)) soon.add(id);
      for (const id of soon) if (!this.held.has(id)) wanted.set(id, this.desired.get(id)!.config);
    }
    this.prepared.keep(wanted);
  }

  /** The servers this replica owns when `members` (with this one) are the group. */
  private ownedAmong(members: readonly string[]): Set<string> {
    const servers = new Map<string, string>();
    for (const [id, { config }] of this.desired) servers.set(id, accountOf(config.spec));
    const owners = assign(members.includes(this.id) ? members : [...members, this.id], servers);
    return new Set([...owners].filter(([, owner]) => owner === this.id).map(([id]) => id));
  }

  /** A lease is gone (taken over or fenced): its loop stops at once; nothing more is written about it. */
  private async lost(name: string, why: string): Promise<void> {
    if (!this.held.has(name)) return;
    this.held.delete(name);
    this.deps.store.forget([name]);
    this.deps.log.warn({ server: name }, `lease lost: ${why}`);
    if (this.running.has(name)) await this.stopLoops([name]);
  }

  /** The replica's clock says its leases may soon expire: every loop stops (leases are kept for the next renewal). */
  private async checkClock(): Promise<void> {
    if (this.valid() || this.stalled || this.stopped) return;
    this.stalled = true;
    this.prepared.dropAll();
    this.deps.log.warn(
      { renewedSecondsAgo: Math.round(this.renewalAgeS() * 10) / 10 },
      'leases not renewed for 2/3 of their TTL: every loop stops until a renewal succeeds',
    );
    await this.serially(() => this.stopLoops([...this.running]));
  }

  private async stopLoops(ids: string[]): Promise<void> {
    await Promise.all(
      ids.map(async (id) => {
        this.running.delete(id);
        await this.deps.supervisor.stop(id);
      }),
    );
  }

  /** Gives away what this replica no longer owns, takes what it now owns, and runs the loops of what it holds. */
  private async rebalance(earlier: HeldLease[] = []): Promise<void> {
    if (!this.valid()) return;
    const mine = this.ownedAmong(this.members);
    const away = [...this.held.keys()].filter((name) => name !== RECONCILER_LEASE && !mine.has(name));
    if (away.length) {
      await this.stopLoops(away.filter((id) => this.running.has(id)));
      const leases = away.map((name) => ({ name, epoch: this.held.get(name)! }));
      for (const name of away) this.held.delete(name);
      this.deps.log.info({ servers: away.length }, 'handing servers over to their new owners');
      await this.deps.store.release(leases).catch(() => undefined); // unreachable: they expire by themselves
    }
    const stale = earlier.filter((l) => l.name !== RECONCILER_LEASE && !mine.has(l.name));
    if (stale.length) await this.deps.store.release(stale).catch(() => undefined);
    const wanted = [...mine].filter((id) => !this.held.has(id));
    if (!this.held.has(RECONCILER_LEASE)) wanted.push(RECONCILER_LEASE);
    if (wanted.length) {
      const taken = await this.deps.store.acquire(wanted).catch(() => []);
      this.deps.store.hold(taken);
      for (const l of taken) this.held.set(l.name, l.epoch);
      const servers = taken.filter((l) => l.name !== RECONCILER_LEASE);
      if (servers.length)
        this.deps.log.info({ servers: servers.length, members: this.members.length }, 'took over servers');
      if (taken.some((l) => l.name === RECONCILER_LEASE)) this.deps.onReconciler();
    }
    let onPrepared = 0;
    for (const id of mine) {
      const want = this.desired.get(id);
      if (!want || !this.held.has(id) || this.running.has(id) || !this.valid()) continue;
      this.running.add(id);
      const opened = this.prepared.take(id, want.config);
      if (opened) onPrepared += 1;
      await this.deps.supervisor.start(id, want.config, want.digest, opened);
    }
    if (onPrepared) this.deps.log.info({ servers: onPrepared }, 'loops started on sessions opened in advance');
    this.prepareTakeover(mine);
  }

  // LoopControl: what the reconciler (and a follower) asks for, carried out for the servers this replica owns

  start(id: string, config: ServerConfig, secretDigest?: string, opened?: OpenedImap): Promise<void> {
    return this.serially(async () => {
      this.desired.set(id, { config, digest: secretDigest });
      if (this.holds(id)) {
        this.running.add(id);
        await this.deps.supervisor.start(id, config, secretDigest, opened);
        return;
      }
      // apply's verification opened it: kept for the loop should this replica take the lease (else closed)
      if (opened) this.prepared.adopt(id, config, opened);
      this.rebalanceSoon();
    });
  }

  update(id: string, config: ServerConfig): void {
    const want = this.desired.get(id);
    if (want) want.config = config;
    this.deps.supervisor.update(id, config);
  }

  stop(id: string): Promise<void> {
    return this.serially(async () => {
      this.desired.delete(id);
      if (this.running.has(id)) await this.stopLoops([id]);
      this.rebalanceSoon(); // its lease is given up with the rest of what this replica does not own
    });
  }

  /** One rebalance REBALANCE_AFTER_MS after the last of a run of starts and stops. */
  private rebalanceSoon(): void {
    if (this.rebalanceTimer) clearTimeout(this.rebalanceTimer);
    this.rebalanceTimer = setTimeout(() => {
      this.rebalanceTimer = null;
      void this.serially(() => this.rebalance()).catch((err: unknown) =>
        this.deps.log.error({ err: (err as Error).message }, 'could not compute the owners again'),
      );
    }, REBALANCE_AFTER_MS).unref();
  }

  openFor(...args: Parameters<Supervisor['openFor']>): ReturnType<Supervisor['openFor']> {
    return this.deps.supervisor.openFor(...args);
  }

  secretDigests(): Record<string, string> {
    return this.deps.supervisor.secretDigests();
  }

  private leaving: Promise<void> | null = null;

  /** SIGTERM: every loop stops, then every lease and the membership are given up at once (others take over now). */
  leave(): Promise<void> {
    this.leaving ??= this.leaveNow();
    return this.leaving;
  }

  private async leaveNow(): Promise<void> {
    this.stopped = true;
    if (this.beatTimer) clearInterval(this.beatTimer);
    if (this.clockTimer) clearInterval(this.clockTimer);
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    if (this.rebalanceTimer) clearTimeout(this.rebalanceTimer);
    this.silence.stop();
    this.prepared.dropAll();
    await this.serially(() => this.stopLoops([...this.running]));
    this.held.clear();
    await this.deps.store.leave().catch(() => undefined); // unreachable: everything expires by itself
  }
}
