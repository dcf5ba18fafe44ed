/**
 * How a checkpoint is stored, by every store: the untried part of the retry set (a backfill: no attempt yet, due at
 * once) is kept as a UID set such as `3:900,902` in `backlog` instead of one `pending` entry per UID, since the
 * checkpoint is rewritten once per batch.
 */
import type { Checkpoint, PendingEntry } from './ports.js';

export type StoredCheckpoint = Checkpoint & { backlog?: string };

const untried = (p: PendingEntry): boolean => p.attempts === 0 && p.nextAttemptAt === 0 && Object.keys(p).length === 2;

/** Ascending UIDs → an IMAP sequence set of ranges (`1:3,7`). */
export function uidRanges(uids: readonly number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < uids.length;) {
    let j = i;
    while (j + 1 < uids.length && uids[j + 1] === uids[j]! + 1) j++;
    parts.push(i === j ? `${uids[i]}` : `${uids[i]}:${uids[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}

export function expandUidRanges(set: string): number[] {
  return set
    .split(',')
    .filter(Boolean)
    .flatMap((part) => {
      const [from = 0, to = from] = part.split(':').map(Number);
      return Array.from({ length: to - from + 1 }, (_, k) => from + k);
    });
}

export function toStored(cp: Checkpoint): StoredCheckpoint {
  const pending: Checkpoint['pending'] = {};
  const backlog: number[] = [];
  for (const [uid, entry] of Object.entries(cp.pending)) {
    if (untried(entry)) backlog.push(Number(uid));
    else pending[uid] = entry;
  }
  return { ...cp, pending, ...(backlog.length > 0 && { backlog: uidRanges(backlog) }) };
}

export function fromStored({ backlog, ...data }: StoredCheckpoint): Checkpoint {
  const cp: Checkpoint = {
    ...data,
    pending: data.pending ?? {},
    quarantined: data.quarantined ?? {},
    copyIntent: data.copyIntent ?? null,
  };
  for (const uid of expandUidRanges(backlog ?? '')) cp.pending[uid] ??= { attempts: 0, nextAttemptAt: 0 };
  return cp;
}
