/**
 * Ports for all daemon state (ports.ts) and their implementations: `file/`, the embedded default (the state folder),
 * and `postgres/`, the shared one. One contract test suite (test/store/contract.ts) runs against each.
 */
export * from './ports.js';
export { LocalState } from './local.js';
export { openFileStore } from './file/index.js';
