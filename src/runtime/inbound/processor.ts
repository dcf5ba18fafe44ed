/**
 * The inbound stage of an IMAP loop: each poll processes every message of the inbox folder not processed yet (UIDs
 * above the checkpoint, read or not, plus due retries; on the first run the `backfill` set), in batches (batch.ts, then
 * commit.ts; batch N+1 is fetched while N goes to the sink, and goes to the sink while N is copied and flagged):
 * FETCH metadata → quarantine oversize → FETCH source (BODY.PEEK, \Seen untouched) → route → deliver durably to the
 * sink → record the copy intent → one UID COPY to the storage folder → one UID STORE +FLAGS.SILENT → advance the
 * checkpoint. A message whose delivery fails stays unseen and is retried with backoff on later polls without blocking
 * the messages after it; after MAX_ATTEMPTS failures, or a permanent one, it is quarantined. While the sink itself is
 * down the server's processing pauses with backoff (SinkUnavailableError) and then probes the sink with one message.
 * A UIDVALIDITY change restarts the folder from UID 1, skipping what the delivered ledger already has.
 * Polls and quarantine releases of one checkpoint never run at the same time (one lock per checkpoint file).
 */
import path from 'node:path';
import type { ImapFlow } from 'imapflow';
import type { Logger } from 'pino';
import { MailError } from '../../adapters/connection.js';
import type { SecretResolver } from '../../connect/secrets.js';
import type { FlowSpec, ImapServerSpec } from '../../config/model.js';
import type { ServerConfig } from '../../plan/model.js';
import { backoffDelay } from '../loops/backoff.js';
import type { InboundProcessor, PollStats } from '../loops/imap-loop.js';
import { deliverBatch, fetchBatch, type FetchedBatch } from './batch.js';
import { carryOut, recordBatch, recoverCopy } from './commit.js';
import {
  checkpointFile,
  CHECKPOINT_FORMAT_VERSION,
  listCheckpoints,
  loadCheckpoint,
  removeStaleTemps,
  saveCheckpoint,
  type Checkpoint,
} from './checkpoint.js';
import { DeliveredLedger, ledgerFile } from './ledger.js';
import { quarantineListing, releaseInCheckpoint, type QuarantineListing } from './quarantine.js';
import { DirectorySink, identityHash, type InboundSink } from './sinks/directory.js';
import { WebhookSink } from './sinks/webhook.js';

/** UIDs per batch (one metadata FETCH, one source FETCH, one COPY, one STORE, one checkpoint write). */
export const BATCH_SIZE = 100;
/**
 * A poll's first batch is smaller and the next ones double up to the batch size: the first messages of a backlog
 * reach the sink sooner and the pipeline fills while the rest is fetched (measured: first file ~35 ms sooner).
 */
const FIRST_BATCH_SIZE = 25;

/** The size of a poll's `index`-th batch (0-based). */
export const batchSizeAt = (index: number, max: number): number =>
  Math.min(max, FIRST_BATCH_SIZE * 2 ** Math.min(index, 16));

export interface InboundMailProcessorOptions {
  stateDir: string;
  log?: Logger;
  /** Resolves the webhook secret (confined like every secret); without it a webhook flow is a config error. */
  resolver?: SecretResolver;
  batchSize?: number;
  now?: () => number;
}

/** The sink of a flow is down: nothing was processed; try again after `retryAfterMs`. */
export class SinkUnavailableError extends MailError {
  constructor(message: string, retryAfterMs: number) {
    super('network', message, { code: 'SinkUnavailable', retryAfterMs });
  }
}

type Spec = ImapServerSpec;

/** Work running ahead of its turn: a failure surfaces where it is awaited, never as an unhandled rejection. */
function ahead<T>(work: Promise<T>): Promise<T> {
  work.catch(() => undefined);
  return work;
}

/** Waits for both; fails with the first failure only once neither is still running (nothing outlives the poll). */
async function alongside<T>(other: Promise<unknown>, work: Promise<T>): Promise<T> {
  const [a, b] = await Promise.allSettled([other, work]);
  if (a.status === 'rejected') throw a.reason;
  if (b.status === 'rejected') throw b.reason;
  return b.value;
}

export class InboundMailProcessor implements InboundProcessor {
  private readonly directories = new Map<string, DirectorySink>();
  private readonly ledgers = new Map<string, DeliveredLedger>();
  /** Per server: consecutive sink-down rounds and when the next try is due. */
  private readonly down = new Map<string, { rounds: number; until: number; error: string }>();
  private readonly locks = new Map<string, Promise<unknown>>();
  /** Checkpoint files whose crash leftovers were removed by this process. */
  private readonly swept = new Set<string>();
  private readonly now: () => number;
  private readonly batchSize: number;

  constructor(private readonly options: InboundMailProcessorOptions) {
    this.now = options.now ?? Date.now;
    this.batchSize = options.batchSize ?? BATCH_SIZE;
  }

