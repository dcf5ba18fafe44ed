/**
 * The inbound checkpoint of one server identity and folder, in `<state>/inbound/<type>_<shortName>.json` (0600, atomic
 * writes). `lastUid` is a high-water mark: every UID at or below it is done, except those in `pending` (retries and the
 * backfill set). `copyIntent` is written before COPY so a crash between COPY and the checkpoint never copies twice.
 */
import { readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { ensurePrivateDir, writeFileAtomic } from '../../adapters/durable-files.js';

export const CHECKPOINT_FORMAT_VERSION = 1;

export interface PendingEntry {
  attempts: number;
  /** epoch ms before which the message is not retried */
  nextAttemptAt: number;
  lastError?: string;
  /** Already in the storage folder (it was quarantined, then released): never copied again. */
  copied?: boolean;
}

export type QuarantineReason = 'oversize' | 'unrouted' | 'failed' | 'rejected';

export interface QuarantineEntry {
  /** The message key (as in the sinks): what `mailctl quarantine release KEY` takes. */
  key?: string;
  reason: QuarantineReason;
  detail: string;
  at: string;
  messageId: string | null;
  attempts?: number;
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
  /**
   * UIDs about to be COPYed to the storage folder, with their Message-IDs (for crash recovery); then `seen` (default:
   * `uids`) get +FLAGS \Seen and `flag` (quarantined) +FLAGS \Seen \Flagged.
   */
  copyIntent: { storageFolder: string; uids: number[]; messageIds: Record<string, string | null>; advanceTo: number; seen?: number[]; flag?: number[] } | null;
  /** Quarantined messages of this UIDVALIDITY (copied, \Seen \Flagged), by UID, until released. */
  quarantined: Record<string, QuarantineEntry>;
  /**
   * Set after a UIDVALIDITY change: UIDs below it existed when the mailbox was recreated and are compared with the
   * delivered-messages ledger (Message-ID + content hash) instead of being delivered again.
   */
  recheckBelow?: number;
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

/** Every checkpoint in the state folder (for listing quarantines across servers), with its file. */
export async function listCheckpoints(stateDir: string): Promise<{ file: string; checkpoint: Checkpoint }[]> {
  const dir = path.join(stateDir, 'inbound');
  const names = await readdir(dir).catch(() => [] as string[]);
  const out: { file: string; checkpoint: Checkpoint }[] = [];
  for (const name of names.filter((n) => n.endsWith('.json') && !n.startsWith('.')).sort()) {
    const file = path.join(dir, name);
    const data = JSON.parse(await readFile(file, 'utf8')) as Checkpoint;
    if (data.formatVersion === CHECKPOINT_FORMAT_VERSION) out.push({ file, checkpoint: { ...data, quarantined: data.quarantined ?? {}, pending: data.pending ?? {} } });
  }
  return out;
}

export async function saveCheckpoint(file: string, checkpoint: Checkpoint): Promise<void> {
  await ensurePrivateDir(path.dirname(file));
  checkpoint.updatedAt = new Date().toISOString();
  await writeFileAtomic(file, `${JSON.stringify(checkpoint, null, 2)}\n`);
}

/**
 * Removes what a crash (SIGKILL) in the middle of an atomic write of `file` left behind: writeFileAtomic's temp files
 * `.<name>.<random>.tmp` next to it. Random names are never reused, so without this every unlucky crash leaves one more
 * file in the state folder forever. Only call it while no write of `file` can be in progress (the processor does, once
 * per file, under the file's lock; the daemon lock excludes other processes). Returns how many were removed.
 */
export async function removeStaleTemps(file: string): Promise<number> {
  const prefix = `.${path.basename(file)}.`;
  const names = await readdir(path.dirname(file)).catch(() => [] as string[]);
  const stale = names.filter((n) => n.startsWith(prefix) && n.endsWith('.tmp'));
  await Promise.all(stale.map((n) => rm(path.join(path.dirname(file), n), { force: true })));
  return stale.length;
}

/** Backoff of a failed message: 2 s, 4 s, 8 s … capped at 5 minutes. */
export function retryDelayMs(attempts: number): number {
  return Math.min(300_000, 1000 * 2 ** Math.min(attempts, 20));
}
