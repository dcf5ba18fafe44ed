/**
 * A second process for the store contract's lock tests: opens a store and takes its lock. The store: `file
 * STATE_DIR`, or `postgres URL SCHEMA STATE_DIR` (the password in PGPASSWORD). Then, optionally: a file to wait for
 * before taking it (a start line for several children: each prints `ready` once its store is open), and how long to
 * hold the lock in ms. Exit 0: taken (and released); 3: refused with LockHeldError (its message on stderr); anything
 * else: a failure.
 */
import { access } from 'node:fs/promises';
import { openFileStore } from '../../src/store/file/index.js';
import { LocalState } from '../../src/store/local.js';
import { LockHeldError } from '../../src/store/errors.js';
import { type Store } from '../../src/store/ports.js';
import { openPostgresStore } from '../../src/store/postgres/index.js';

const [kind, ...rest] = process.argv.slice(2);
const where = rest.splice(0, kind === 'postgres' ? 3 : 1);
const [startFile, holdMs] = rest;

async function open(): Promise<Store> {
  if (kind === 'file') return openFileStore(new LocalState(where[0]!));
  if (kind === 'postgres')
    return openPostgresStore({ url: where[0]!, schema: where[1]!, local: new LocalState(where[2]!), env: process.env });
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
