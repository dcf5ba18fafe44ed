/**
 * The inbound stage of an IMAP loop: each poll processes every message of the inbox folder not processed yet (UIDs
 * above the checkpoint, read or not, plus due retries; on the first run the `backfill` set), in batches:
 * FETCH metadata → skip oversize → FETCH source (BODY.PEEK, \Seen untouched) → route → deliver durably to the sink →
 * record the copy intent → one UID COPY to the storage folder → one UID STORE +FLAGS.SILENT (\Seen) → advance the
 * checkpoint. A message whose delivery fails stays unseen and is retried with backoff on later polls without
 * blocking the messages after it.
 */
import path from 'node:path';
import type { FetchMessageObject, ImapFlow, MessageAddressObject } from 'imapflow';
import type { Logger } from 'pino';
import { MailError } from '../../adapters/connection.js';
import type { FlowSpec, ImapServerSpec } from '../../config/model.js';
import type { ServerConfig } from '../../plan/model.js';
import type { InboundProcessor } from '../loops/imap-loop.js';
import { checkpointFile, CHECKPOINT_FORMAT_VERSION, loadCheckpoint, retryDelayMs, saveCheckpoint, type Checkpoint } from './checkpoint.js';
import { parseHeaders, routeMessage, type RouteDecision } from './route.js';
import { DirectorySink, identityHash, messageKey, type InboundMetadata, type SinkItem } from './sink-directory.js';

/** UIDs per batch (one metadata FETCH, one COPY, one STORE, one checkpoint write). */
export const BATCH_SIZE = 100;
/** Upper bound of message bytes held in memory at once while fetching sources. */
export const SOURCE_BYTES_PER_FETCH = 32 * 1024 * 1024;

export interface InboundMailProcessorOptions {
  stateDir: string;
  log?: Logger;
  batchSize?: number;
  now?: () => number;
}

type Spec = ImapServerSpec;
type Meta = FetchMessageObject;

const addresses = (list: MessageAddressObject[] | undefined): string[] =>
  (list ?? []).map((a) => (a.address ?? '').trim()).filter((a) => a !== '');

const toIso = (d: Date | string | undefined): string | null => {
  if (!d) return null;
  const date = d instanceof Date ? d : new Date(d);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
};

const uidSet = (uids: readonly number[]): string => uids.join(',');

export class InboundMailProcessor implements InboundProcessor {
  private readonly sinks = new Map<string, DirectorySink>();
  private readonly now: () => number;
  private readonly batchSize: number;

  constructor(private readonly options: InboundMailProcessorOptions) {
    this.now = options.now ?? Date.now;
    this.batchSize = options.batchSize ?? BATCH_SIZE;
  }

  /** `deliver.directory`, absolute or relative to the daemon's state folder. */
  sinkDir(flow: FlowSpec): string {
    const dir = flow.deliver.directory;
    if (!dir) throw new MailError('config', `email flow "${flow.name}": only the directory sink is implemented (webhook is not yet)`);
    return path.resolve(this.options.stateDir, dir);
  }

  private sink(flow: FlowSpec): DirectorySink {
    const dir = this.sinkDir(flow);
    let sink = this.sinks.get(dir);
    if (!sink) this.sinks.set(dir, (sink = new DirectorySink(dir)));
    return sink;
  }

  async poll(client: ImapFlow, config: ServerConfig & { spec: ImapServerSpec }, signal: AbortSignal): Promise<void> {
    const { spec, flow } = config;
    if (!flow) {
      await client.status(spec.folder, { messages: true, unseen: true });
      return;
    }
    const log = this.options.log?.child({ server: `imap/${spec.shortName}`, stage: 'inbound' });
    const sink = this.sink(flow);
    const box = await this.selected(client, spec.folder);
    const uidValidity = String(box.uidValidity);
    const identity = identityHash({ host: spec.host, user: spec.auth.user, folder: spec.folder });
    const file = checkpointFile(this.options.stateDir, spec.type, spec.shortName);

    let cp = await loadCheckpoint(file, identity, spec.folder);
    if (!cp) {
      cp = await this.firstRun(client, spec, identity, uidValidity, box.uidNext);
      await saveCheckpoint(file, cp);
      log?.info({ backfill: spec.backfill, pending: Object.keys(cp.pending).length, lastUid: cp.lastUid }, 'inbound checkpoint created');
    }
    if (cp.uidValidity !== uidValidity) {
      // Not handled yet: recognising already-delivered mail by Message-ID + content hash. Stalling is safer than
      // re-delivering or skipping.
      throw new Error(`UIDVALIDITY of "${spec.folder}" changed from ${cp.uidValidity} to ${uidValidity}; inbound processing stopped (not handled yet)`);
    }
    if (cp.copyIntent) await this.recoverCopy(client, spec, cp, file, log);

    const now = this.now();
    const searched = (await client.search({ uid: `${cp.lastUid + 1}:*` }, { uid: true })) || [];
    const fresh = searched.filter((u) => u > cp.lastUid);
    const due = Object.entries(cp.pending).filter(([, p]) => p.nextAttemptAt <= now).map(([u]) => Number(u));
    const all = [...new Set([...due, ...fresh])].sort((a, b) => a - b);
    log?.debug({ lastUid: cp.lastUid, fresh: fresh.length, due: due.length }, 'inbound poll');
    for (let i = 0; i < all.length && !signal.aborted; i += this.batchSize) {
      await this.batch(client, spec, flow, sink, cp, file, uidValidity, all.slice(i, i + this.batchSize), fresh.reduce((a, b) => Math.max(a, b), cp.lastUid), log);
    }
  }

