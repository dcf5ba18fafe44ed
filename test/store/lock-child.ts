/**
 * A second process for the store contract's lock test: opens the store at argv[3] (kind argv[2]) and takes its lock.
 * Exit 0: taken (and released); 3: refused with LockHeldError (its message on stderr); anything else: a failure.
 */
import { openFileStore } from '../../src/store/file/index.js';
import { LocalState } from '../../src/store/local.js';
import { LockHeldError, type Store } from '../../src/store/ports.js';

const [kind, location] = process.argv.slice(2);

async function open(): Promise<Store> {
  if (kind === 'file') return openFileStore(new LocalState(location!));
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
