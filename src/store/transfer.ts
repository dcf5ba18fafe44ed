/**
 * `mailctl store import --from-state-dir DIR --store URL`: a file store's state folder copied into an empty PostgreSQL
 * store, so that a daemon on the database resumes exactly where the file daemon stopped. Under the folder's lock (a
 * daemon running on it is refused) and the store's lease (so is one running on the store), the folder is marked
 * `importing` first, then read, then copied in one transaction, then marked `imported`: from the first mark on, a
 * file-store daemon refuses to start on the folder, so no crash at any point can let both deliver the same mail.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Logger } from 'pino';
import { FileAppliedStore } from './file/applied.js';
import { CREDENTIALS_KEY_FILE } from './file/index.js';
import { listCheckpoints } from './file/checkpoint.js';
import { FileCredentialStore } from './file/credentials.js';
import { DeliveredLedger, ledgerFile } from './file/ledger.js';
import { FileOutboxStore } from './file/outbox.js';
import { LocalState } from './local.js';
import { StoreError } from './errors.js';
import type { StoreSnapshot } from './postgres/index.js';

export interface ImportSummary {
  from: string;
  to: string;
  /**
   * The folder's own credentials key, if it has one: the daemon on the store needs it (what it encrypted, it opens).
   */
  credentialsKeyFile: string | null;
  applied: boolean;
  applyLog: number;
  mailboxes: number;
  delivered: number;
  quarantined: number;
  outbox: { open: number; finished: number };
  credentials: number;
}

/** What the state folder holds, read as the file store reads it. */
async function readFileState(stateDir: string): Promise<StoreSnapshot> {
  const applied = new FileAppliedStore(stateDir);
  const checkpoints = new Map(
    (await listCheckpoints(stateDir)).map(({ checkpoint }) => [checkpoint.server, checkpoint]),
  );
  // every ledger, also of a mailbox whose checkpoint is gone (it is what recognises mail after a mailbox is recreated)
  const ledgers = (await readdir(path.join(stateDir, 'inbound')).catch(() => [] as string[]))
    .filter((n) => n.endsWith('.delivered') && !n.startsWith('.'))
    .map((n) => n.slice(0, -'.delivered'.length).replace('_', '/'));
  const inbound = [];
  for (const server of [...new Set([...checkpoints.keys(), ...ledgers])].sort()) {
    const [type = '', shortName = ''] = server.split('/');
    const delivered = await new DeliveredLedger(ledgerFile(stateDir, type, shortName)).entries();
    inbound.push({ server, checkpoint: checkpoints.get(server) ?? null, delivered });
  }
  const outbox = new FileOutboxStore(stateDir);
  const { open, finished } = await outbox.load(Date.now());
  await outbox.close();
  return {
    applied: await applied.read(),
    applyLog: await applied.recentLog(Number.MAX_SAFE_INTEGER),
    inbound,
    outbox: { open, finished },
    credentials: await new FileCredentialStore(stateDir).list(),
  };
}

export async function importFileState(options: {
  fromStateDir: string;
  url: string;
  schema: string;
  env: NodeJS.ProcessEnv;
  log?: Logger;
}): Promise<ImportSummary> {
  const from = path.resolve(options.fromStateDir);
  const folder = new LocalState(from);
  const files = await readdir(from).catch(() => null);
  if (files === null) throw new StoreError('import-source', `${from} is not a state folder (it cannot be read)`);
  const { openPostgresStore } = await import('./postgres/index.js');
  // the store's lease is held under a name of its own: the import is not a daemon of any folder
  const scratch = await mkdtemp(path.join(tmpdir(), 'mailctl-import-'));
  const store = await openPostgresStore({
    url: options.url,
    schema: options.schema,
    local: new LocalState(scratch),
    env: options.env,
    log: options.log,
  });
  try {
    const mark = await folder.importMark();
    if (mark?.state === 'imported')
      throw new StoreError('import-done', `${from} was imported into ${mark.store} already (${mark.at})`);
    if (mark && mark.store !== store.location)
      throw new StoreError(
        'import-elsewhere',
        `${from} is being imported into ${mark.store}; finish that import first`,
      );
    const folderLock = await folder.lock(); // a daemon running on the folder: LockHeldError
    try {
      const storeLock = await store.lock(); // a daemon running on the store: LockHeldError
      try {
        await folder.markImported({ store: store.location, state: 'importing', at: new Date().toISOString() });
        const snapshot = await readFileState(from);
        await store.importSnapshot(snapshot).catch(async (err: unknown) => {
          // refused before anything was written: the folder stays a file store's (any other failure may have
          // committed, so the mark stays and the import is run again)
          if (err instanceof StoreError && err.code === 'store-not-empty') await folder.clearImportMark();
          throw err;
        });
        await folder.markImported({ store: store.location, state: 'imported', at: new Date().toISOString() });
        return {
          from,
          to: store.location,
          credentialsKeyFile: files.includes(CREDENTIALS_KEY_FILE) ? path.join(from, CREDENTIALS_KEY_FILE) : null,
          applied: snapshot.applied !== null,
          applyLog: snapshot.applyLog.length,
          mailboxes: snapshot.inbound.filter((m) => m.checkpoint).length,
          delivered: snapshot.inbound.reduce((n, m) => n + m.delivered.length, 0),
          quarantined: snapshot.inbound.reduce((n, m) => n + Object.keys(m.checkpoint?.quarantined ?? {}).length, 0),
          outbox: { open: snapshot.outbox.open.length, finished: snapshot.outbox.finished.length },
          credentials: snapshot.credentials.length,
        };
      } finally {
        await storeLock.release();
      }
    } finally {
      await folderLock.release();
    }
  } finally {
    await store.close();
    await rm(scratch, { recursive: true, force: true });
  }
}
