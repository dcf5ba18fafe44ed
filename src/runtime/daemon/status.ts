import type { FailureClass } from '../../adapters/connection.js';
import type { Diagnostic } from '../../config/diagnostics.js';
import type { ObservedState } from '../../plan/model.js';
import type { LoopStatus } from '../loops/loop.js';
import type { ReconcileSummary } from '../reconcile/reconciler.js';

export type ServerState = 'running' | 'starting' | 'backoff' | 'failed' | 'stopped' | 'disabled' | 'pending-approval';

export interface ServerStatus {
  id: string;
  name: string;
  type: 'imap' | 'smtp';
  enabled: boolean;
  state: ServerState;
  since: string | null;
  lastSuccess: string | null;
  lastError: { class: FailureClass; message: string; at: string } | null;
  disabledReason: string | null;
  revision: string | null;
  counters: Record<string, number>;
  /** An enabled IMAP server with no successful poll for 3× its poll interval (see staleness.ts). */
  stale: boolean;
}

/** Messages in the outbox by state, and damaged outbox files set aside (never sent). */
export interface OutboxSummary {
  queued: number;
  sending: number;
  /** Sent; the sent copy to the storage folder is pending. */
  copying: number;
  damagedFiles: number;
}

/** The send loop of the `--system-smtp` server (not an applied server, so not in `servers`). */
export interface SystemSendLoopStatus {
  id: string;
  state: ServerState;
  since: string | null;
  lastSuccess: string | null;
  lastError: ServerStatus['lastError'];
  counters: Record<string, number>;
}

export interface DaemonStatus {
  dir: string;
  /** Identity of the `--system-smtp` server, if one is configured. */
  systemSmtp: string | null;
  systemSendLoop: SystemSendLoopStatus | null;
  outbox: OutboxSummary | null;
  ready: boolean;
  draining: boolean;
  revision: string | null;
  lastReconcile: { at: string; outcome: string; message: string; diagnostics: Diagnostic[] } | null;
  servers: ServerStatus[];
}

/** Joins what was applied with what the loops report now. */
export function buildStatus(input: {
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
}): DaemonStatus {
  const servers = Object.entries(input.applied.servers)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([id, server]): ServerStatus => {
      const loop = input.loops.get(id);
      const state: ServerState = input.pendingApproval.has(id)
        ? 'pending-approval'
        : server.status === 'disabled'
          ? 'disabled'
          : (loop?.state ?? 'stopped');
      return {
        id,
        name: server.config.spec.name,
        type: server.config.spec.type,
        enabled: server.status === 'active',
        state,
        since: loop?.since ?? null,
        lastSuccess: loop?.lastSuccess ?? null,
        lastError: loop?.lastError ?? null,
        disabledReason: server.disabledReason ?? null,
        revision: server.revision ?? null,
        counters: loop?.counters ?? {},
        stale: input.stale?.has(id) ?? false,
      };
    });
  for (const id of input.pendingApproval) {
    if (!input.applied.servers[id]) {
      servers.push({
        id,
        name: id,
        type: id.startsWith('imap/') ? 'imap' : 'smtp',
        enabled: false,
        state: 'pending-approval',
        since: null,
        lastSuccess: null,
        lastError: null,
        disabledReason: 'waiting for --approve-rebind',
        revision: null,
        counters: {},
        stale: false,
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
    systemSmtp: input.systemSmtp,
    systemSendLoop,
    outbox: input.outbox ?? null,
    ready: input.ready,
    draining: input.draining,
    revision: input.applied.revision ?? null,
    lastReconcile: last,
    servers,
  };
}
