/**
 * The port of a group of replicas sharing one store (a PostgreSQL store): membership, one lease per mailbox with its
 * epoch (the fencing token), and what each replica says about itself. store/postgres/group.ts implements it.
 */
/** A replica of a group: who it is, for membership (one live process per id) and for other replicas to reach it. */
export interface ReplicaIdentity {
  /** `--replica-id` (default: the host name). */
  id: string;
  pid: number;
  host: string;
  /** Where the other replicas reach its API (`apply` and quarantine releases are forwarded there). */
  url: string;
  /** `--lease-ttl` in seconds: its leases expire this long after their last renewal (the database's clock). */
  ttlS: number;
  /** `--sink-shared`: the operator says every replica's sink roots are one shared file system. */
  sinkShared: boolean;
}

/** `--lease-ttl` default and minimum, in seconds. */
export const DEFAULT_LEASE_TTL_S = 15;
export const MIN_LEASE_TTL_S = 3;

/** The lease of the one replica of a group that reconciles (verifies and writes the applied configuration). */
export const RECONCILER_LEASE = 'reconciler';

/** A lease this replica holds: its name (a server id such as `imap/support`, or `reconciler`) and epoch. */
export interface HeldLease {
  name: string;
  epoch: number;
}

/** What the replicas of a group tell each other at once (everything is also found by asking). */
export type GroupNotice = 'applied' | 'outbox' | 'beat';

/** A replica as the group sees it. */
export interface ReplicaView {
  id: string;
  url: string;
  host: string;
  pid: number;
  startedAt: string;
  heartbeatAt: string;
  /** Seconds since its heartbeat, by the database's clock (as `live` is). */
  heartbeatAgeS: number;
  /** Live: its heartbeat has not expired (by the database's clock). */
  live: boolean;
  sinkShared: boolean;
  /** What the replica last wrote about itself (its loops, the generation it runs, config drift). */
  snapshot: ReplicaSnapshot | null;
}

/** The group as the store shows it: every replica's row (live or not), and each live lease's holder and epoch. */
export interface GroupView {
  replicas: ReplicaView[];
  leases: Record<string, { holder: string; epoch: number }>;
}

/** What a replica writes about itself with each heartbeat (compact: a few bytes per loop). */
export interface ReplicaSnapshot {
  /** The applied generation it runs. */
  generation: number;
  /** Its folder differs from the applied generation (it keeps running the applied one). */
  drift: boolean;
  /** Per server it runs: state, since, last success, lease epoch. */
  loops: Record<string, { state: string; since: string; lastSuccess: string | null; epoch: number }>;
}

/** What one heartbeat learnt: the leases still held, the group, and the applied generation. */
export interface Heartbeat {
  /** false: this process's membership was taken over (another process with its id after its heartbeat expired). */
  member: boolean;
  /** Every lease it still holds (renewed by this same statement), with its epoch. */
  leases: HeldLease[];
  /** The live replicas' ids, sorted (including this one). */
  members: string[];
  /** The applied configuration's generation (0 before the first apply). */
  generation: number;
  /** The other live members: how long each has been silent and its TTL (the store's clock). */
  peers: PeerBeat[];
}

/** Another live member as a heartbeat sees it: its row expires `ttlS - silentS` seconds from now. */
export interface PeerBeat {
  id: string;
  /** Seconds since its last heartbeat, by the store's clock. */
  silentS: number;
  /** Its lease TTL in seconds (it renews every third of it). */
  ttlS: number;
}

/**
 * The group of daemons (replicas) sharing one store: membership, one lease per mailbox (and one for the reconciler)
 * with an epoch that every write about that mailbox checks in its own transaction (the fencing token), and what the
 * replicas say about themselves. Expiry is decided by the store's clock, never a replica's.
 */
export interface GroupStore {
  /**
   * Joins as `me`: a replica row with a token of this process. A live process with the same id (another host, or
   * another state folder) is refused with LockHeldError. Call once, before anything else.
   */
  join(me: ReplicaIdentity): Promise<void>;
  /** One statement: the heartbeat, every lease renewed, the live members and the applied generation read. */
  heartbeat(snapshot: ReplicaSnapshot | null): Promise<Heartbeat>;
  /** Takes the named leases that are free, expired or already this replica's (epoch + 1): those taken, with epochs. */
  acquire(names: readonly string[]): Promise<HeldLease[]>;
  /** Gives the leases up at once (their epochs stay for the next holder); leases no longer held are skipped. */
  release(leases: readonly HeldLease[]): Promise<void>;
  /** What this process believes it holds: each write about `name` is fenced by it (the store's own bookkeeping). */
  hold(leases: readonly HeldLease[]): void;
  forget(names: readonly string[]): void;
  /** Every replica row (live or not), and each lease's holder and epoch. */
  view(): Promise<GroupView>;
  /** Called with a lease's name when a write about it was refused because a newer owner holds it (fenced). */
  onFenced(listener: (name: string) => void): void;
  /**
   * Calls `listener` when another replica applied a new generation, accepted outbound mail, or sent a heartbeat
   * (payload: its id) (LISTEN; notices may be lost).
   */
  listen(listener: (channel: GroupNotice, payload: string) => void): Promise<void>;
  /** Leaves the group: its leases and row expire at once. */
  leave(): Promise<void>;
}
