import { randomBytes } from 'node:crypto';
import { open, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { appendLineDurably, ensurePrivateDir, writeFileAtomic } from '../adapters/durable-files.js';
import type { ObservedState } from '../plan/model.js';
import { STATE_FILES } from './paths.js';

export const STATE_FORMAT_VERSION = '1';

/** What the daemon last applied: the running state it resumes after a restart. Holds references, never secrets. */
export interface AppliedFile {
  formatVersion: typeof STATE_FORMAT_VERSION;
  appliedAt: string;
  revision: string | null;
  desiredDigest: string;
  state: ObservedState;
}

export interface ApplyLogEntry {
  time: string;
  trigger: string;
  revision: string | null;
  planDigest: string;
  result: string;
  servers: Record<string, string>;
}

export class LockHeldError extends Error {
  constructor(
    readonly pid: number,
    lockFile: string,
  ) {
    super(
      `another mailctl daemon (pid ${pid}) already uses this state folder (${lockFile}); two pollers of one mailbox would duplicate mail`,
    );
  }
}

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/** The daemon's state folder: 0700, files 0600, atomic writes, a formatVersion in every file. */
export class StateStore {
  constructor(readonly dir: string) {}

  file(name: string): string {
    return path.join(this.dir, name);
  }

  async init(): Promise<void> {
    await ensurePrivateDir(this.dir);
  }

  /** Takes `daemon.lock`; a lock left by a dead process is taken over. Returns the release function. */
  async acquireLock(): Promise<() => Promise<void>> {
    const lockFile = this.file(STATE_FILES.lock);
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const handle = await open(lockFile, 'wx', 0o600);
        await handle.writeFile(
          JSON.stringify({ formatVersion: STATE_FORMAT_VERSION, pid: process.pid, since: new Date().toISOString() }),
        );
        await handle.sync();
        await handle.close();
        return async () => void (await rm(lockFile, { force: true }));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const holder = await readFile(lockFile, 'utf8').then(
          (t) => Number((JSON.parse(t) as { pid?: number }).pid),
          () => NaN,
        );
        if (Number.isInteger(holder) && holder !== process.pid && isAlive(holder))
          throw new LockHeldError(holder, lockFile);
        await rm(lockFile, { force: true }); // stale: its daemon is gone
      }
    }
    throw new Error(`could not take ${lockFile}`);
  }

  /** The API token, created once and kept across restarts. */
  async apiToken(): Promise<string> {
    const file = this.file(STATE_FILES.token);
    const existing = await readFile(file, 'utf8').then(
      (t) => t.trim(),
      () => '',
    );
    if (existing) return existing;
    const token = randomBytes(32).toString('base64url');
    await writeFileAtomic(file, `${token}\n`);
    return token;
  }

  async writeDiscovery(info: { url: string; pid: number; dir: string }): Promise<void> {
    await writeFileAtomic(
      this.file(STATE_FILES.discovery),
      JSON.stringify({ formatVersion: STATE_FORMAT_VERSION, ...info }, null, 2),
    );
  }

  async removeDiscovery(): Promise<void> {
    await rm(this.file(STATE_FILES.discovery), { force: true });
  }

  async readApplied(): Promise<AppliedFile | null> {
    const text = await readFile(this.file(STATE_FILES.applied), 'utf8').catch(() => null);
    if (text === null) return null;
    const parsed = JSON.parse(text) as AppliedFile;
    const version: unknown = parsed.formatVersion;
    if (version !== STATE_FORMAT_VERSION) {
      const found = JSON.stringify(version) ?? 'none';
      throw new Error(`${STATE_FILES.applied} has formatVersion ${found}; this mailctl reads ${STATE_FORMAT_VERSION}`);
    }
    return parsed;
  }

  async writeApplied(applied: Omit<AppliedFile, 'formatVersion'>): Promise<void> {
    await writeFileAtomic(
      this.file(STATE_FILES.applied),
      JSON.stringify({ formatVersion: STATE_FORMAT_VERSION, ...applied }, null, 2),
    );
  }

  async appendApplyLog(entry: ApplyLogEntry): Promise<void> {
    await appendLineDurably(
      this.file(STATE_FILES.applyLog),
      JSON.stringify({ formatVersion: STATE_FORMAT_VERSION, ...entry }),
    );
  }
}
