/** `applied.json` (the running configuration, atomic writes) and `apply-log.jsonl` (append-only) in the state folder. */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { appendLineDurably, writeFileAtomic } from '../../adapters/durable-files.js';
import type { AppliedRecord, AppliedStore, ApplyLogEntry } from '../ports.js';

export const STATE_FORMAT_VERSION = '1';
/** 2: bindings are also kept by the secret's identity (`identities`); a version 1 file is read and migrated. */
export const APPLIED_FORMAT_VERSION = '2';
const READABLE_APPLIED_VERSIONS: readonly unknown[] = ['1', APPLIED_FORMAT_VERSION];
export const APPLIED_FILE = 'applied.json';
export const APPLY_LOG_FILE = 'apply-log.jsonl';

export class FileAppliedStore implements AppliedStore {
  constructor(private readonly stateDir: string) {}

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

  async appendLog(entry: ApplyLogEntry): Promise<void> {
    await appendLineDurably(
      this.file(APPLY_LOG_FILE),
      JSON.stringify({ formatVersion: STATE_FORMAT_VERSION, ...entry }),
    );
  }

  async recentLog(limit: number): Promise<ApplyLogEntry[]> {
    const text = await readFile(this.file(APPLY_LOG_FILE), 'utf8').catch(() => '');
    const entries: ApplyLogEntry[] = [];
    for (const line of text.split('\n').filter(Boolean).slice(-limit)) {
      try {
        const { formatVersion: _version, ...entry } = JSON.parse(line) as ApplyLogEntry & { formatVersion: string };
        entries.push(entry);
      } catch {
        /* a line torn by a crash in the middle of an append */
      }
    }
    return entries;
  }
}
