/**
 * What a delivered batch means for the mailbox, decided without I/O: which failures are retried (with backoff) and
 * which are quarantined (after MAX_ATTEMPTS, or permanent), whether the sink itself is down (then no attempt counts),
 * how far the watermark moves, and the copy intent — which UIDs go to the storage folder and which are flagged. The
 * pipeline (commit.ts) stores the decision and carries it out on the server.
 */
import type { Checkpoint, CopyIntent, LedgerEntry, PendingEntry } from '../../store/ports.js';
import { recordQuarantine } from '../../store/quarantine.js';
import type { QuarantineReason } from '../../api/quarantine.js';

/** Failures of one message (not of the sink) before it is quarantined. */
export const MAX_ATTEMPTS = 5;

/** Backoff of a failed message: 2 s, 4 s, 8 s … capped at 5 minutes. */
export function retryDelayMs(attempts: number): number {
  return Math.min(300_000, 1000 * 2 ** Math.min(attempts, 20));
}

/** A message to quarantine (copy, \Seen \Flagged) and why. */
export interface QuarantineDecision {
  uid: number;
  messageId: string | null;
  reason: QuarantineReason;
  detail: string;
  /** Failed deliveries, for a message quarantined after MAX_ATTEMPTS. */
  attempts?: number;
}

/** What delivering a batch did, before anything is recorded. */
export interface Delivery {
  uids: number[];
  /** The UIDs the server still has (a UID that is gone was expunged by another client). */
  present: ReadonlySet<number>;
  /** In the sink, or dropped by a route. */
  delivered: number[];
  /** Delivered before the mailbox was recreated (ledger): only flagged \Seen. */
  duplicates: number[];
  quarantine: QuarantineDecision[];
  failed: Map<number, { error: string; sinkDown: boolean; messageId: string | null }>;
  messageIds: Record<string, string | null>;
  ledgerEntries: LedgerEntry[];
}

export interface DecisionInput {
  /** The checkpoint before the batch (not changed). */
  checkpoint: Readonly<Checkpoint>;
  delivery: Delivery;
  storageFolder: string;
  /** The highest new UID of the poll: the watermark never moves past messages not yet looked at. */
  maxFresh: number;
  /** The sink was down at the last try: a batch failing entirely is the sink's fault again, not its messages'. */
  sinkWasDown: boolean;
  now: number;
  /** The message key of a UID (as the sinks name it). */
  keyOf: (uid: number) => string;
}

/** Something worth a log line; the pipeline logs it. */
export type DecisionNote =
  | { kind: 'expunged'; uid: number }
  | { kind: 'retry'; uid: number; attempts: number; error: string }
  | { kind: 'quarantined'; uid: number; key: string; reason: QuarantineReason; detail: string }
  | { kind: 'duplicates'; count: number };

export interface BatchOutcome {
  delivered: number;
  quarantined: number;
  duplicates: number;
  failed: number;
  /** Set when every message failed because of the sink (nothing counted against them). */
  sinkDown: string | null;
}

export interface BatchDecision {
  /** The checkpoint after the batch: retries and quarantine recorded, and either the copy intent or, when there is
   * nothing to do on the server, the batch already settled. */
  checkpoint: Checkpoint;
  /** The work left on the server (COPY, STORE), or null. */
  intent: CopyIntent | null;
  outcome: BatchOutcome;
  notes: DecisionNote[];
}

/**
 * Nothing got through and nothing was answered: the sink is down when it said so, was already down, or more than one
 * message failed. Then no attempt is counted against the messages; the caller pauses the loop.
 */
function sinkDownError(d: Delivery, sinkWasDown: boolean): string | null {
  const failures = [...d.failed.values()];
  const permanent = d.quarantine.some((q) => q.reason === 'rejected');
  const down =
    failures.length > 0 &&
    d.delivered.length === 0 &&
    !permanent &&
    (sinkWasDown || failures.length > 1 || failures.some((f) => f.sinkDown));
  return down ? failures[0]!.error : null;
}