  /** `deliver.directory`, absolute or relative to the daemon's state folder. */
  sinkDir(flow: FlowSpec): string {
    const dir = flow.deliver.directory;
    if (!dir) throw new MailError('config', `email flow "${flow.name}" has no directory sink`);
    return path.resolve(this.options.stateDir, dir);
  }

  private async sink(flow: FlowSpec): Promise<InboundSink> {
    const webhook = flow.deliver.webhook;
    if (webhook) {
      if (!this.options.resolver)
        throw new MailError('config', `email flow "${flow.name}": the webhook secret cannot be resolved here`);
      // resolved on every poll: a rotated secret is used from the next poll on; never kept beyond the sink object
      return new WebhookSink(webhook.url, await this.options.resolver.resolve(webhook.secret));
    }
    const dir = this.sinkDir(flow);
    let sink = this.directories.get(dir);
    if (!sink) this.directories.set(dir, (sink = new DirectorySink(dir)));
    return sink;
  }

  private ledger(spec: Spec): DeliveredLedger {
    const file = ledgerFile(this.options.stateDir, spec.type, spec.shortName);
    let ledger = this.ledgers.get(file);
    if (!ledger) this.ledgers.set(file, (ledger = new DeliveredLedger(file)));
    return ledger;
  }

  /** Runs `fn` after every earlier holder of `file`'s lock. */
  private withLock<T>(file: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(file) ?? Promise.resolve();
    const run = previous.then(fn, fn);
    const settled = run.catch(() => undefined);
    this.locks.set(file, settled);
    void settled.then(() => this.locks.get(file) === settled && this.locks.delete(file));
    return run;
  }

  async poll(
    client: ImapFlow,
    config: ServerConfig & { spec: ImapServerSpec },
    signal: AbortSignal,
  ): Promise<PollStats | void> {
    const { spec, flow } = config;
    if (!flow) {
      await client.status(spec.folder, { messages: true, unseen: true });
      return;
    }
    const file = checkpointFile(this.options.stateDir, spec.type, spec.shortName);
    return this.withLock(file, () => this.pollLocked(client, spec, flow, file, signal));
  }

  private async pollLocked(
    client: ImapFlow,
    spec: Spec,
    flow: FlowSpec,
    file: string,
    signal: AbortSignal,
  ): Promise<PollStats> {
    const stats: PollStats = { delivered: 0, quarantined: 0, duplicates: 0 };
    const serverId = `imap/${spec.shortName}`;
    const log = this.options.log?.child({ server: serverId, stage: 'inbound' });
    const paused = this.down.get(serverId);
    if (paused && this.now() < paused.until) return stats; // the sink is down: the loop wakes up when the pause is over
    const sink = await this.sink(flow);
    const box = await this.selected(client, spec.folder);
    const uidValidity = String(box.uidValidity);
    const identity = identityHash({ host: spec.host, user: spec.auth.user, folder: spec.folder });

    if (!this.swept.has(file)) {
      // First poll of this file in this process, under its lock: no atomic write of the checkpoint or the ledger can
      // be in flight, so temp files next to them are leftovers of a crash (found by test/integration/inbound-crash).
      this.swept.add(file);
      const removed =
        (await removeStaleTemps(file)) +
        (await removeStaleTemps(ledgerFile(this.options.stateDir, spec.type, spec.shortName)));
      if (removed) log?.info({ removed }, 'removed temp files an earlier crash left in the state folder');
    }
    let cp = await loadCheckpoint(file, identity, spec.folder);
    if (!cp) {
      cp = await this.firstRun(client, spec, identity, uidValidity, box.uidNext);
      await saveCheckpoint(file, cp);
      log?.info(
        { backfill: spec.backfill, pending: Object.keys(cp.pending).length, lastUid: cp.lastUid },
        'inbound checkpoint created',
      );
    }
    if (cp.uidValidity !== uidValidity) cp = await this.newEpoch(cp, uidValidity, box.uidNext, file, log);
    if (cp.copyIntent) await recoverCopy(client, spec, cp, file, log);

    const now = this.now();
    const checkpoint = cp;
    const searched = (await client.search({ uid: `${cp.lastUid + 1}:*` }, { uid: true })) || [];
    const fresh = searched.filter((u) => u > checkpoint.lastUid);
    const due = Object.entries(cp.pending)
      .filter(([, p]) => p.nextAttemptAt <= now)
      .map(([u]) => Number(u));
    const all = [...new Set([...due, ...fresh])].sort((a, b) => a - b);
    const maxFresh = fresh.reduce((a, b) => Math.max(a, b), cp.lastUid);
    log?.debug({ lastUid: cp.lastUid, fresh: fresh.length, due: due.length }, 'inbound poll');
    const ledger = this.ledger(spec);
    const probing = () => this.down.has(serverId);
    let i = 0;
    let batches = 0;
    // while the sink is down, one message probes it; the others wait without an attempt counted against them
    const fetchNext = () => {
      const uids = all.slice(i, i + (probing() ? 1 : batchSizeAt(batches++, this.batchSize)));
      i += uids.length;
      return uids.length ? ahead(fetchBatch(client, spec, uids)) : null;
    };
    // the previous batch's recorded intent, being carried out (COPY, STORE) while the next batch goes to the sink
    let carrying: Promise<void> = Promise.resolve();
    try {
      let next = fetchNext();
      while (next && !signal.aborted) {
        const batch: FetchedBatch = await next;
        const sinkWasDown = probing();
        // the next batch is read from the server while this one is written to disk; after a probe, once it succeeded
        next = sinkWasDown ? null : fetchNext();
        const ctx = { client, spec, flow, sink, cp, file, uidValidity, ledger, now: this.now, log, sinkWasDown };
        const delivery = await alongside(carrying, deliverBatch(ctx, batch));
        // a probe must not move the watermark past the messages still waiting behind it
        const outcome = await recordBatch(ctx, delivery, sinkWasDown ? Math.min(maxFresh, batch.uids[0]!) : maxFresh);
        carrying = ahead(cp.copyIntent ? carryOut(client, spec, cp, cp.copyIntent.uids) : Promise.resolve());
        stats.delivered += outcome.delivered;
        stats.quarantined += outcome.quarantined;
        stats.duplicates += outcome.duplicates;
        if (outcome.sinkDown) {
          await carrying;
          const rounds = (this.down.get(serverId)?.rounds ?? 0) + 1;
          const delay = backoffDelay(rounds);
          this.down.set(serverId, { rounds, until: this.now() + delay, error: outcome.sinkDown });
          log?.warn({ rounds, retryInMs: delay }, `sink down, inbound paused: ${outcome.sinkDown}`);
          throw new SinkUnavailableError(
            `the sink of flow "${flow.name}" is down (${outcome.sinkDown}); paused for ${Math.round(delay / 1000)} s`,
            delay,
          );
        }
        if (this.down.delete(serverId)) log?.info('sink reachable again; inbound resumed');
        next ??= fetchNext();
      }
      await carrying;
    } finally {
      await carrying.catch(() => undefined); // a failed read must not leave a COPY running after the poll's lock is released
    }
    // the last batch's completion (each batch's is persisted with the next one's intent)
    if (i > 0) await saveCheckpoint(file, cp);
    if (cp.recheckBelow !== undefined && cp.lastUid >= cp.recheckBelow - 1) ledger.forget();
    const nextRetry = Math.min(...Object.values(cp.pending).map((p) => p.nextAttemptAt));
    // never sooner than a second: a retry that could not run is not hot-looped
    if (Number.isFinite(nextRetry)) stats.nextPollInMs = Math.max(1000, nextRetry - this.now());
    return stats;
  }

