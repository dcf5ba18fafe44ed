/**
 * Which store the daemon keeps its state in: `--store file` (the default: the state folder) or `--store
 * postgres://…` with `--store-schema` (default `mailctl`). PostgreSQL's driver is loaded only when it is asked for.
 */
import type { Logger } from 'pino';
import { openFileStore } from './file/index.js';
import type { LocalState } from './local.js';
import { StoreError } from './errors.js';
import { type Store } from './ports.js';
import { isStoreUrl, storeLocation } from './postgres/url.js';

const DEFAULT_SCHEMA = 'mailctl';

export type StoreSpec = { kind: 'file' } | { kind: 'postgres'; url: string; schema: string; location: string };

/** `--store` / `MAILCTL_STORE` and `--store-schema`, checked (a bad URL is refused here, before anything starts). */
export function parseStoreSpec(store: string | undefined, schema: string | undefined): StoreSpec {
  if (store === undefined || store === 'file') {
    if (schema !== undefined)
      throw new StoreError('store-schema', '--store-schema applies to a PostgreSQL store (--store postgres://…)');
    return { kind: 'file' };
  }
  // the value is not repeated: it may be a URL with a password in it
  if (!isStoreUrl(store))
    throw new StoreError('store-url', '--store must be "file" or a URL postgres://USER@HOST:PORT/DATABASE');
  const s = schema ?? DEFAULT_SCHEMA;
  return { kind: 'postgres', url: store, schema: s, location: storeLocation(store, s) };
}

export async function openStore(
  spec: StoreSpec,
  where: { local: LocalState; env: NodeJS.ProcessEnv; log?: Logger | undefined; leaseTtlS?: number | undefined },
): Promise<Store> {
  if (spec.kind === 'file') return openFileStore(where.local);
  const { openPostgresStore } = await import('./postgres/index.js');
  return openPostgresStore({ url: spec.url, schema: spec.schema, ...where });
}
