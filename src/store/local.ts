/**
 * The daemon's local state folder (0700): whatever the store, it holds the machine's lock (`daemon.lock`: one daemon
 * per folder), `daemon.json` and the API token for discovery (api/discovery.ts), and `instance-id`, the name this
 * folder's daemon holds a shared store under. With the file store it is also where the state lives; `imported.json`
 * says its state was copied into another store (`mailctl store import`), so no file-store daemon may run on it again.
 */
import { randomBytes } from 'node:crypto';
import { open, readFile, rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { ensurePrivateDir, writeFileAtomic } from '../adapters/durable-files.js';
import { DISCOVERY_FILE, TOKEN_FILE, type DaemonDiscovery } from '../api/discovery.js';
import { LockHeldError, type LockHolder } from './ports.js';

export const LOCK_FILE = 'daemon.lock';
const INSTANCE_FILE = 'instance-id';
const IMPORTED_FILE = 'imported.json';

/** Where a folder's state went (`mailctl store import`). */
export interface ImportMark {
  store: string;
  /** `importing` until the copy committed: a folder half-imported is as unusable for a file daemon as one imported. */
  state: 'importing' | 'imported';
  at: string;
}
const FORMAT_VERSION = '1';

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
};

export class LocalState {
  constructor(readonly dir: string) {}

  private file(name: string): string {
    return path.join(this.dir, name);
  }

  async init(): Promise<void> {
    await ensurePrivateDir(this.dir);
  }

  /** Takes `daemon.lock`; a lock left by a dead process is taken over. Resolves to the release function. */
  async lock(): Promise<{ release(): Promise<void> }> {
    const lockFile = this.file(LOCK_FILE);
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const handle = await open(lockFile, 'wx', 0o600);
        const holder: LockHolder = { pid: process.pid, host: hostname(), since: new Date().toISOString() };
        await handle.writeFile(JSON.stringify({ formatVersion: FORMAT_VERSION, ...holder }));
        await handle.sync();
        await handle.close();
        return { release: () => rm(lockFile, { force: true }) };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const text = await readFile(lockFile, 'utf8').catch(() => '{}');
        const holder = JSON.parse(text) as Partial<LockHolder>;
        const pid = Number(holder.pid);
        if (Number.isInteger(pid) && pid !== process.pid && isAlive(pid))
          throw new LockHeldError(
            { pid, host: holder.host ?? hostname(), since: holder.since ?? '?' },
            `this state folder (${lockFile})`,
          );
        await rm(lockFile, { force: true }); // stale: its daemon is gone
      }
    }
    throw new Error(`could not take ${lockFile}`);
  }

  /** The token in `api-token`, or null when there is none. */
  async readToken(): Promise<string | null> {
    const text = await readFile(this.file(TOKEN_FILE), 'utf8').catch(() => '');
    return text.trim() || null;
  }

  /** Writes `api-token` (0600) for clients on this machine to find. */
  async writeToken(token: string): Promise<void> {
    if ((await this.readToken()) !== token) await writeFileAtomic(this.file(TOKEN_FILE), `${token}\n`);
  }

  /** A new random API token. */
  static newToken(): string {
    return randomBytes(32).toString('base64url');
  }

  /**
   * A random id for the daemon of this folder, created once: a shared store knows its holder by it, so a daemon
   * restarted on the same folder (the lock above proves the last one is gone) takes its own hold back at once.
   */
  async instanceId(): Promise<string> {
    const file = this.file(INSTANCE_FILE);
    const known = (await readFile(file, 'utf8').catch(() => '')).trim();
    if (known) return known;
    const id = randomBytes(12).toString('hex');
    await writeFileAtomic(file, `${id}\n`);
    return id;
  }

  async importMark(): Promise<ImportMark | null> {
    const text = await readFile(this.file(IMPORTED_FILE), 'utf8').catch(() => null);
    return text === null ? null : (JSON.parse(text) as ImportMark);
  }

  async markImported(mark: ImportMark): Promise<void> {
    await writeFileAtomic(
      this.file(IMPORTED_FILE),
      JSON.stringify({ formatVersion: FORMAT_VERSION, ...mark }, null, 2),
    );
  }

  async clearImportMark(): Promise<void> {
    await rm(this.file(IMPORTED_FILE), { force: true });
  }

  async writeDiscovery(info: DaemonDiscovery): Promise<void> {
    const text = JSON.stringify({ formatVersion: FORMAT_VERSION, ...info }, null, 2);
    await writeFileAtomic(this.file(DISCOVERY_FILE), text);
  }

  async removeDiscovery(): Promise<void> {
    await rm(this.file(DISCOVERY_FILE), { force: true });
  }
}
