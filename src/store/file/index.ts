/**
 * The file store: the daemon's state in its state folder (0700, files 0600, atomic writes, `formatVersion` in every
 * file) — the embedded default, for one daemon per folder.
 */
import path from 'node:path';
import { LocalState } from '../local.js';
import { StoreError } from '../errors.js';
import { type Store, type StoreHealth, type TokenStore } from '../ports.js';
import { FileAppliedStore } from './applied.js';
import { FileCredentialStore } from './credentials.js';
import { FileInboundStore } from './inbound.js';
import { FileOutboxStore } from './outbox.js';

/** The API token lives in `api-token`, where clients on this machine find it. */
class FileTokenStore implements TokenStore {
  constructor(private readonly local: LocalState) {}

  async establish(given: string | undefined): Promise<string> {
    const token = given ?? (await this.local.readToken()) ?? LocalState.newToken();
    await this.local.writeToken(token);
    return token;
  }
}

/** The credentials key the daemon creates in the state folder when it is not given one (`--credentials-key-file`). */
export const CREDENTIALS_KEY_FILE = 'credentials-key';

/** A folder on this machine answers whenever the process runs. */
const ALWAYS: StoreHealth = { problem: () => null, whenAvailable: () => Promise.resolve() };

/**
 * The store in `local`'s folder (the daemon's state folder); its lock is the folder's `daemon.lock`. A folder whose
 * state was imported into another store is refused: a daemon on it would deliver that mail again.
 */
export async function openFileStore(local: LocalState): Promise<Store> {
  await local.init();
  const stateDir = local.dir;
  const imported = await local.importMark();
  if (imported)
    throw new StoreError(
      'state-imported',
      `the state folder ${stateDir} was ${imported.state === 'imported' ? 'imported' : 'being imported'} into ` +
        `${imported.store} (${imported.at}): run the daemon with --store on that store; a file-store daemon here ` +
        'would deliver its mail again',
    );
  return {
    kind: 'file',
    location: stateDir,
    applied: new FileAppliedStore(stateDir),
    inbound: new FileInboundStore(stateDir),
    outbox: new FileOutboxStore(stateDir),
    credentials: new FileCredentialStore(stateDir),
    token: new FileTokenStore(local),
    health: ALWAYS,
    ownCredentialsKeyFile: path.join(stateDir, CREDENTIALS_KEY_FILE),
    // nobody else can take a folder's lock while this process lives: it is never lost
    lock: async () => ({ ...(await local.lock()), onLost: () => undefined }),
    // one daemon owns a state folder: no group
    group: null,
    close: () => Promise.resolve(),
  };
}
