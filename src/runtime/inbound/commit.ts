/**
 * The server side of a delivered batch (batch.ts delivers it): classify failures (the message's own: retry with
 * backoff, quarantine after MAX_ATTEMPTS or when permanent; the sink's: no attempt counted) → record the intent (one
 * checkpoint write, the ledger alongside) → one UID COPY (delivered + newly quarantined, never a message already in the
 * storage folder) → UID STORE +FLAGS.SILENT \Seen (and \Seen \Flagged for quarantined). The checkpoint holds one
 * intent at a time: a batch is recorded only once the previous one was carried out, and the completion of a batch is
 * persisted by the next checkpoint write (the next batch's intent, or the end of the poll); a crash before it resumes
 * the intent in recoverCopy, which finds the copies already made (storage-lookup.ts).
 */
import type { ImapFlow } from 'imapflow';
import type { Logger } from 'pino';
import { MailError } from '../../adapters/connection.js';
import type { ImapServerSpec } from '../../config/model.js';
import { keyOf, uidSet, type BatchContext, type Delivery, type Meta, type QuarantineDecision } from './batch.js';
import { retryDelayMs, saveCheckpoint, type Checkpoint } from './checkpoint.js';
import { MAX_ATTEMPTS, recordQuarantine } from './quarantine.js';
import { fingerprintsIn, messageIdsIn, type Fingerprint } from './storage-lookup.js';

export interface BatchOutcome {
  delivered: number;
  quarantined: number;
  duplicates: number;
  failed: number;
  /** Set when every message failed because of the sink (nothing counted against them). */
  sinkDown: string | null;
}

type Intent = NonNullable<Checkpoint['copyIntent']>;

/** The intent's outcome in the checkpoint, in memory: retries settled, watermark advanced, nothing in flight. */
function settle(cp: Checkpoint, intent: Pick<Intent, 'advanceTo' | 'seen' | 'flag' | 'uids'>): void {
  for (const uid of [...(intent.seen ?? intent.uids), ...(intent.flag ?? [])]) delete cp.pending[uid];
  cp.lastUid = Math.max(cp.lastUid, intent.advanceTo ?? cp.lastUid); // older intents may lack advanceTo
  cp.copyIntent = null;
}

/**
 * Carries out the recorded intent: COPY `copy`, STORE +FLAGS.SILENT \Seen on its `seen` and \Seen \Flagged on its
 * `flag`, then settles it in memory (the caller persists it).
 */
export async function carryOut(client: ImapFlow, spec: ImapServerSpec, cp: Checkpoint, copy: number[]): Promise<void> {
  const intent = cp.copyIntent!;
  const flag = intent.flag ?? [];
  const seen = (intent.seen ?? intent.uids).filter((u) => !flag.includes(u));
  if (copy.length) {
    const res = await client.messageCopy(uidSet(copy), spec.storageFolder, { uid: true });
    if (res === false)
      throw new MailError(
        'folder-missing',
        `storage folder "${spec.storageFolder}" does not exist on ${spec.host}; create it first`,
        { code: 'NotFound' },
      );
  }
  if (seen.length) await client.messageFlagsAdd(uidSet(seen), ['\\Seen'], { uid: true, silent: true });
  if (flag.length) await client.messageFlagsAdd(uidSet(flag), ['\\Seen', '\\Flagged'], { uid: true, silent: true });
  settle(cp, intent);
}

/**
 * A crash (or a failed COPY) after the intent was recorded: copy only those messages whose Message-ID is not in the
 * storage folder yet, then finish the batch (flags, checkpoint).
 */
export async function recoverCopy(
  client: ImapFlow,
  spec: ImapServerSpec,
  cp: Checkpoint,
  file: string,
  log: Logger | undefined,
): Promise<void> {
  const intent = cp.copyIntent!;
  const ids = intent.uids.map((uid) => intent.messageIds[uid]).filter((id): id is string => !!id);
  const anonymous = intent.storageUidNext !== undefined ? (intent.withoutMessageId ?? {}) : {};
  await client.mailboxOpen(intent.storageFolder, { readOnly: true });
  let stored: Set<string>;
  let storedAnonymous: Set<string>;
  try {
    stored = await messageIdsIn(client, ids);
    storedAnonymous = await fingerprintsIn(client, anonymous, intent.storageUidNext ?? 0);
  } finally {
    await client.mailboxOpen(spec.folder);
  }
  // a message without a Message-ID and without a fingerprint (an intent of an older version) is copied again
  const missing = intent.uids.filter(
    (uid) => !stored.has(intent.messageIds[uid] ?? '') && !storedAnonymous.has(String(uid)),
  );
  log?.warn(
    { uids: intent.uids.length, copying: missing.length },
    'resuming an interrupted copy to the storage folder',
  );
  await carryOut(client, spec, cp, missing);
  await saveCheckpoint(file, cp);
}

/**
 * For the messages to copy that have no Message-ID: how recovery can recognise their copies (size and content hash),
 * and the storage folder's UIDNEXT, above which they will land. One STATUS, only when there are such messages.
 */
async function anonymousFingerprints(
  client: ImapFlow,
  spec: ImapServerSpec,
  copy: number[],
  messageIds: Record<string, string | null>,
  byUid: Map<number, Meta>,
  hashOf: Map<number, string>,
): Promise<Pick<Intent, 'withoutMessageId' | 'storageUidNext'>> {
  const anonymous = copy.filter((uid) => !messageIds[uid]);
  if (!anonymous.length) return {};
  const status = await client.status(spec.storageFolder, { uidNext: true }).catch(() => false as const);
  if (!status || status.uidNext === undefined) return {}; // recovery copies them again (at least once)
  const withoutMessageId = Object.fromEntries(
    anonymous.map((uid): [string, Fingerprint] => [
      String(uid),
      { size: byUid.get(uid)?.size ?? 0, sha256: hashOf.get(uid) ?? null },
    ]),
  );
  return { withoutMessageId, storageUidNext: status.uidNext };
}