/** The checkpoint with an intent carried out: retries settled, watermark advanced, nothing in flight. */
export function settle(cp: Checkpoint, intent: Pick<CopyIntent, 'advanceTo' | 'seen' | 'flag' | 'uids'>): void {
  for (const uid of [...(intent.seen ?? intent.uids), ...(intent.flag ?? [])]) delete cp.pending[uid];
  cp.lastUid = Math.max(cp.lastUid, intent.advanceTo ?? cp.lastUid); // older intents may lack advanceTo
  cp.copyIntent = null;
}

/** Decides what a delivered batch means for the checkpoint; the previous batch's intent must be carried out. */
export function decideBatch(input: DecisionInput): BatchDecision {
  const { delivery: d, now } = input;
  if (input.checkpoint.copyIntent) throw new Error('decideBatch: the previous copy intent is still in flight');
  const cp: Checkpoint = {
    ...input.checkpoint,
    pending: { ...input.checkpoint.pending },
    quarantined: { ...input.checkpoint.quarantined },
  };
  const notes: DecisionNote[] = [];
  // released from quarantine: already in the storage folder, never copied again
  const wasCopied = new Set(d.uids.filter((u) => cp.pending[u]?.copied === true));
  // UIDs at or below this are settled after the batch (done, pending retry, or quarantined)
  const advanceTo = Math.max(cp.lastUid, Math.min(input.maxFresh, Math.max(...d.uids)));
  for (const uid of d.uids) {
    if (!d.present.has(uid) && cp.pending[uid]) {
      notes.push({ kind: 'expunged', uid });
      delete cp.pending[uid];
    }
  }

  const sinkDown = sinkDownError(d, input.sinkWasDown);
  const exhausted: QuarantineDecision[] = [];
  for (const [uid, { error, messageId }] of d.failed) {
    const before: PendingEntry | undefined = cp.pending[uid];
    if (sinkDown) {
      cp.pending[uid] = { ...before, attempts: before?.attempts ?? 0, nextAttemptAt: 0, lastError: error };
      continue;
    }
    const attempts = (before?.attempts ?? 0) + 1;
    if (attempts >= MAX_ATTEMPTS) {
      const detail = `failed ${attempts} times; last error: ${error}`;
      exhausted.push({ uid, messageId, reason: 'failed', detail, attempts });
      continue;
    }
    cp.pending[uid] = { ...before, attempts, nextAttemptAt: now + retryDelayMs(attempts), lastError: error };
    notes.push({ kind: 'retry', uid, attempts, error });
  }

  const messageIds = { ...d.messageIds };
  const at = new Date(now).toISOString();
  const quarantined: number[] = [];
  for (const q of [...d.quarantine, ...exhausted]) {
    const key = input.keyOf(q.uid);
    const entry = { key, reason: q.reason, detail: q.detail, at, messageId: q.messageId };
    recordQuarantine(cp, q.uid, q.attempts === undefined ? entry : { ...entry, attempts: q.attempts });
    messageIds[q.uid] = q.messageId;
    quarantined.push(q.uid);
    notes.push({ kind: 'quarantined', uid: q.uid, key, reason: q.reason, detail: q.detail });
  }
  if (d.duplicates.length) notes.push({ kind: 'duplicates', count: d.duplicates.length });

  const byUid = (a: number, b: number) => a - b;
  const seen = [...d.delivered, ...d.duplicates].sort(byUid);
  const copy = [...d.delivered, ...quarantined].filter((u) => !wasCopied.has(u)).sort(byUid);
  quarantined.sort(byUid);
  const intent: CopyIntent = {
    storageFolder: input.storageFolder,
    uids: copy,
    messageIds,
    advanceTo,
    seen,
    flag: quarantined,
  };
  const onServer = copy.length > 0 || seen.length > 0 || quarantined.length > 0;
  if (onServer) cp.copyIntent = intent;
  else settle(cp, intent);
  return {
    checkpoint: cp,
    intent: onServer ? intent : null,
    outcome: {
      delivered: d.delivered.length,
      quarantined: quarantined.length,
      duplicates: d.duplicates.length,
      failed: d.failed.size,
      sinkDown,
    },
    notes,
  };
}
