import type {
  DaemonStatus,
  GroupStatus,
  OutboxSummary,
  ReconcileSummary,
  ServerState,
  ServerStatus,
  StoreStatus,
  SystemSendLoopStatus,
} from '../../api/status.js';
import type { CredentialStatus } from '../../api/credentials.js';
import { credentialOf, type OAuth2CredentialRef } from '../../config/oauth2.js';
import type { ObservedState } from '../../plan/model.js';
import { RECONCILER_LEASE, type GroupView } from '../../store/group-ports.js';
import type { LoopStatus } from '../loops/loop.js';

/** What the status needs of the daemon's OAuth2 credentials. */
export interface CredentialsView {
  needsLogin(id: string): boolean;
  status(credential: OAuth2CredentialRef, servers: string[]): CredentialStatus;
}

/** Joins what was applied with what the loops report now. */
export function buildStatus(input: {
  store: StoreStatus;
  systemSmtp: string | null;
  /** Supervisor id of the system send loop, when there is one. */
  systemLoopId?: string | null;
  outbox?: OutboxSummary | null;
  dir: string;
  ready: boolean;
  draining: boolean;
  applied: ObservedState;
  loops: ReadonlyMap<string, LoopStatus>;
  pendingApproval: ReadonlySet<string>;
  last: ReconcileSummary | null;
  stale?: ReadonlySet<string>;
  credentials?: CredentialsView;
}): DaemonStatus {
  const credentials = new Map<string, { credential: OAuth2CredentialRef; servers: string[] }>();
  const servers = Object.entries(input.applied.servers)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([id, server]): ServerStatus => {
      const loop = input.loops.get(id);
      const credential = credentialOf(server.config.spec);
      if (credential && server.status === 'active') {
        const shared = credentials.get(credential.id) ?? { credential, servers: [] };
        shared.servers.push(id);
        credentials.set(credential.id, shared);
      }
      // every server of a credential the provider refuses waits for a sign-in, also one whose session still runs
      const needsLogin = credential !== null && input.credentials?.needsLogin(credential.id) === true;
      const state: ServerState = input.pendingApproval.has(id)
        ? 'pending-approval'
        : server.status === 'disabled'
          ? 'disabled'
          : needsLogin
            ? 'needs-login'
            : (loop?.state ?? 'stopped');
      return {
        id,
        name: server.config.spec.name,
        type: server.config.spec.type,
        host: server.config.spec.host,
        enabled: server.status === 'active',
        state,
        since: loop?.since ?? null,
        lastSuccess: loop?.lastSuccess ?? null,
        lastError: loop?.lastError ?? null,
        disabledReason: server.disabledReason ?? null,
        revision: server.revision ?? null,
        counters: loop?.counters ?? {},
        stale: input.stale?.has(id) ?? false,
        credential: credential?.id ?? null,
      };
    });
  for (const id of input.pendingApproval) {
    if (!input.applied.servers[id]) {
      servers.push({
        id,
        name: id,
        type: id.startsWith('imap/') ? 'imap' : 'smtp',
        host: '',
        enabled: false,
        state: 'pending-approval',
        since: null,
        lastSuccess: null,
        lastError: null,
        disabledReason: 'waiting for --approve-rebind',
        revision: null,
        counters: {},
        stale: false,
        credential: null,
      });
    }
  }
  const last = input.last && {
    at: input.last.at,
    outcome: input.last.outcome,
    message: input.last.message,
    diagnostics: input.last.diagnostics,
  };
  const systemLoop = input.systemLoopId ? input.loops.get(input.systemLoopId) : undefined;
  const systemSendLoop: SystemSendLoopStatus | null = input.systemLoopId
    ? {
        id: input.systemLoopId,
        state: systemLoop?.state ?? 'stopped',
        since: systemLoop?.since ?? null,
        lastSuccess: systemLoop?.lastSuccess ?? null,
        lastError: systemLoop?.lastError ?? null,
        counters: systemLoop?.counters ?? {},
      }
    : null;
  return {
    dir: input.dir,
    store: input.store,
    systemSmtp: input.systemSmtp,
    systemSendLoop,
    outbox: input.outbox ?? null,
    ready: input.ready,
    draining: input.draining,
    revision: input.applied.revision ?? null,
    lastReconcile: last,
    servers,
    credentials: input.credentials
      ? [...credentials.values()].map(({ credential, servers: ids }) => input.credentials!.status(credential, ids))
      : [],
  };
}

/** Server states another replica decides: what its own loop reports (the rest follows from what was applied). */
const LOOP_STATES = new Set<ServerState>(['running', 'starting', 'backoff', 'failed', 'stopped']);

/**
 * A replica's status with its group's: the replicas (this one's generation and drift as it knows them now, the
 * others' as they last wrote them), and each server's owner and epoch by its lease. A server another replica owns
 * shows the state that replica last wrote; this replica's own servers keep what its loops report now.
 */
export function withGroup(
  status: DaemonStatus,
  group: { me: string; view: GroupView; readAt: string | null; self: { generation: number; drift: boolean } },
): DaemonStatus {
  const { me, view } = group;
  const snapshots = new Map(view.replicas.map((r) => [r.id, r.snapshot]));
  const servers = status.servers.map((s) => {
    const lease = view.leases[s.id];
    const owner = lease?.holder ?? null;
    const placed = { ...s, owner, epoch: lease?.epoch ?? null };
    if (owner === null || owner === me || !s.enabled || !LOOP_STATES.has(s.state)) return placed;
    const loop = snapshots.get(owner)?.loops[s.id];
    return {
      ...placed,
      state: (loop?.state as ServerState | undefined) ?? 'stopped',
      since: loop?.since ?? null,
      lastSuccess: loop?.lastSuccess ?? null,
      lastError: null,
      counters: {},
      stale: false, // this replica's watchdog watches its own loops only
    };
  });
  const owned = new Map<string, number>();
  for (const [name, { holder }] of Object.entries(view.leases))
    if (name !== RECONCILER_LEASE) owned.set(holder, (owned.get(holder) ?? 0) + 1);
  const replicas: GroupStatus['replicas'] = view.replicas.map((r) => {
    const said = r.id === me ? group.self : r.snapshot;
    return {
      id: r.id,
      host: r.host,
      live: r.live,
      heartbeatAt: r.heartbeatAt,
      heartbeatAgeS: Math.round(r.heartbeatAgeS * 10) / 10,
      loopsOwned: owned.get(r.id) ?? 0,
      reconciler: view.leases[RECONCILER_LEASE]?.holder === r.id,
      generation: said?.generation ?? null,
      drift: said?.drift ?? false,
    };
  });
  return { ...status, servers, group: { replica: me, replicas, readAt: group.readAt } };
}
