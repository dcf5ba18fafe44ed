/** What the daemon's wiring needs about its group: defaults, the URL others reach it at, and what it says of itself. */
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { DaemonStatus } from '../../api/status.js';
import type { GroupStore, GroupView, ReplicaSnapshot } from '../../store/group-ports.js';
import { withGroup } from '../daemon/status.js';
import type { Supervisor } from '../loops/supervisor.js';
import type { Reconciler } from '../reconcile/reconciler.js';
import type { ReplicaGroup } from './replica.js';

/** Where the other replicas reach this one: the address it listens on, or its host name when it listens on all. */
export function advertisedUrl(address: AddressInfo): string {
  const any = address.address === '0.0.0.0' || address.address === '::';
  const host = any ? hostname() : address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `http://${host}:${address.port}`;
}

/**
 * A directory sink in a group of more than one replica would scatter a queue over the replicas' volumes: refused
 * unless every replica runs with --sink-shared (the operator says the sink roots are one shared file system).
 */
export function directorySinkRefusal(replicas: number, shared: boolean | undefined): string | null {
  return replicas > 1 && !shared
    ? `a directory sink with ${replicas} replicas needs --sink-shared on every replica (their sink roots one shared ` +
        'file system); use the postgres or webhook sink otherwise'
    : null;
}

/** What this replica writes about itself with each heartbeat: a few bytes per loop. */
export function replicaSnapshot(reconciler: Reconciler, supervisor: Supervisor, group: ReplicaGroup): ReplicaSnapshot {
  const loops: ReplicaSnapshot['loops'] = {};
  for (const [id, s] of supervisor.statuses())
    loops[id] = { state: s.state, since: s.since, lastSuccess: s.lastSuccess, epoch: group.epochOf(id) ?? 0 };
  return { generation: reconciler.generation, drift: reconciler.drift, loops };
}

/** How long `status` waits for the store's view of the group before it shows the last one read. */
const VIEW_WAIT_MS = 1000;

/**
 * A replica's `status`: its own with the group's, read from the store on each request (two small queries); while the
 * store does not answer in time, the last view read (its `readAt` says when).
 */
export function groupStatus(
  store: GroupStore,
  me: string,
  reconciler: Pick<Reconciler, 'generation' | 'drift'>,
): (own: DaemonStatus) => Promise<DaemonStatus> {
  let last: { view: GroupView; readAt: string | null } = { view: { replicas: [], leases: {} }, readAt: null };
  return async (own) => {
    const read = store.view().then((view) => (last = { view, readAt: new Date().toISOString() }));
    await Promise.race([read.catch(() => undefined), sleep(VIEW_WAIT_MS, undefined, { ref: false })]);
    return withGroup(own, { me, ...last, self: { generation: reconciler.generation, drift: reconciler.drift } });
  };
}