  private async selected(client: ImapFlow, folder: string) {
    const box = client.mailbox;
    if (box && box.path === folder) return box;
    return client.mailboxOpen(folder);
  }

  private async firstRun(client: ImapFlow, spec: Spec, identity: string, uidValidity: string, uidNext: number): Promise<Checkpoint> {
    let backlog: number[] = [];
    if (spec.backfill === 'unseen') backlog = (await client.search({ seen: false }, { uid: true })) || [];
    else if (spec.backfill === 'all') backlog = (await client.search({ all: true }, { uid: true })) || [];
    const top = uidNext - 1;
    const pending: Checkpoint['pending'] = {};
    for (const uid of backlog) if (uid <= top) pending[uid] = { attempts: 0, nextAttemptAt: 0 };
    return {
      formatVersion: CHECKPOINT_FORMAT_VERSION,
      server: `imap/${spec.shortName}`,
      identity,
      folder: spec.folder,
      uidValidity,
      lastUid: Math.max(0, top),
      pending,
      copyIntent: null,
      quarantined: {},
      updatedAt: new Date().toISOString(),
    };
  }

  /**
   * A crash (or a failed COPY) after the intent was recorded: copy only those messages whose Message-ID is not in the
   * storage folder yet, then finish the batch (\Seen, checkpoint).
   */
  private async recoverCopy(client: ImapFlow, spec: Spec, cp: Checkpoint, file: string, log: Logger | undefined): Promise<void> {
    const intent = cp.copyIntent!;
    const missing: number[] = [];
    await client.mailboxOpen(intent.storageFolder, { readOnly: true });
    try {
      for (const uid of intent.uids) {
        const mid = intent.messageIds[uid];
        // Without a Message-ID there is nothing to look for: copy again (at-least-once in the storage folder).
        const found = mid ? (await client.search({ header: { 'message-id': mid } }, { uid: true })) || [] : [];
        if (!found.length) missing.push(uid);
      }
    } finally {
      await client.mailboxOpen(spec.folder);
    }
    log?.warn({ uids: intent.uids.length, copying: missing.length }, 'resuming an interrupted copy to the storage folder');
    await this.finish(client, spec, cp, file, missing, intent.uids, intent.advanceTo ?? cp.lastUid);
  }

  /** COPY `copy`, STORE +FLAGS.SILENT \Seen on `seen`, then advance the checkpoint. */
  private async finish(client: ImapFlow, spec: Spec, cp: Checkpoint, file: string, copy: number[], seen: number[], advanceTo: number): Promise<void> {
    if (copy.length) {
      const res = await client.messageCopy(uidSet(copy), spec.storageFolder, { uid: true });
      if (res === false) throw new MailError('folder-missing', `storage folder "${spec.storageFolder}" does not exist on ${spec.host}; create it first`, { code: 'NotFound' });
    }
    if (seen.length) await client.messageFlagsAdd(uidSet(seen), ['\\Seen'], { uid: true, silent: true });
    for (const uid of seen) delete cp.pending[uid];
    cp.lastUid = Math.max(cp.lastUid, advanceTo);
    cp.copyIntent = null;
    await saveCheckpoint(file, cp);
  }

