/**
 * Kept credentials in `credentials/<id>.json` (0600, atomic writes): already encrypted by the caller, so the files hold
 * ciphertext only. One daemon per state folder, so exclusivity is a lock in this process.
 */
import { readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { ensurePrivateDir, writeFileAtomic } from '../../adapters/durable-files.js';
import type { CredentialStore, KeptCredential } from '../ports.js';

/** Credential ids are `oauth2/<12 hex>`; anything else never becomes a file name. */
const fileName = (id: string): string => {
  if (!/^[a-z0-9]+\/[0-9a-f]{12}$/.test(id)) throw new Error(`not a credential id: ${JSON.stringify(id)}`);
  return `${id.replace('/', '_')}.json`;
};

export class FileCredentialStore implements CredentialStore {
  private readonly dir: string;
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(stateDir: string) {
    this.dir = path.join(stateDir, 'credentials');
  }

  async get(id: string): Promise<KeptCredential | null> {
    const text = await readFile(path.join(this.dir, fileName(id)), 'utf8').catch(() => null);
    return text === null ? null : (JSON.parse(text) as KeptCredential);
  }

  async put(credential: KeptCredential): Promise<void> {
    await ensurePrivateDir(this.dir);
    await writeFileAtomic(path.join(this.dir, fileName(credential.id)), JSON.stringify(credential));
  }

  /** Every kept credential (to copy them into another store). */
  async list(): Promise<KeptCredential[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    const files = names.filter((n) => /^[a-z0-9]+_[0-9a-f]{12}\.json$/.test(n)).sort();
    return Promise.all(
      files.map(async (n) => JSON.parse(await readFile(path.join(this.dir, n), 'utf8')) as KeptCredential),
    );
  }

  async remove(id: string): Promise<void> {
    await rm(path.join(this.dir, fileName(id)), { force: true });
  }

  exclusive<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(id) ?? Promise.resolve();
    const run = previous.then(fn, fn);
    const settled = run.catch(() => undefined);
    this.locks.set(id, settled);
    void settled.then(() => this.locks.get(id) === settled && this.locks.delete(id));
    return run;
  }
}
