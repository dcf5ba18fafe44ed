/**
 * `applied.json` (the running configuration, atomic writes) and `apply-log.jsonl` (append-only) in the state folder.
 * The apply log is rotated at 10 MiB: `apply-log.jsonl.1` is the newest old file, `.3` the oldest kept.
 */
import { readFile, rename, stat } from 'node:fs/promises';
import path from 'node:path';
import { appendLineDurably, writeFileAtomic } from '../../adapters/durable-files.js';
import type { AppliedRecord, AppliedStore, ApplyLogEntry } from '../ports.js';

export const STATE_FORMAT_VERSION = '1';
/** 2: bindings are also kept by the secret's identity (`identities`); a version 1 file is read and migrated. */
export const APPLIED_FORMAT_VERSION = '2';
const READABLE_APPLIED_VERSIONS: readonly unknown[] = ['1', APPLIED_FORMAT_VERSION];
export const APPLIED_FILE = 'applied.json';
export const APPLY_LOG_FILE = 'apply-log.jsonl';
export const APPLY_LOG_ROTATE_BYTES = 10 * 1024 * 1024;
export const APPLY_LOG_KEEP = 3;

const parseEntries = (text: string): ApplyLogEntry[] =>
  text
    .split('\n')
    .filter(Boolean)
    .flatMap((line) => {
      try {
        const { formatVersion: _version, ...entry } = JSON.parse(line) as ApplyLogEntry & { formatVersion: string };
        return [entry];
      } catch {
        return []; // a line torn by a crash in the middle of an append
      }
    });

export class FileAppliedStore implements AppliedStore {
  constructor(
    private readonly stateDir: string,
    private readonly rotation = { bytes: APPLY_LOG_ROTATE_BYTES, keep: APPLY_LOG_KEEP },
  ) {}

  private file(name: string): string {
    return path.join(this.stateDir, name);
  }

  async read(): Promise<AppliedRecord | null> {
    const text = await readFile(this.file(APPLIED_FILE), 'utf8').catch(() => null);
    if (text === null) return null;
    const { formatVersion, ...record } = JSON.parse(text) as AppliedRecord & { formatVersion: unknown };
    if (!READABLE_APPLIED_VERSIONS.includes(formatVersion)) {
      const found = JSON.stringify(formatVersion) ?? 'none';
      throw new Error(
        `${APPLIED_FILE} has formatVersion ${found}; this mailctl reads ${READABLE_APPLIED_VERSIONS.join(' and ')}`,
      );
    }
    return record;
  }

  async write(record: AppliedRecord): Promise<void> {
    const text = JSON.stringify({ formatVersion: APPLIED_FORMAT_VERSION, ...record }, null, 2);
    await writeFileAtomic(this.file(APPLIED_FILE), text);
  }

  /** The apply log's file `age` rotations ago (0: the current one). */
  private logFile(age: number): string {
    return this.file(age === 0 ? APPLY_LOG_FILE : `${APPLY_LOG_FILE}.${age}`);
  }

  async appendLog(entry: ApplyLogEntry): Promise<void> {
    const line = `${JSON.stringify({ formatVersion: STATE_FORMAT_VERSION, ...entry })}\n`;
    const size = (await stat(this.logFile(0)).catch(() => null))?.size ?? 0;
    if (size > 0 && size + Buffer.byteLength(line) > this.rotation.bytes) {
      // .2 → .3, .1 → .2, current → .1: the oldest kept file is replaced
      for (let age = this.rotation.keep - 1; age >= 0; age--)
        await rename(this.logFile(age), this.logFile(age + 1)).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOENT') throw err;
        });
    }
    await appendLineDurably(this.logFile(0), line);
  }

  async recentLog(limit: number): Promise<ApplyLogEntry[]> {
    let entries: ApplyLogEntry[] = [];
    for (let age = 0; age <= this.rotation.keep && entries.length < limit; age++) {
      const text = await readFile(this.logFile(age), 'utf8').catch(() => '');
      entries = [...parseEntries(text), ...entries];
    }
    return entries.slice(-limit);
  }
}