/**
 * Nothing got through and nothing was answered: the sink is down when it said so, was already down, or more than one
 * message failed. Then no attempt is counted against the messages; the caller pauses the loop.
 */
function sinkDownError(ctx: BatchContext, d: Delivery): string | null {
  const failures = [...d.failed.values()];
  const permanent = d.quarantine.some((q) => q.reason === 'rejected');
  const down =
    failures.length > 0 &&
    d.delivered.length === 0 &&
    !permanent &&
    (ctx.sinkWasDown || failures.length > 1 || failures.some((f) => f.sinkDown));
  return down ? failures[0]!.error : null;
}

/** Puts the batch's failures into the retry set, or into quarantine after MAX_ATTEMPTS; returns those quarantined. */
function scheduleRetries(ctx: BatchContext, d: Delivery, sinkDown: string | null): QuarantineDecision[] {
  const { cp, log } = ctx;
  const now = ctx.now();
  const exhausted: QuarantineDecision[] = [];
  for (const [uid, { error, messageId }] of d.failed) {
    const before = cp.pending[uid];
    if (sinkDown) {
      cp.pending[uid] = { ...before, attempts: before?.attempts ?? 0, nextAttemptAt: 0, lastError: error };
      continue;
    }
    const attempts = (before?.attempts ?? 0) + 1;
    if (attempts >= MAX_ATTEMPTS) {
      exhausted.push({
        uid,
        messageId,
        reason: 'failed',
        detail: `failed ${attempts} times; last error: ${error}`,
        attempts,
      });
      continue;
    }
    cp.pending[uid] = { ...before, attempts, nextAttemptAt: now + retryDelayMs(attempts), lastError: error };
    log?.warn({ uid, attempts, err: error }, 'delivery failed; the message stays unseen and is retried');
  }
  return exhausted;
}

/**
 * Applies a delivered batch to the checkpoint and records its copy intent durably (with the ledger entries), or settles
 * it when there is nothing to do on the server. The previous batch's intent must be carried out already. The caller
 * then carries the recorded intent out (carryOut with `cp.copyIntent.uids`).
 */
export async function recordBatch(ctx: BatchContext, d: Delivery, maxFresh: number): Promise<BatchOutcome> {
  const { client, spec, cp, log, uidValidity } = ctx;
  if (cp.copyIntent) throw new Error('recordBatch: the previous copy intent is still in flight');
  // released from quarantine: already in the storage folder, never copied again
  const wasCopied = new Set(d.uids.filter((u) => cp.pending[u]?.copied === true));
  // UIDs at or below this are settled after the batch (done, pending retry, or quarantined)
  const advanceTo = Math.max(cp.lastUid, Math.min(maxFresh, Math.max(...d.uids)));
  for (const uid of d.uids) {
    if (!d.byUid.has(uid) && cp.pending[uid]) {
      log?.info({ uid }, 'pending message no longer in the folder (expunged by another client)');
      delete cp.pending[uid];
    }
  }
  const sinkDown = sinkDownError(ctx, d);
  const messageIds = { ...d.messageIds };
  const at = new Date(ctx.now()).toISOString();
  const quarantined: number[] = [];
  for (const q of [...d.quarantine, ...scheduleRetries(ctx, d, sinkDown)]) {
    const key = keyOf(spec, uidValidity, q.uid);
    recordQuarantine(cp, q.uid, {
      key,
      reason: q.reason,
      detail: q.detail,
      at,
      messageId: q.messageId,
      ...(q.attempts !== undefined && { attempts: q.attempts }),
    });
    messageIds[q.uid] = q.messageId;
    quarantined.push(q.uid);
    log?.warn({ uid: q.uid, key, reason: q.reason }, `message quarantined: ${q.detail}`);
  }

  const seen = [...d.delivered, ...d.duplicates].sort((a, b) => a - b);
  const copy = [...d.delivered, ...quarantined].filter((u) => !wasCopied.has(u)).sort((a, b) => a - b);
  quarantined.sort((a, b) => a - b);
  if (d.duplicates.length)
    log?.info(
      { uids: d.duplicates.length },
      'already delivered before the mailbox was recreated (same Message-ID and content): not delivered or copied again',
    );
  const intent: Intent = {
    storageFolder: spec.storageFolder,
    uids: copy,
    messageIds,
    advanceTo,
    seen,
    flag: quarantined,
  };
  const onServer = copy.length > 0 || seen.length > 0 || quarantined.length > 0;
  // the intent is durable before COPY: a crash from here on resumes in recoverCopy instead of copying twice. The
  // ledger entries are written alongside (after the sink, so never for a message that is not delivered).
  if (onServer)
    cp.copyIntent = { ...intent, ...(await anonymousFingerprints(client, spec, copy, messageIds, d.byUid, d.hashOf)) };
  else settle(cp, intent);
  await Promise.all([saveCheckpoint(ctx.file, cp), ctx.ledger.add(d.ledgerEntries)]);
  return {
    delivered: d.delivered.length,
    quarantined: quarantined.length,
    duplicates: d.duplicates.length,
    failed: d.failed.size,
    sinkDown,
  };
}
