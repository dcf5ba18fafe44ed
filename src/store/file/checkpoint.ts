/**
 * The inbound checkpoint of one server identity and folder, in `<state>/inbound/<type>_<name>.json` (the shortName as
 * file names carry it, config/keys.ts; 0600, atomic
 * writes). `lastUid` is a high-water mark: every UID at or below it is done, except those in `pending` (retries and the
 * backfill set, stored as UID ranges in `backlog` while untried). `copyIntent` is written before COPY so a crash
 * between COPY and the checkpoint never copies twice.
 */
import { readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { ensurePrivateDir, writeFileAtomic } from '../../adapters/durable-files.js';
import { nameInKeys } from '../../config/keys.js';
import { fromStored, toStored, type StoredCheckpoint } from '../checkpoint-format.js';
import { CHECKPOINT_FORMAT_VERSION, type Checkpoint } from '../ports.js';

export { CHECKPOINT_FORMAT_VERSION, type Checkpoint } from '../ports.js';
export { expandUidRanges, uidRanges } from '../checkpoint-format.js';

export function checkpointFile(stateDir: string, type: string, shortName: string): string {
  return path.join(stateDir, 'inbound', `${type}_${nameInKeys(shortName)}.json`);
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
  const data = JSON.parse(raw) as StoredCheckpoint;
  if (data.formatVersion !== CHECKPOINT_FORMAT_VERSION)
    throw new Error(`${file}: unsupported formatVersion ${String(data.formatVersion)}`);
  if (data.identity !== identity || data.folder !== folder) return null;
  return fromStored(data);
}

/** Every checkpoint in the state folder (for listing quarantines across servers), with its file. */
export async function listCheckpoints(stateDir: string): Promise<{ file: string; checkpoint: Checkpoint }[]> {
  const dir = path.join(stateDir, 'inbound');
  const names = await readdir(dir).catch(() => [] as string[]);
  const out: { file: string; checkpoint: Checkpoint }[] = [];
  for (const name of names.filter((n) => n.endsWith('.json') && !n.startsWith('.')).sort()) {
    const file = path.join(dir, name);
    const data = JSON.parse(await readFile(file, 'utf8')) as StoredCheckpoint;
    if (data.formatVersion === CHECKPOINT_FORMAT_VERSION) out.push({ file, checkpoint: fromStored(data) });
  }
  return out;
}

/** Compact JSON with the backlog as UID ranges: it is rewritten once per batch. */
export async function saveCheckpoint(file: string, checkpoint: Checkpoint): Promise<void> {
  await ensurePrivateDir(path.dirname(file));
  checkpoint.updatedAt = new Date().toISOString();
  await writeFileAtomic(file, `${JSON.stringify(toStored(checkpoint))}\n`);
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
