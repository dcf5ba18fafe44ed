/**
 * Quarantine bookkeeping on a checkpoint (pure, shared by every store). A quarantined message is copied to the storage
 * folder and marked \Seen \Flagged by the batch that decided it (runtime/inbound/decide.ts); its record stays in the
 * checkpoint, keyed by UID, until `release` removes it and puts the UID back into the retry set: the next poll fetches
 * it again by UID (its \Seen flag does not matter) and, since it is already in the storage folder, does not copy it a
 * second time.
 */
import type { QuarantineListing, QuarantineReason } from '../api/quarantine.js';
import type { Checkpoint } from './ports.js';

export function recordQuarantine(
  cp: Checkpoint,
  uid: number,
  entry: {
    key: string;
    reason: QuarantineReason;
    detail: string;
    at: string;
    messageId: string | null;
    attempts?: number;
  },
): void {
  cp.quarantined[uid] = entry;
  delete cp.pending[uid];
}

export function quarantineListing(cp: Checkpoint): QuarantineListing[] {
  return Object.entries(cp.quarantined)
    .map(([uid, q]) => ({
      ...q,
      key: q.key ?? `${cp.server}:${uid}`,
      server: cp.server,
      folder: cp.folder,
      uidValidity: cp.uidValidity,
      uid: Number(uid),
    }))
    .sort((a, b) => a.uid - b.uid);
}

/**
 * Takes `key` out of quarantine and schedules its UID for the next poll. false when the key is not quarantined here.
 */
export function releaseInCheckpoint(cp: Checkpoint, key: string): boolean {
  const found = quarantineListing(cp).find((q) => q.key === key);
  if (!found) return false;
  delete cp.quarantined[found.uid];
  cp.pending[found.uid] = { attempts: 0, nextAttemptAt: 0, copied: true };
  return true;
}
