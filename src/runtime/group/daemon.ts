/** What the daemon's wiring needs about its group: defaults, the URL others reach it at, and what it says of itself. */
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import type { ReplicaSnapshot } from '../../store/ports.js';
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
