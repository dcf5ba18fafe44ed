/**
 * One batch of UIDs, up to the sink: FETCH metadata (RFC822.SIZE only; never the body) → quarantine oversize (their
 * Message-ID header alone is fetched) → FETCH sources (BODY.PEEK; routing and metadata read the header from the
 * source, facts.ts) in groups → after a UIDVALIDITY change, skip what the ledger says was delivered → route →
 * deliver durably to the sink. Nothing here changes the checkpoint or the server: deliverBatch returns what happened,
 * and commit.ts records it (the copy intent) and carries it out (COPY, STORE). fetchBatch has no side effect on the
 * server, so the processor runs it for the next batch while this one is being written to disk, and deliverBatch runs
 * while the previous batch is copied and flagged.
 */
import type { Mailbox, MessageSize } from '../../adapters/imap.js';
import { capText } from '../../adapters/text.js';
import type { Logger } from 'pino';
import type { FlowSpec, ImapServerSpec } from '../../config/model.js';
import type { Checkpoint, InboundStore, MailboxRef, QueueRow } from '../../store/ports.js';
import type { Delivery } from './decide.js';
import { contentHash, messageFacts } from './facts.js';
import { routeMessage } from './route.js';
import { messageKey, type InboundMetadata, type InboundSink, type SinkItem } from './sinks/directory.js';
import { fetchMessageIds } from './storage-lookup.js';

/** Upper bound of message bytes per source FETCH (with the next batch fetched ahead, twice this is held at most). */
export const SOURCE_BYTES_PER_FETCH = 32 * 1024 * 1024;

export interface BatchContext {
  client: Mailbox;
  spec: ImapServerSpec;
  flow: FlowSpec;
  sink: InboundSink;
  /** Only read by deliverBatch (recheckBelow, the batch's own retry entries); replaced by commit.ts. */
  cp: Checkpoint;
  store: InboundStore;
  mailbox: MailboxRef;
  uidValidity: string;
  now: () => number;
  log: Logger | undefined;
  /** The sink was down at the last try: a batch failing entirely is the sink's fault again, not its messages'. */
  sinkWasDown: boolean;
}

export type Meta = MessageSize;

/**
 * A delivered batch: what decide.ts needs, plus what recovery needs to recognise copies without a Message-ID, and the
 * queue rows of a sink in the store (committed with the checkpoint).
 */
export interface DeliveredBatch extends Delivery {
  byUid: Map<number, Meta>;
  /** Content hashes by UID (how recovery recognises copies of messages without a Message-ID). */
  hashOf: Map<number, string>;
  rows: QueueRow[];
}

/** A batch's metadata and the sources of its first group, fetched ahead of its turn. */
export interface FetchedBatch {
  uids: number[];
  metas: Meta[];
  /** The messages to download (not oversize), in groups of at most SOURCE_BYTES_PER_FETCH. */
  groups: Meta[][];
  firstSources: Map<number, Buffer>;
  /** The Message-IDs of the oversize messages (quarantined without downloading them). */
  oversizeIds: Map<number, string | null>;
}

export const oversize = (spec: ImapServerSpec, m: Meta): boolean => m.size > spec.maxMessageSize;

function sourceGroups(metas: readonly Meta[]): Meta[][] {
  const groups: Meta[][] = [];
  let bytes = 0;
  for (const m of metas) {
    const last = groups.at(-1);
    if (!last || bytes + m.size > SOURCE_BYTES_PER_FETCH) {
      groups.push([m]);
      bytes = m.size;
    } else {
      last.push(m);
      bytes += m.size;
    }
  }
  return groups;
}

export const fetchSources = (client: Mailbox, group: readonly Meta[]): Promise<Map<number, Buffer>> =>
  client.fetchSources(group.map((m) => m.uid));

/** The IMAP reads of a batch (no side effect on the server): metadata, then the first group's sources. */
export async function fetchBatch(client: Mailbox, spec: ImapServerSpec, uids: number[]): Promise<FetchedBatch> {
  const wanted = new Set(uids);
  const all = await client.fetchSizes(uids);
  const metas = all.filter((m) => wanted.has(m.uid)); // `N:*` semantics can return a lower UID
  const groups = sourceGroups(metas.filter((m) => !oversize(spec, m)));
  const oversizeIds = await fetchMessageIds(
    client,
    metas.filter((m) => oversize(spec, m)).map((m) => m.uid),
  );
  return { uids, metas, groups, firstSources: await fetchSources(client, groups[0] ?? []), oversizeIds };
}

