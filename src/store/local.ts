/**
 * The daemon's local state folder (0700): whatever the store, it holds the machine's lock (`daemon.lock`: one daemon
 * per folder), `daemon.json` and the API token for discovery (api/discovery.ts), and `instance-id`, the name this
 * folder's daemon holds a shared store under. With the file store it is also where the state lives; `imported.json`
 * says its state was copied into another store (`mailctl store import`), so no file-store daemon may run on it again.
 */
import { randomBytes } from 'node:crypto';
import { link, readFile, rm, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { ensurePrivateDir, writeFileAtomic, writeFileDurably } from '../adapters/durable-files.js';
import { DISCOVERY_FILE, TOKEN_FILE, type DaemonDiscovery } from '../api/discovery.js';
import { LockHeldError, type LockHolder } from './errors.js';

export const LOCK_FILE = 'daemon.lock';
/** Held only while a stale lock is being replaced: one process at a time does it. */
const TAKEOVER_FILE = 'daemon.lock.takeover';
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
const LOCK_FORMAT_VERSION = '2';
/** How long a start waits for another process's takeover of a stale lock (it takes milliseconds). */
const TAKEOVER_WAIT_MS = 5_000;
/** Linux's USER_HZ: /proc/<pid>/stat counts the start time in these ticks since boot. */
const TICKS_PER_SECOND = 100;

/**
 * What the lock file says: a PID alone is not enough (PIDs are reused after a reboot or a container restart), so the
 * machine's boot id and the process's start time come with it. Version 1 files have neither.
 */
interface LockRecord extends LockHolder {
  formatVersion: string;
  bootId?: string | null;
  /** Start time of the process, in clock ticks since boot (field 22 of /proc/<pid>/stat). */
  startTime?: number | null;
}

const readText = (file: string) => readFile(file, 'utf8').catch(() => null);

const bootId = async (): Promise<string | null> => (await readText('/proc/sys/kernel/random/boot_id'))?.trim() ?? null;

/** The start time of `pid` in ticks since boot; null when there is no such process, undefined when /proc cannot say. */
async function startTimeOf(pid: number): Promise<number | null | undefined> {
  try {
    const text = await readFile(`/proc/${pid}/stat`, 'utf8');
    // the command name (field 2) may hold spaces and parentheses: count fields after its closing parenthesis
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return Number(fields[19]);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? null : undefined;
  }
}

/** When the machine booted (epoch ms), from /proc/stat. */
async function bootTimeMs(): Promise<number | null> {
  const m = /^btime (\d+)$/m.exec((await readText('/proc/stat')) ?? '');
  return m ? Number(m[1]) * 1000 : null;
}

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/** This process as a lock names it. */
async function ownRecord(): Promise<LockRecord> {
  return {
    formatVersion: LOCK_FORMAT_VERSION,
    pid: process.pid,
    host: hostname(),
    since: new Date().toISOString(),
    bootId: await bootId(),
    startTime: (await startTimeOf(process.pid)) ?? null,
  };
}

/**
 * Is the process a lock names still the one that wrote it? Not after a reboot (another boot id); not when no process
 * has its PID, or the process with its PID started at another time (or, for a version 1 file, after the lock was
 * written). Without /proc, a live PID other than ours counts.
 */
async function holderAlive(record: Partial<LockRecord>): Promise<boolean> {
  const pid = Number(record.pid);
  if (!Number.isInteger(pid) || pid <= 0) return false;
  const ourBoot = await bootId();
  if (record.bootId && ourBoot && record.bootId !== ourBoot) return false;
  const startTime = await startTimeOf(pid);
  if (startTime === null) return false;
  if (startTime === undefined) return pid !== process.pid && isAlive(pid);
  if (typeof record.startTime === 'number') return startTime === record.startTime;
  const booted = await bootTimeMs();
  const since = Date.parse(record.since ?? '');
  if (booted === null || Number.isNaN(since)) return pid !== process.pid;
  // ticks are rounded down and btime to the second: a second of slack
  return booted + (startTime / TICKS_PER_SECOND) * 1000 <= since + 1000;
}

/** Creates `target` as a second name of `source`'s file, so it appears with its whole content; false if it exists. */
async function linkIfAbsent(source: string, target: string): Promise<boolean> {
  try {
    await link(source, target);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
}

/** A lock file's record and inode; null when it is gone. */
async function readLock(file: string): Promise<{ record: Partial<LockRecord>; ino: number } | null> {
  const [info, text] = await Promise.all([stat(file).catch(() => null), readText(file)]);
  if (!info || text === null) return null;
  let record: Partial<LockRecord> = {};
  try {
    record = JSON.parse(text) as Partial<LockRecord>;
  } catch {
    /* garbage names no live process */
  }
  return { record, ino: info.ino };
}

export class LocalState {
  constructor(readonly dir: string) {}

  private file(name: string): string {
    return path.join(this.dir, name);
  }

  async init(): Promise<void> {
    await ensurePrivateDir(this.dir);
  }

  /**
   * Takes `daemon.lock`: the file appears with its whole content (a hard link to a complete temp file) or not at all.
   * A lock whose holder is gone is taken over by one process only: the one that creates `daemon.lock.takeover` removes
   * it, and only if it is still the same file it found stale; every other start then finds the new holder.
   */
  async lock(): Promise<{ release(): Promise<void> }> {
    const lockFile = this.file(LOCK_FILE);
    const takeoverFile = this.file(TAKEOVER_FILE);
    const record = await ownRecord();
    const temp = this.file(`.${LOCK_FILE}.${randomBytes(6).toString('hex')}.tmp`);
    await writeFileDurably(temp, JSON.stringify(record), { exclusive: true, exactMode: true });
    const deadline = Date.now() + TAKEOVER_WAIT_MS;
    try {
      const { ino } = await stat(temp);
      for (;;) {
        if (await linkIfAbsent(temp, lockFile)) {
          return {
            release: async () => {
              // only our own lock: never one that replaced it
              if ((await stat(lockFile).catch(() => null))?.ino === ino) await rm(lockFile, { force: true });
            },
          };
        }
        const held = await readLock(lockFile);
        if (!held) continue; // removed meanwhile
        if (await holderAlive(held.record)) {
          const { pid, host, since } = held.record;
          throw new LockHeldError(
            { pid: Number(pid), host: host ?? hostname(), since: since ?? '?' },
            `this state folder (${lockFile})`,
          );
        }
        if (await linkIfAbsent(temp, takeoverFile)) {
          try {
            if ((await stat(lockFile).catch(() => null))?.ino === held.ino) await rm(lockFile, { force: true });
          } finally {
            await rm(takeoverFile, { force: true });
          }
          continue;
        }
        const takeover = await readLock(takeoverFile);
        if (takeover && !(await holderAlive(takeover.record)))
          await rm(takeoverFile, { force: true }); // a crash mid-takeover
        else if (Date.now() > deadline) throw new Error(`could not take ${lockFile}: another start is taking it over`);
        else await new Promise((resolve) => setTimeout(resolve, 20));
      }
    } finally {
      await rm(temp, { force: true });
    }
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
