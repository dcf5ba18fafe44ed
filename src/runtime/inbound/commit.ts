/**
 * The server side of a delivered batch (batch.ts delivers it, decide.ts decides what it means): record the decision
 * (one store commit: the checkpoint with the copy intent, the ledger entries alongside) → one UID COPY (delivered +
 * newly quarantined, never a message already in the storage folder) → UID STORE +FLAGS.SILENT \Seen (and \Seen
 * \Flagged for quarantined). The checkpoint holds one intent at a time: a batch is recorded only once the previous one
 * was carried out, and the completion of a batch is persisted by the next commit (the next batch's intent, or the end
 * of the poll); a crash before it resumes the intent in recoverCopy, which finds the copies already made
 * (storage-lookup.ts).
 */
import type { Mailbox } from '../../adapters/imap.js';
import type { Logger } from 'pino';
import type { ImapServerSpec } from '../../config/model.js';
import type { Checkpoint, CopyIntent, Fingerprint, InboundStore, MailboxRef } from '../../store/ports.js';
import { keyOf, type BatchContext, type DeliveredBatch } from './batch.js';
import { decideBatch, settle, type BatchOutcome, type DecisionNote } from './decide.js';
import { fetchMessageIds, fingerprintsIn, messageIdsIn } from './storage-lookup.js';

export type { BatchOutcome } from './decide.js';

/** Copies this process made to the storage folder that no later commit has confirmed yet (see removeOwnDuplicates). */
export interface UnconfirmedCopy {
  uid: number;
  /** Its UID in the storage folder (COPYUID), when the server said. */
  storageUid: number | undefined;
  messageId: string | null;
}

/**
 * Carries out the recorded intent: COPY `copy`, STORE +FLAGS.SILENT \Seen on its `seen` and \Seen \Flagged on its
 * `flag`, then settles it in memory (the caller persists it). `guard` throws when this process may no longer change
 * the mailbox (a replica whose lease was not renewed in time); it is asked right before each command. Returns the
 * copies made.
 */
export async function carryOut(
  client: Mailbox,
  spec: ImapServerSpec,
  cp: Checkpoint,
  copy: number[],
  guard: () => void = () => undefined,
): Promise<UnconfirmedCopy[]> {
  const intent = cp.copyIntent!;
  const flag = intent.flag ?? [];
  const seen = (intent.seen ?? intent.uids).filter((u) => !flag.includes(u));
  let made: UnconfirmedCopy[] = [];
  if (copy.length) {
    guard();
    const uidMap = await client.copy(copy, spec.storageFolder);
    made = copy.map((uid) => ({ uid, storageUid: uidMap.get(uid), messageId: intent.messageIds[uid] ?? null }));
  }
  guard();
  await client.addFlags(seen, ['\\Seen']);
  await client.addFlags(flag, ['\\Seen', '\\Flagged']);
  settle(cp, intent);
  return made;
}

/**
 * After a commit of this process was fenced (a newer owner holds the mailbox's lease): its copies that no commit
 * confirmed may duplicate the new owner's, who copies what it does not find by Message-ID. Each of them is removed by
 * its COPYUID — but only when the storage folder holds another copy with the same Message-ID: when the new owner found
 * this copy and did not copy, removing it would leave none. Copies without a Message-ID or a COPYUID stay. Returns how
 * many were removed.
 */
export async function removeOwnDuplicates(
  client: Mailbox,
  spec: ImapServerSpec,
  copies: readonly UnconfirmedCopy[],
  log: Logger | undefined,
): Promise<number> {
  const ours = copies.filter((c) => c.messageId !== null && c.storageUid !== undefined);
  if (!ours.length || !client.usable) return 0;
  await client.select(spec.storageFolder);
  try {
    const ids = [...new Set(ours.map((c) => c.messageId!))];
    const found = await fetchMessageIds(client, await client.search({ messageIds: ids }));
    const copiesOf = new Map<string, number[]>();
    for (const [uid, id] of found) if (id) copiesOf.set(id, [...(copiesOf.get(id) ?? []), uid]);
    const remove = ours
      .filter((c) => {
        const all = copiesOf.get(c.messageId!) ?? [];
        return all.includes(c.storageUid!) && all.length > 1;
      })
      .map((c) => c.storageUid!);
    await client.removeExactly(remove);
    log?.warn(
      { unconfirmed: copies.length, removed: remove.length },
      "a newer owner holds the mailbox: removed this replica's copies that duplicated another copy in the " +
        'storage folder',
    );
    return remove.length;
  } finally {
    await client.select(spec.folder).catch(() => undefined);
  }
}

