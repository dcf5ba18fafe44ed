/**
 * The inbound checkpoint of one server identity and folder, in `<state>/inbound/<type>_<shortName>.json` (0600, atomic
 * writes). `lastUid` is a high-water mark: every UID at or below it is done, except those in `pending` (retries and the
 * backfill set). `copyIntent` is written before COPY so a crash between COPY and the checkpoint never copies twice.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ensurePrivateDir, writeFileAtomic } from '../../adapters/durable-files.js';

export const CHECKPOINT_FORMAT_VERSION = 1;

export interface PendingEntry {
  attempts: number;
  /** epoch ms before which the message is not retried */
  nextAttemptAt: number;
  lastError?: string;
}

export interface QuarantineEntry {
  reason: 'oversize' | 'unrouted' | 'failed';
  detail: string;
  at: string;
  messageId: string | null;
}

export interface Checkpoint {
  formatVersion: typeof CHECKPOINT_FORMAT_VERSION;
  server: string;
  /** sha256(host \0 user \0 folder): the identity the checkpoint belongs to. */
  identity: string;
  folder: string;
  uidValidity: string;
  lastUid: number;
  pending: Record<string, PendingEntry>;
  /** UIDs about to be COPYed to the storage folder, with their Message-IDs (for crash recovery). */
  copyIntent: { storageFolder: string; uids: number[]; messageIds: Record<string, string | null>; advanceTo: number } | null;
  /** Recorded, not yet acted on: quarantine (copy + \Seen \Flagged) is not implemented yet. */
  quarantined: Record<string, QuarantineEntry>;
  updatedAt: string;
}

export function checkpointFile(stateDir: string, type: string, shortName: string): string {
  return path.join(stateDir, 'inbound', `${type}_${shortName}.json`);
}

/** Reads the checkpoint; `null` when there is none or it belongs to another identity/folder (first run then). */
export async function loadCheckpoint(file: string, identity: string, folder: string): Promise<Checkpoint | null> {
  let raw: string;
  try {
    raw = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  const data = JSON.parse(raw) as Checkpoint;
  if (data.formatVersion !== CHECKPOINT_FORMAT_VERSION) throw new Error(`${file}: unsupported formatVersion ${String(data.formatVersion)}`);
  if (data.identity !== identity || data.folder !== folder) return null;
  data.pending ??= {};
  data.quarantined ??= {};
  data.copyIntent ??= null;
  return data;
}

export async function saveCheckpoint(file: string, checkpoint: Checkpoint): Promise<void> {
  await ensurePrivateDir(path.dirname(file));
  checkpoint.updatedAt = new Date().toISOString();
  await writeFileAtomic(file, `${JSON.stringify(checkpoint, null, 2)}\n`);
}

/** Backoff of a failed message: 2 s, 4 s, 8 s … capped at 5 minutes. */
export function retryDelayMs(attempts: number): number {
  return Math.min(300_000, 1000 * 2 ** Math.min(attempts, 20));
}