  /** UIDVALIDITY changed (mailbox recreated): UIDs of the old epoch are meaningless; start over from UID 1. */
  private async newEpoch(
    old: Checkpoint,
    uidValidity: string,
    uidNext: number,
    file: string,
    log: Logger | undefined,
  ): Promise<Checkpoint> {
    const dropped = Object.keys(old.quarantined).length;
    log?.warn(
      {
        event: 'uidvalidity-changed',
        from: old.uidValidity,
        to: uidValidity,
        recheckBelow: uidNext,
        droppedPending: Object.keys(old.pending).length,
        droppedQuarantine: dropped,
      },
      `uidvalidity-changed: "${old.folder}" was recreated (UIDVALIDITY ${old.uidValidity} → ${uidValidity}); re-checking its messages against the delivered ledger`,
    );
    const cp: Checkpoint = {
      ...old,
      uidValidity,
      lastUid: 0,
      pending: {},
      copyIntent: null,
      quarantined: {},
      recheckBelow: uidNext,
    };
    await saveCheckpoint(file, cp);
    return cp;
  }

  private async selected(client: ImapFlow, folder: string) {
    const box = client.mailbox;
    if (box && box.path === folder) return box;
    return client.mailboxOpen(folder);
  }

  private async firstRun(
    client: ImapFlow,
    spec: Spec,
    identity: string,
    uidValidity: string,
    uidNext: number,
  ): Promise<Checkpoint> {
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

  /** Every quarantined message of every server (optionally one server, e.g. `imap/support`). */
  async listQuarantine(server?: string): Promise<QuarantineListing[]> {
    const all = (await listCheckpoints(this.options.stateDir)).flatMap(({ checkpoint }) =>
      quarantineListing(checkpoint),
    );
    return server ? all.filter((q) => q.server === server) : all;
  }

  /** Puts a quarantined message back into its server's retry set; the server id, or null when the key is unknown. */
  async release(key: string): Promise<string | null> {
    for (const { file, checkpoint } of await listCheckpoints(this.options.stateDir)) {
      if (!quarantineListing(checkpoint).some((q) => q.key === key)) continue;
      return this.withLock(file, async () => {
        const cp = await loadCheckpoint(file, checkpoint.identity, checkpoint.folder); // fresh, under the lock
        if (!cp || !releaseInCheckpoint(cp, key)) return null;
        await saveCheckpoint(file, cp);
        this.options.log?.info({ server: cp.server, key }, 'released from quarantine; retried on the next poll');
        return cp.server;
      });
    }
    return null;
  }
}
