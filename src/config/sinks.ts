/**
 * What a flow's sink asks of the daemon's store. The PostgreSQL sink (`deliver: { postgres: { table } }`) writes rows
 * into a table of the store's own schema, in the transaction that records the batch: only a PostgreSQL store can keep
 * it, and its table may not take the name of one of the store's own tables.
 */
import type { Diagnostic } from './diagnostics.js';
import type { FlowSpec, LoadedFlow } from './model.js';

export type StoreKind = 'file' | 'postgres';

export const DEFAULT_QUEUE_TABLE = 'inbound_messages';

/** The tables the PostgreSQL store keeps in its schema (src/store/postgres/migrations.ts creates exactly these). */
export const STORE_TABLES = [
  'migrations',
  'leases',
  'settings',
  'applied',
  'apply_log',
  'checkpoints',
  'delivered',
  'outbox',
  'credentials',
  'queue_tables',
  'replicas',
] as const;

/** The queue table a flow delivers into, or null when its sink is not the PostgreSQL one. */
export const queueTableOf = (flow: Pick<FlowSpec, 'deliver'>): string | null =>
  flow.deliver.postgres ? (flow.deliver.postgres.table ?? DEFAULT_QUEUE_TABLE) : null;

/**
 * The flows a store of this kind cannot deliver, as errors naming each flow: a PostgreSQL sink needs a PostgreSQL
 * store. `plan` checks them against the running state's store, the daemon against its own.
 */
export function storeFindings(flows: readonly LoadedFlow[], store: StoreKind): Diagnostic[] {
  if (store === 'postgres') return [];
  return flows
    .filter((flow) => queueTableOf(flow.spec) !== null)
    .map((flow) => {
      const { line, column } = flow.source.locate(['deliver', 'postgres'], true);
      return {
        file: flow.source.file,
        line,
        column,
        severity: 'error' as const,
        code: 'sink-needs-postgres-store',
        message:
          `the email flow "${flow.spec.name}" delivers into PostgreSQL (deliver.postgres), but the daemon's ` +
          'store is a state folder (file): run the daemon with --store postgres://… or deliver to a directory or ' +
          'webhook',
        resource: flow.id,
      };
    });
}
