/**
 * The decisions a reconcile takes from a plan, as pure functions: which changes start a loop, when a plan deletes too
 * much to run unattended, and the running state an apply leaves behind. The reconciler carries them out; it decides
 * nothing itself. No file system, no network, no clock (times and revisions come in as arguments).
 */
import { nextBindings } from './bindings.js';
import { changedFields, RESTART_FIELDS } from './compute.js';
import {
  effectiveAction,
  type ObservedServer,
  type ObservedState,
  type Plan,
  type SecretIdentities,
  type ServerChange,
} from './model.js';

/** A change whose server ends up enabled and (re)connecting: it is verified first, then its loop starts. */
export const startsLoop = (change: ServerChange): boolean => {
  const action = effectiveAction(change);
  return Boolean(change.after?.spec.enabled) && (action === 'create' || action === 'start' || action === 'restart');
};

export interface DeleteGuards {
  /** `--allow-empty`: a folder that no longer holds any running server may stop them all. */
  allowEmpty: boolean;
  /** `--allow-mass-delete`: more than half the running servers may go in one change. */
  allowMassDelete: boolean;
}

/**
 * Argo CD's allowEmpty idea: a folder that empties, or loses over half its servers at once, stops nothing unless the
 * daemon was started to allow it. Returns why the plan is refused, or null.
 */
export function refuseDeletes(plan: Plan, applied: ObservedState, guards: DeleteGuards): string | null {
  const running = Object.keys(applied.servers).length;
  const removed = plan.changes.filter((c) => c.action === 'delete').length;
  if (running > 0 && removed === running && !guards.allowEmpty) {
    return (
      `the folder no longer holds any of the ${running} running server(s); nothing was stopped (start the ` +
      'daemon with --allow-empty to allow this)'
    );
  }
  if (running > 0 && removed > running / 2 && !guards.allowMassDelete) {
    return (
      `${removed} of ${running} servers would be deleted in one change; nothing was stopped (start the daemon ` +
      'with --allow-mass-delete to allow this)'
    );
  }
  return null;
}

/** Why a server failed verification, as recorded on a server saved as disabled. */
export interface FailedVerification {
  failureClass?: string;
  reason?: string;
}

/** The servers an apply adds bindings for: enabled, and not saved as disabled after failing verification. */
function appliedNow(plan: Plan, failed: ReadonlyMap<string, FailedVerification>): Set<string> {
  return new Set(plan.changes.filter((c) => c.after?.spec.enabled && !failed.has(c.id)).map((c) => c.id));
}

/**
 * The running state after applying `plan` to `applied`: changed servers take their new configuration (those that
 * failed verification are saved as disabled with the reason), deleted ones go, and the credential bindings grow by the
 * targets of the servers applied now.
 */
export function nextState(
  applied: ObservedState,
  plan: Plan,
  failed: ReadonlyMap<string, FailedVerification>,
  revision: string | null,
): ObservedState {
  const servers: Record<string, ObservedServer> = { ...applied.servers };
  for (const change of plan.changes) {
    if (!change.after) {
      delete servers[change.id];
      continue;
    }
    const failure = failed.get(change.id);
    const enabled = change.after.spec.enabled;
    servers[change.id] = failure
      ? {
          config: change.after,
          status: 'disabled',
          disabledReason: `verification failed: ${failure.failureClass}: ${failure.reason}`,
          revision,
        }
      : {
          config: change.after,
          status: enabled ? 'active' : 'disabled',
          ...(!enabled && { disabledReason: 'enabled: false' }),
          revision,
        };
  }
  return { servers, bindings: nextBindings(applied.bindings, servers, appliedNow(plan, failed)), revision };
}

/**
 * The identity bindings after applying `plan` (`next` is what nextState returned), grown like the reference bindings.
 */
export function nextIdentityBindings(
  identities: SecretIdentities,
  next: ObservedState,
  plan: Plan,
  failed: ReadonlyMap<string, FailedVerification>,
): SecretIdentities['bindings'] {
  return nextBindings(
    identities.bindings,
    next.servers,
    appliedNow(plan, failed),
    (reference) => identities.ofReference[reference],
  );
}

/** What the reconciler does with each change once the plan is verified (in plan order). */
export type Step = 'keep-disabled' | 'start' | 'update' | 'stop';

export function stepOf(change: ServerChange, failedVerification: boolean): Step {
  if (failedVerification) return 'keep-disabled';
  if (startsLoop(change)) return 'start';
  return effectiveAction(change) === 'update' ? 'update' : 'stop';
}

/**
 * What a replica that follows the applied configuration (it did not apply it) does to go from `before` to `after`:
 * per server, start (new, re-enabled, or a change that needs a new connection), update in place, or stop.
 */
export function followingSteps(
  before: ObservedState,
  after: ObservedState,
): { id: string; step: 'start' | 'update' | 'stop' }[] {
  const steps: { id: string; step: 'start' | 'update' | 'stop' }[] = [];
  const ids = new Set([...Object.keys(before.servers), ...Object.keys(after.servers)]);
  for (const id of [...ids].sort()) {
    const was = before.servers[id];
    const now = after.servers[id];
    const running = was?.status === 'active';
    if (now?.status !== 'active') {
      if (running) steps.push({ id, step: 'stop' });
      continue;
    }
    if (!running) steps.push({ id, step: 'start' });
    else {
      const fields = changedFields(was.config, now.config);
      if (fields.some((f) => RESTART_FIELDS.has(f.split('.')[0]!))) steps.push({ id, step: 'start' });
      else if (fields.length) steps.push({ id, step: 'update' });
    }
  }
  return steps;
}
