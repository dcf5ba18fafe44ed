/**
 * A second process for the store contract's lock test: opens a store and takes its lock. Arguments: `file STATE_DIR`,
 * or `postgres URL SCHEMA STATE_DIR` (the password in PGPASSWORD). Exit 0: taken (and released); 3: refused with
 * LockHeldError (its message on stderr); anything else: a failure.
 */
import { openFileStore } from '../../src/store/file/index.js';
import { LocalState } from '../../src/store/local.js';
import { LockHeldError, type Store } from '../../src/store/ports.js';
import { openPostgresStore } from '../../src/store/postgres/index.js';

const [kind, ...args] = process.argv.slice(2);

async function open(): Promise<Store> {
  if (kind === 'file') return openFileStore(new LocalState(args[0]!));
  if (kind === 'postgres')
    return openPostgresStore({ url: args[0]!, schema: args[1]!, local: new LocalState(args[2]!), env: process.env });
  throw new Error(`unknown store kind ${kind}`);
}

const store = await open();
try {
  const lock = await store.lock();
  await lock.release();
  process.exitCode = 0;
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exitCode = err instanceof LockHeldError ? 3 : 1;
} finally {
  await store.close();
}
