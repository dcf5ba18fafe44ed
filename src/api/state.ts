/** `GET /v1/state` (`mailctl state pull`): the running state a pull request's plan is computed against. */
import type { ObservedState } from '../plan/model.js';

export interface StatePull {
  formatVersion: string;
  kind: 'mailctl-state';
  stateDigest: string;
  state: ObservedState;
  /** The daemon's store: a plan against this state refuses what the store cannot do (a postgres sink on `file`). */
  store: { kind: 'file' | 'postgres' };
}