/**
 * A crash (or a failed COPY) after the intent was recorded: copy only those messages whose Message-ID is not in the
 * storage folder yet, then finish the batch (flags, checkpoint).
 */
export async function recoverCopy(
  client: Mailbox,
  spec: ImapServerSpec,
  cp: Checkpoint,
  store: { inbound: InboundStore; mailbox: MailboxRef },
  log: Logger | undefined,
  guard: () => void = () => undefined,
  unconfirmed: UnconfirmedCopy[] = [],
): Promise<void> {
  const intent = cp.copyIntent!;
  const ids = intent.uids.map((uid) => intent.messageIds[uid]).filter((id): id is string => !!id);
  const anonymous = intent.storageUidNext !== undefined ? (intent.withoutMessageId ?? {}) : {};
  await client.select(intent.storageFolder, { readOnly: true });
  let stored: Set<string>;
  let storedAnonymous: Set<string>;
  try {
    stored = await messageIdsIn(client, ids);
    storedAnonymous = await fingerprintsIn(client, anonymous, intent.storageUidNext ?? 0);
  } finally {
    await client.select(spec.folder);
  }
  // a message without a Message-ID and without a fingerprint (an intent of an older version) is copied again
  const missing = intent.uids.filter(
    (uid) => !stored.has(intent.messageIds[uid] ?? '') && !storedAnonymous.has(String(uid)),
  );
  log?.warn(
    { uids: intent.uids.length, copying: missing.length },
    'resuming an interrupted copy to the storage folder',
  );
  unconfirmed.push(...(await carryOut(client, spec, cp, missing, guard)));
  await store.inbound.commit(store.mailbox, { checkpoint: cp });
  unconfirmed.length = 0;
}

/**
 * For the messages to copy that have no Message-ID: how recovery can recognise their copies (size and content hash),
 * and the storage folder's UIDNEXT, above which they will land. One STATUS, only when there are such messages.
 */
async function anonymousFingerprints(
  client: Mailbox,
  spec: ImapServerSpec,
  intent: CopyIntent,
  { byUid, hashOf }: Pick<DeliveredBatch, 'byUid' | 'hashOf'>,
): Promise<Pick<CopyIntent, 'withoutMessageId' | 'storageUidNext'>> {
  const anonymous = intent.uids.filter((uid) => !intent.messageIds[uid]);
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

function logNote(log: Logger | undefined, note: DecisionNote): void {
  if (!log) return;
  if (note.kind === 'expunged')
    log.info({ uid: note.uid }, 'pending message no longer in the folder (expunged by another client)');
  else if (note.kind === 'retry')
    log.warn(
      { uid: note.uid, attempts: note.attempts, err: note.error },
      'delivery failed; the message stays unseen and is retried',
    );
  else if (note.kind === 'quarantined')
    log.warn({ uid: note.uid, key: note.key, reason: note.reason }, `message quarantined: ${note.detail}`);
  else
    log.info(
      { uids: note.count },
      'already delivered before the mailbox was recreated (same Message-ID and content): not delivered or copied again',
    );
}

/**
 * Decides what a delivered batch means (decide.ts) and records it durably: the checkpoint with its copy intent (or the
 * batch settled, when there is nothing to do on the server), with the ledger entries in the same commit. The previous
 * batch's intent must be carried out already. The caller then carries the recorded intent out (carryOut with
 * `cp.copyIntent.uids`). `ctx.cp` becomes the recorded checkpoint.
 */
export async function recordBatch(ctx: BatchContext, d: DeliveredBatch, maxFresh: number): Promise<BatchOutcome> {
  const { client, spec, uidValidity } = ctx;
  const decision = decideBatch({
    checkpoint: ctx.cp,
    delivery: d,
    storageFolder: spec.storageFolder,
    maxFresh,
    sinkWasDown: ctx.sinkWasDown,
    now: ctx.now(),
    keyOf: (uid) => keyOf(spec, uidValidity, uid),
  });
  decision.notes.forEach((note) => logNote(ctx.log, note));
  const cp = decision.checkpoint;
  // the intent is durable before COPY: a crash from here on resumes in recoverCopy instead of copying twice. The
  // ledger entries are written alongside (after the sink, so never for a message that is not delivered), and so are
  // the queue rows of a sink in the store: delivered exactly when the batch is recorded.
  if (decision.intent)
    cp.copyIntent = { ...decision.intent, ...(await anonymousFingerprints(client, spec, decision.intent, d)) };
  await ctx.store.commit(ctx.mailbox, { checkpoint: cp, delivered: d.ledgerEntries, rows: d.rows });
  ctx.cp = cp;
  return decision.outcome;
}
