import { parseStoreSpec } from '../../store/open.js';
import { LockHeldError, StoreError } from '../../store/errors.js';
import { stringOption, type Command, type Values } from '../command.js';
import { EXIT, UserError } from '../errors.js';
import { show } from '../output.js';

const USAGE =
  'mailctl store migrate --store postgres://USER@HOST:PORT/DB [--store-schema NAME]\n' +
  '       mailctl store import --from-state-dir DIR --store postgres://USER@HOST:PORT/DB [--store-schema NAME]';

/**
 * `--store` (or MAILCTL_STORE) as a PostgreSQL store: these commands have nothing to do with a state folder's store.
 */
function postgresOf(values: Values, env: NodeJS.ProcessEnv): { url: string; schema: string; location: string } {
  const spec = parseStoreSpec(stringOption(values, 'store') ?? env.MAILCTL_STORE, stringOption(values, 'store-schema'));
  if (spec.kind !== 'postgres')
    throw new UserError(`--store must be a PostgreSQL store (postgres://…)\nusage: ${USAGE}`);
  return spec;
}

export const storeCommand: Command = {
  name: 'store',
  summary: 'store migrate: create or upgrade a PostgreSQL store; store import: copy a state folder into an empty one',
  usage: USAGE,
  options: {
    store: { type: 'string' },
    'store-schema': { type: 'string' },
    'from-state-dir': { type: 'string' },
  },
  subcommands: ['migrate', 'import'],
  positionals: 1,
  async run({ values, positionals, output, io }) {
    const [sub] = positionals;
    if (sub !== 'migrate' && sub !== 'import')
      throw new UserError(
        `${sub === undefined ? 'missing subcommand' : `unknown subcommand "${sub}"`}\nusage: ${USAGE}`,
      );
    try {
      const { url, schema } = postgresOf(values, io.env);
      if (sub === 'migrate') {
        const { migrateStore } = await import('../../store/postgres/index.js');
        const r = await migrateStore({ url, schema, env: io.env });
        show(
          output,
          { store: r.location, from: r.from, to: r.to },
          {
            text: () =>
              output.out(
                r.from === r.to
                  ? `${r.location}: schema at version ${r.to}, nothing to do`
                  : `${r.location}: schema migrated from version ${r.from} to ${r.to}`,
              ),
          },
        );
        return EXIT.ok;
      }
      const fromStateDir = stringOption(values, 'from-state-dir');
      if (fromStateDir === undefined) throw new UserError(`store import needs --from-state-dir DIR\nusage: ${USAGE}`);
      const { importFileState } = await import('../../store/transfer.js');
      const r = await importFileState({ fromStateDir, url, schema, env: io.env });
      show(
        output,
        { ...r },
        {
          text: () => {
            output.out(`imported ${r.from} into ${r.to}:`);
            output.out(
              `  applied configuration: ${r.applied ? 'yes' : 'none'}, apply log: ${r.applyLog} entries, kept ` +
                `credentials: ${r.credentials}`,
            );
            output.out(
              `  mailboxes: ${r.mailboxes} checkpoints, ${r.delivered} delivered-ledger entries, ` +
                `${r.quarantined} quarantined`,
            );
            output.out(`  outbox: ${r.outbox.open} waiting, ${r.outbox.finished} finished`);
            const storeSchema = schema === 'mailctl' ? '' : ` --store-schema ${schema}`;
            const storeFlags = `--store ${r.to.replace(/ \(schema .*\)$/, '')}${storeSchema}`;
            output.out(`the folder is marked as imported: a daemon on it now needs ${storeFlags}`);
            // kept credentials are encrypted, and bindings by identity made, under that key
            if (r.credentialsKeyFile)
              output.out(`and the folder's credentials key: --credentials-key-file ${r.credentialsKeyFile}`);
          },
        },
      );
      return EXIT.ok;
    } catch (err) {
      if (err instanceof LockHeldError) throw new UserError(err.message, EXIT.error, 'lock-held');
      if (err instanceof StoreError) throw new UserError(err.message, EXIT.error, err.code);
      throw err;
    }
  },
};
