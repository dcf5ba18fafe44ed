/**
 * One batch of UIDs: FETCH metadata (RFC822.SIZE, envelope; never the body) → quarantine oversize → FETCH sources
 * (BODY.PEEK; the header is parsed from the source, never fetched twice) in groups → after a UIDVALIDITY change, skip
 * what the ledger says was delivered → route → deliver → classify failures (message's own: retry with backoff,
 * quarantine after MAX_ATTEMPTS or when permanent; the sink's: no attempt counted) → record the intent (one checkpoint
 * write) → one UID COPY (delivered + newly quarantined, never a message already in the storage folder) → UID STORE
 * +FLAGS.SILENT \Seen (and \Seen \Flagged for quarantined). The batch's completion is persisted by the next checkpoint
 * write (the next batch's intent, or the end of the poll); a crash before it resumes the intent in recoverCopy, which
 * finds the copies already made (storage-lookup.ts). fetchBatch has no side effect on the server, so the processor runs it for the next
 * batch while this one is being written to disk.
 */
import type { FetchMessageObject, ImapFlow, MessageAddressObject } from 'imapflow';
import type { Logger } from 'pino';
import { MailError } from '../../adapters/connection.js';
import type { FlowSpec, ImapServerSpec } from '../../config/model.js';
import { retryDelayMs, saveCheckpoint, type Checkpoint, type QuarantineReason } from './checkpoint.js';
import { contentHash, type DeliveredLedger } from './ledger.js';
import { MAX_ATTEMPTS, recordQuarantine } from './quarantine.js';
import { parseHeaders, routeMessage } from './route.js';
import { messageKey, type InboundMetadata, type InboundSink, type SinkItem } from './sink-directory.js';
import { fingerprintsIn, messageIdsIn, type Fingerprint } from './storage-lookup.js';

/** Upper bound of message bytes per source FETCH (with the next batch fetched ahead, twice this is held at most). */
export const SOURCE_BYTES_PER_FETCH = 32 * 1024 * 1024;

export interface BatchContext {
  client: ImapFlow;
  spec: ImapServerSpec;
  flow: FlowSpec;
  sink: InboundSink;
  cp: Checkpoint;
  file: string;
  uidValidity: string;
  ledger: DeliveredLedger;
  now: () => number;
  log: Logger | undefined;
  /** The sink was down at the last try: a batch failing entirely is the sink's fault again, not its messages'. */
  sinkWasDown: boolean;
}

export interface BatchOutcome {
  delivered: number;
  quarantined: number;
  duplicates: number;
  failed: number;
  /** Set when every message failed because of the sink (nothing counted against them). */
  sinkDown: string | null;
}

type Meta = FetchMessageObject;

const uidSet = (uids: readonly number[]): string => uids.join(',');

const addresses = (list: MessageAddressObject[] | undefined): string[] =>
  (list ?? []).map((a) => (typeof a.address === 'string' ? a.address : '').trim()).filter((a) => a !== '');

const toIso = (d: Date | string | undefined): string | null => {
  if (!d) return null;
  const date = d instanceof Date ? d : new Date(d);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
};

const text = (v: unknown): string => (typeof v === 'string' ? v : '');

/** A batch's metadata and the sources of its first group, fetched ahead of its turn. */
export interface FetchedBatch {
  uids: number[];
  metas: Meta[];
  /** The messages to download (not oversize), in groups of at most SOURCE_BYTES_PER_FETCH. */
  groups: Meta[][];
  firstSources: Map<number, Buffer>;
}

const oversize = (spec: ImapServerSpec, m: Meta): boolean => (m.size ?? 0) > spec.maxMessageSize;

function sourceGroups(metas: readonly Meta[]): Meta[][] {
  const groups: Meta[][] = [];
  let bytes = 0;
  for (const m of metas) {
    const last = groups.at(-1);
    if (!last || bytes + (m.size ?? 0) > SOURCE_BYTES_PER_FETCH) {
      groups.push([m]);
      bytes = m.size ?? 0;
    } else {
      last.push(m);
      bytes += m.size ?? 0;
    }
  }
  return groups;
}