/** The sink key of a UID of this server's folder. */
export function keyOf(spec: ImapServerSpec, uidValidity: string, uid: number): string {
  return messageKey(spec.shortName, uidValidity, uid, { host: spec.host, user: spec.auth.user, folder: spec.folder });
}

/** Routes a fetched batch and delivers it to the sink; changes neither the checkpoint nor the server. */
export async function deliverBatch(ctx: BatchContext, batch: FetchedBatch): Promise<DeliveredBatch> {
  const { client, spec, flow, sink, cp, uidValidity } = ctx;
  const { uids, metas } = batch;
  const byUid = new Map(metas.map((m) => [m.uid, m]));
  const out: DeliveredBatch = {
    uids,
    byUid,
    present: new Set(byUid.keys()),
    delivered: [],
    duplicates: [],
    quarantine: [],
    failed: new Map(),
    messageIds: {},
    hashOf: new Map(),
    ledgerEntries: [],
    rows: [],
  };
  const at = () => new Date(ctx.now()).toISOString();
  for (const m of metas) {
    if (oversize(spec, m))
      out.quarantine.push({
        uid: m.uid,
        messageId: batch.oversizeIds.get(m.uid) ?? null,
        reason: 'oversize',
        detail: `RFC822.SIZE ${m.size} > maxMessageSize ${spec.maxMessageSize}; not downloaded`,
      });
  }

  const deliverGroup = async (group: Meta[], sources: Map<number, Buffer>) => {
    const items: (SinkItem & { hash: string })[] = [];
    for (const m of group) {
      const source = sources.get(m.uid);
      if (!source) {
        out.failed.set(m.uid, { error: 'source not returned by the server', sinkDown: false, messageId: null });
        continue;
      }
      const facts = messageFacts(source);
      const hash = contentHash(source);
      out.hashOf.set(m.uid, hash);
      if (
        cp.recheckBelow !== undefined &&
        m.uid < cp.recheckBelow &&
        (await ctx.store.wasDelivered(ctx.mailbox, { messageId: facts.messageId, hash }))
      ) {
        out.duplicates.push(m.uid);
        continue;
      }
      const decision = routeMessage(flow, {
        from: facts.from,
        to: [...facts.to, ...facts.cc],
        subject: facts.subject,
        headers: facts.headers,
      });
      if (decision.action === 'drop') {
        out.delivered.push(m.uid);
        out.messageIds[m.uid] = facts.messageId;
        continue;
      }
      if (decision.action === 'unrouted') {
        out.quarantine.push({
          uid: m.uid,
          messageId: facts.messageId,
          reason: 'unrouted',
          detail: 'no route of the flow matches',
        });
        continue;
      }
      const metadata: InboundMetadata = {
        server: `imap/${spec.shortName}`,
        folder: spec.folder,
        uidValidity,
        uid: m.uid,
        messageId: facts.messageId,
        from: facts.from,
        to: facts.to,
        cc: facts.cc,
        subject: facts.subject,
        date: facts.date,
        queue: decision.queue,
        receivedAt: at(),
        autoReply: decision.autoReply,
      };
      items.push({ key: keyOf(spec, uidValidity, m.uid), queue: decision.queue, source, metadata, hash });
    }
    const results = await sink.deliverBatch(items);
    results.forEach((r, i) => {
      const { metadata, hash } = items[i]!;
      if (r.ok) {
        if (r.row) out.rows.push(r.row);
        out.delivered.push(metadata.uid);
        out.messageIds[metadata.uid] = metadata.messageId;
        out.ledgerEntries.push({ messageId: metadata.messageId, hash });
      } else if (r.permanent)
        out.quarantine.push({
          uid: metadata.uid,
          messageId: metadata.messageId,
          reason: 'rejected',
          detail: capText(r.error.message),
        });
      else
        out.failed.set(metadata.uid, {
          error: capText(r.error.message),
          sinkDown: r.sinkDown === true,
          messageId: metadata.messageId,
        });
    });
  };
  for (const [i, group] of batch.groups.entries())
    await deliverGroup(group, i === 0 ? batch.firstSources : await fetchSources(client, group));
  return out;
}
