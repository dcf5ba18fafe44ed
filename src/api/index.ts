/**
 * The HTTP API's wire types: what the daemon answers and the CLI (and any other client) reads. Nothing here has
 * behaviour beyond small constants; the daemon builds these shapes and the CLI renders them, so both import only this.
 */
export const API_FORMAT_VERSION = '1';

export * from './apply.js';
export type * from './credentials.js';
export type * from './outbound.js';
export type * from './quarantine.js';
export type * from './state.js';
export type * from './status.js';
export * from './discovery.js';
