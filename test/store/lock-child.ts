/**
 * A second process for the store contract's lock tests: opens the store at argv[3] (kind argv[2]) and takes its lock.
 * Optional: argv[4], a file to wait for before taking it (a start line for several children: each prints `ready` once
 * its store is open); argv[5], how long to hold the lock in ms. Exit 0: taken (and released); 3: refused with
 * LockHeldError (its message on stderr); anything else: a failure.
 */
import { access } from 'node:fs/promises';
import { openFileStore } from '../../src/store/file/index.js';
import { LocalState } from '../../src/store/local.js';
import { LockHeldError, type Store } from '../../src/store/ports.js';

const [kind, location, startFile, holdMs] = process.argv.slice(2);

async function open(): Promise<Store> {
  if (kind === 'file') return openFileStore(new LocalState(location!));
  throw new Error(`unknown store kind ${kind}`);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const store = await open();
try {
  if (startFile) {
    process.stdout.write('ready\n');
    while (
      !(await access(startFile).then(
        () => true,
        () => false,
      ))
    )
      await sleep(2);
  }
  const lock = await store.lock();
  await sleep(Number(holdMs ?? 0));
  await lock.release();
  process.exitCode = 0;
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exitCode = err instanceof LockHeldError ? 3 : 1;
} finally {
  await store.close();
}
