import type {
  DaemonStatus,
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