async function fetchSources(client: ImapFlow, group: readonly Meta[]): Promise<Map<number, Buffer>> {
  const sources = new Map<number, Buffer>();
  if (!group.length) return sources;
  for (const m of await client.fetchAll(uidSet(group.map((m) => m.uid)), { uid: true, source: true }, { uid: true })) if (m.source) sources.set(m.uid, m.source);
  return sources;
}

/** The IMAP reads of a batch (no side effect on the server): metadata, then the first group's sources. */
export async function fetchBatch(client: ImapFlow, spec: ImapServerSpec, uids: number[]): Promise<FetchedBatch> {
  const wanted = new Set(uids);
  const all = await client.fetchAll(uidSet(uids), { uid: true, size: true, envelope: true }, { uid: true });
  const metas = all.filter((m) => wanted.has(m.uid)); // `N:*` semantics can return a lower UID
  const groups = sourceGroups(metas.filter((m) => !oversize(spec, m)));
  return { uids, metas, groups, firstSources: await fetchSources(client, groups[0] ?? []) };
}

/** What routing and the metadata need. Broken MIME never throws here: unparsable fields are left empty. */
export function describe(m: Pick<Meta, 'envelope' | 'headers'>, source: Buffer): { from: string[]; to: string[]; cc: string[]; subject: string; date: string | null; messageId: string | null; headers: Map<string, string[]> } {
  let headers = new Map<string, string[]>();
  try {
    headers = parseHeaders(m.headers ?? source);
  } catch {
    /* left empty */
  }
  try {
    const env = m.envelope ?? {};
    return { from: addresses(env.from), to: addresses(env.to), cc: addresses(env.cc), subject: text(env.subject), date: toIso(env.date), messageId: text(env.messageId) || null, headers };
  } catch {
    return { from: [], to: [], cc: [], subject: '', date: null, messageId: null, headers };
  }
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
async function carryOut(client: ImapFlow, spec: ImapServerSpec, cp: Checkpoint, copy: number[]): Promise<void> {
  const intent = cp.copyIntent!;
  const flag = intent.flag ?? [];
  const seen = (intent.seen ?? intent.uids).filter((u) => !flag.includes(u));
  if (copy.length) {
    const res = await client.messageCopy(uidSet(copy), spec.storageFolder, { uid: true });
    if (res === false) throw new MailError('folder-missing', `storage folder "${spec.storageFolder}" does not exist on ${spec.host}; create it first`, { code: 'NotFound' });
  }
  if (seen.length) await client.messageFlagsAdd(uidSet(seen), ['\\Seen'], { uid: true, silent: true });
  if (flag.length) await client.messageFlagsAdd(uidSet(flag), ['\\Seen', '\\Flagged'], { uid: true, silent: true });
  settle(cp, intent);
}

/**
 * A crash (or a failed COPY) after the intent was recorded: copy only those messages whose Message-ID is not in the
 * storage folder yet, then finish the batch (flags, checkpoint).
 */
export async function recoverCopy(client: ImapFlow, spec: ImapServerSpec, cp: Checkpoint, file: string, log: Logger | undefined): Promise<void> {
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
  const missing = intent.uids.filter((uid) => !stored.has(intent.messageIds[uid] ?? '') && !storedAnonymous.has(String(uid)));
  log?.warn({ uids: intent.uids.length, copying: missing.length }, 'resuming an interrupted copy to the storage folder');
  await carryOut(client, spec, cp, missing);
  await saveCheckpoint(file, cp);
}

/**
 * For the messages to copy that have no Message-ID: how recovery can recognise their copies (size and content hash),
 * and the storage folder's UIDNEXT, above which they will land. One STATUS, only when there are such messages.
 */
async function anonymousFingerprints(client: ImapFlow, spec: ImapServerSpec, copy: number[], messageIds: Record<string, string | null>, byUid: Map<number, Meta>, hashOf: Map<number, string>): Promise<Pick<Intent, 'withoutMessageId' | 'storageUidNext'>> {
  const anonymous = copy.filter((uid) => !messageIds[uid]);
  if (!anonymous.length) return {};
  const status = await client.status(spec.storageFolder, { uidNext: true }).catch(() => false as const);
  if (!status || status.uidNext === undefined) return {}; // recovery copies them again (at least once)
  const withoutMessageId = Object.fromEntries(anonymous.map((uid): [string, Fingerprint] => [String(uid), { size: byUid.get(uid)?.size ?? 0, sha256: hashOf.get(uid) ?? null }]));
  return { withoutMessageId, storageUidNext: status.uidNext };
}

export async function runBatch(ctx: BatchContext, batch: FetchedBatch, maxFresh: number): Promise<BatchOutcome> {
  const { client, spec, flow, sink, cp, log, uidValidity } = ctx;
  const { uids, metas } = batch;
  const byUid = new Map(metas.map((m) => [m.uid, m]));
  // released from quarantine: already in the storage folder, never copied again
  const wasCopied = new Set(uids.filter((u) => cp.pending[u]?.copied === true));
  // UIDs at or below this are settled after the batch (done, pending retry, or quarantined)
  const advanceTo = Math.max(cp.lastUid, Math.min(maxFresh, Math.max(...uids)));
  for (const uid of uids) {
    if (!byUid.has(uid) && cp.pending[uid]) {
      log?.info({ uid }, 'pending message no longer in the folder (expunged by another client)');
      delete cp.pending[uid];
    }
  }

  const identity = { host: spec.host, user: spec.auth.user, folder: spec.folder };
  const keyOf = (uid: number) => messageKey(spec.shortName, uidValidity, uid, identity);
  const at = () => new Date(ctx.now()).toISOString();
  const delivered: number[] = [];
  const duplicates: number[] = [];
  const quarantined: number[] = [];
  const messageIds: Record<string, string | null> = {};
  const failed = new Map<number, { error: string; sinkDown: boolean }>();
  const ledgerEntries: { messageId: string | null; hash: string }[] = [];
  const hashOf = new Map<number, string>();
  let permanent = 0;
  const quarantine = (uid: number, messageId: string | null, reason: QuarantineReason, detail: string, attempts?: number) => {
    recordQuarantine(cp, uid, { key: keyOf(uid), reason, detail, at: at(), messageId, ...(attempts !== undefined && { attempts }) });
    messageIds[uid] = messageId;
    quarantined.push(uid);
    log?.warn({ uid, key: keyOf(uid), reason }, `message quarantined: ${detail}`);
  };

  for (const m of metas) {
    if (oversize(spec, m)) quarantine(m.uid, text(m.envelope?.messageId) || null, 'oversize', `RFC822.SIZE ${m.size} > maxMessageSize ${spec.maxMessageSize}; not downloaded`);
  }

  const deliverGroup = async (group: Meta[], sources: Map<number, Buffer>) => {
    const items: (SinkItem & { hash: string })[] = [];
    for (const m of group) {
      const source = sources.get(m.uid);
      if (!source) {
        failed.set(m.uid, { error: 'source not returned by the server', sinkDown: false });
        continue;
      }
      const facts = describe(m, source);
      const hash = contentHash(source);
      hashOf.set(m.uid, hash);
      if (cp.recheckBelow !== undefined && m.uid < cp.recheckBelow && (await ctx.ledger.has(facts.messageId, hash))) {
        duplicates.push(m.uid);
        continue;
      }
      const decision = routeMessage(flow, { from: facts.from, to: [...facts.to, ...facts.cc], subject: facts.subject, headers: facts.headers });
      if (decision.action === 'drop') {
        delivered.push(m.uid);
        messageIds[m.uid] = facts.messageId;
        continue;
      }
      if (decision.action === 'unrouted') {
        quarantine(m.uid, facts.messageId, 'unrouted', 'no route of the flow matches');
        continue;
      }
      const metadata: InboundMetadata = {
        server: `imap/${spec.shortName}`, folder: spec.folder, uidValidity, uid: m.uid, messageId: facts.messageId, from: facts.from, to: facts.to, cc: facts.cc,
        subject: facts.subject, date: facts.date, queue: decision.queue, receivedAt: at(), autoReply: decision.autoReply,
      };
      items.push({ key: keyOf(m.uid), queue: decision.queue, source, metadata, hash });
    }
    const results = await sink.deliverBatch(items);
    results.forEach((r, i) => {
      const { metadata, hash } = items[i]!;
      if (r.ok) {
        delivered.push(metadata.uid);
        messageIds[metadata.uid] = metadata.messageId;
        ledgerEntries.push({ messageId: metadata.messageId, hash });
      } else if (r.permanent) {
        permanent++;
        quarantine(metadata.uid, metadata.messageId, 'rejected', r.error.message);
      } else failed.set(metadata.uid, { error: r.error.message, sinkDown: r.sinkDown === true });
    });
  };
  for (const [i, group] of batch.groups.entries()) await deliverGroup(group, i === 0 ? batch.firstSources : await fetchSources(client, group));

  // Nothing got through and nothing was answered: the sink is down when it said so, was already down, or more than
  // one message failed. Then no attempt is counted against the messages; the caller pauses the loop.
  const failures = [...failed.values()];
  const sinkDown =
    failures.length > 0 && delivered.length === 0 && permanent === 0 && (ctx.sinkWasDown || failures.length > 1 || failures.some((f) => f.sinkDown)) ? failures[0]!.error : null;
  const now = ctx.now();
  for (const [uid, { error }] of failed) {
    const before = cp.pending[uid];
    if (sinkDown) {
      cp.pending[uid] = { ...before, attempts: before?.attempts ?? 0, nextAttemptAt: 0, lastError: error };
      continue;
    }
    const attempts = (before?.attempts ?? 0) + 1;
    if (attempts >= MAX_ATTEMPTS) {
      quarantine(uid, text(byUid.get(uid)?.envelope?.messageId) || null, 'failed', `failed ${attempts} times; last error: ${error}`, attempts);
      continue;
    }
    cp.pending[uid] = { ...before, attempts, nextAttemptAt: now + retryDelayMs(attempts), lastError: error };
    log?.warn({ uid, attempts, err: error }, 'delivery failed; the message stays unseen and is retried');
  }

  const seen = [...delivered, ...duplicates].sort((a, b) => a - b);
  const copy = [...delivered, ...quarantined].filter((u) => !wasCopied.has(u)).sort((a, b) => a - b);
  quarantined.sort((a, b) => a - b);
  if (duplicates.length) log?.info({ uids: duplicates.length }, 'already delivered before the mailbox was recreated (same Message-ID and content): not delivered or copied again');
  const intent: Intent = { storageFolder: spec.storageFolder, uids: copy, messageIds, advanceTo, seen, flag: quarantined };
  const onServer = copy.length > 0 || seen.length > 0 || quarantined.length > 0;
  // the intent is durable before COPY: a crash from here on resumes in recoverCopy instead of copying twice. The
  // ledger entries are written alongside (after the sink, so never for a message that is not delivered).
  if (onServer) cp.copyIntent = { ...intent, ...(await anonymousFingerprints(client, spec, copy, messageIds, byUid, hashOf)) };
  else settle(cp, intent);
  await Promise.all([saveCheckpoint(ctx.file, cp), ctx.ledger.add(ledgerEntries)]);
  if (onServer) await carryOut(client, spec, cp, copy);
  return { delivered: delivered.length, quarantined: quarantined.length, duplicates: duplicates.length, failed: failed.size, sinkDown };
}
