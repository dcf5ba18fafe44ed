/**
 * Ports for all daemon state (ports.ts; a group's in group-ports.ts; what they throw in errors.ts) and their
 * implementations: `file/`, the embedded default (the state folder), and `postgres/`, the shared one. One contract
 * test suite (test/store/contract.ts) runs against each.
 */
export * from './ports.js';
export * from './group-ports.js';
export * from './errors.js';
export { LocalState } from './local.js';
export { openFileStore } from './file/index.js';