  private async batch(
    client: ImapFlow,
    spec: Spec,
    flow: FlowSpec,
    sink: DirectorySink,
    cp: Checkpoint,
    file: string,
    uidValidity: string,
    uids: number[],
    maxFresh: number,
    log: Logger | undefined,
  ): Promise<void> {
    const metas = await client.fetchAll(uidSet(uids), { uid: true, size: true, envelope: true, headers: true }, { uid: true });
    const byUid = new Map(metas.map((m) => [m.uid, m]));
    // UIDs at or below this are settled after the batch (done, pending retry, or recorded as quarantined)
    const advanceTo = Math.max(cp.lastUid, Math.min(maxFresh, Math.max(...uids)));
    for (const uid of uids) {
      if (!byUid.has(uid) && cp.pending[uid]) {
        log?.info({ uid }, 'pending message no longer in the folder (expunged by another client)');
        delete cp.pending[uid];
      }
    }

    const done: number[] = [];
    const messageIds: Record<string, string | null> = {};
    const failed = new Map<number, string>();
    const identity = { host: spec.host, user: spec.auth.user, folder: spec.folder };
    const toFetch: Meta[] = [];
    for (const m of metas) {
      if (!uids.includes(m.uid)) continue; // `N:*` semantics can return a lower UID
      if ((m.size ?? 0) > spec.maxMessageSize) {
        this.quarantine(cp, m, 'oversize', `RFC822.SIZE ${m.size} > maxMessageSize ${spec.maxMessageSize}`, log);
        continue;
      }
      toFetch.push(m);
    }

    // sources in groups bounded by SOURCE_BYTES_PER_FETCH, each group delivered before the next is fetched
    let group: Meta[] = [];
    let bytes = 0;
    const flush = async () => {
      if (!group.length) return;
      const current = group;
      group = [];
      bytes = 0;
      const sources = new Map<number, Buffer>();
      for (const m of await client.fetchAll(uidSet(current.map((m) => m.uid)), { uid: true, source: true }, { uid: true })) {
        if (m.source) sources.set(m.uid, m.source);
      }
      const items: SinkItem[] = [];
      for (const m of current) {
        const source = sources.get(m.uid);
        if (!source) {
          failed.set(m.uid, 'source not returned by the server');
          continue;
        }
        const env = m.envelope ?? {};
        const headers = parseHeaders(m.headers ?? source);
        const to = addresses(env.to);
        const cc = addresses(env.cc);
        const decision: RouteDecision = routeMessage(flow, { from: addresses(env.from), to: [...to, ...cc], subject: env.subject ?? '', headers });
        if (decision.action === 'drop') {
          done.push(m.uid);
          messageIds[m.uid] = env.messageId ?? null;
          continue;
        }
        if (decision.action === 'unrouted') {
          this.quarantine(cp, m, 'unrouted', 'no route of the flow matches', log);
          continue;
        }
        const metadata: InboundMetadata = {
          server: `imap/${spec.shortName}`,
          folder: spec.folder,
          uidValidity,
          uid: m.uid,
          messageId: env.messageId ?? null,
          from: addresses(env.from),
          to,
          cc,
          subject: env.subject ?? '',
          date: toIso(env.date),
          queue: decision.queue,
          receivedAt: new Date(this.now()).toISOString(),
          autoReply: decision.autoReply,
        };
        items.push({ key: messageKey(spec.shortName, uidValidity, m.uid, identity), queue: decision.queue, source, metadata });
      }
      const results = await sink.deliverBatch(items);
      results.forEach((r, i) => {
        const uid = items[i]!.metadata.uid;
        if (r.ok) {
          done.push(uid);
          messageIds[uid] = items[i]!.metadata.messageId;
        } else failed.set(uid, r.error.message);
      });
    };
    for (const m of toFetch) {
      if (group.length && bytes + (m.size ?? 0) > SOURCE_BYTES_PER_FETCH) await flush();
      group.push(m);
      bytes += m.size ?? 0;
    }
    await flush();

    const now = this.now();
    for (const [uid, error] of failed) {
      const attempts = (cp.pending[uid]?.attempts ?? 0) + 1;
      cp.pending[uid] = { attempts, nextAttemptAt: now + retryDelayMs(attempts), lastError: error };
      log?.warn({ uid, attempts, err: error }, 'delivery failed; the message stays unseen and is retried');
    }
    for (const uid of Object.keys(cp.quarantined)) delete cp.pending[uid];
    done.sort((a, b) => a - b);
    // the intent is durable before COPY: a crash from here on resumes in recoverCopy instead of copying twice
    cp.copyIntent = done.length ? { storageFolder: spec.storageFolder, uids: done, messageIds, advanceTo } : null;
    await saveCheckpoint(file, cp);
    await this.finish(client, spec, cp, file, done, done, advanceTo);
    if (failed.size && !done.length && failed.size === toFetch.length) {
      throw new Error(`delivery failed for all ${failed.size} message(s) of the batch: ${[...failed.values()][0]}`);
    }
  }

  private quarantine(cp: Checkpoint, m: Meta, reason: 'oversize' | 'unrouted', detail: string, log: Logger | undefined): void {
    cp.quarantined[m.uid] = { reason, detail, at: new Date(this.now()).toISOString(), messageId: m.envelope?.messageId ?? null };
    delete cp.pending[m.uid];
    log?.warn({ uid: m.uid, reason }, `message not delivered (${detail}); recorded for quarantine, left unseen in the folder`);
  }
}
