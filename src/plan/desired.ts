import type { FlowSpec, LoadedFlow, LoadedServer } from '../config/model.js';
import { flowOf } from './compute.js';
import type { DesiredState, ObservedState } from './model.js';

/** The desired state of a folder: every valid server with the flow it routes into. */
export function desiredState(servers: readonly LoadedServer[], flows: readonly LoadedFlow[]): DesiredState {
  const flowByName = new Map<string, FlowSpec>(flows.map((f) => [f.spec.name, f.spec]));
  const desired: DesiredState = { servers: {} };
  for (const { id, spec } of servers) {
    const flow = flowOf(spec, flowByName);
    desired.servers[id] = flow ? { spec, flow } : { spec };
  }
  return desired;
}

/** A first deployment: nothing runs and no secret is bound yet (`plan --state empty`). */
export const EMPTY_STATE: ObservedState = { servers: {}, bindings: {}, revision: null };
