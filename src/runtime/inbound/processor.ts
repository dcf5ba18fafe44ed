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
 * Everything the stage keeps goes through the store (store/ports.ts). Polls and quarantine releases of one mailbox
 * never run at the same time (one lock per server).
 */
import type { Mailbox } from '../../adapters/imap.js';
import type { Logger } from 'pino';
import { MailError } from '../../adapters/connection.js';
import type { SecretResolver } from '../../connect/secrets.js';
import type { FlowSpec, ImapServerSpec } from '../../config/model.js';
import type { ServerConfig } from '../../plan/model.js';
import { backoffDelay } from '../loops/backoff.js';
import type { InboundProcessor, PollStats } from '../loops/imap-loop.js';
import { deliverBatch, fetchBatch, type BatchContext, type FetchedBatch } from './batch.js';
import { carryOut, recordBatch, recoverCopy, removeOwnDuplicates, type UnconfirmedCopy } from './commit.js';
import type { QuarantineListing } from '../../api/quarantine.js';
import { FencedError, StoreUnavailableError } from '../../store/errors.js';
import {
  CHECKPOINT_FORMAT_VERSION,
  type Checkpoint,
  type InboundStore,
  type MailboxRef,
  type StoreHealth,
} from '../../store/ports.js';
import { DirectorySink, identityHash, sinkDirOf, sinkDirRefusal, type InboundSink } from './sinks/directory.js';
import { PostgresSink } from './sinks/postgres.js';
import { WebhookSink } from './sinks/webhook.js';
import { queueTableOf } from '../../config/sinks.js';

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
  /** Where the inbound stage keeps checkpoints, ledger and quarantine. */
  store: InboundStore;
  /** Whether that store answers: while it does not, nothing about mail changes (no sink write, COPY or \Seen). */
  health?: StoreHealth;
  /** The folder `deliver.directory` is relative to (the daemon's state folder). */
  stateDir: string;
  /** `--sink-root`: the folders a `deliver.directory` must lead into. */
  sinkRoots: readonly string[];
  log?: Logger;
  /** Resolves the webhook secret (confined like every secret); without it a webhook flow is a config error. */
  resolver?: SecretResolver;
  batchSize?: number;
  now?: () => number;
  /**
   * In a group of replicas: throws FencedError unless this replica may change anything about the server now (it holds
   * the lease, renewed in time); asked before every change on the mail server and every sink delivery.
   */
  guard?: (server: string) => void;
  /** Why a directory sink may not be used now (a group of replicas without a shared sink root), or null. */
  directoryRefusal?: () => string | null;
}

/** The sink of a flow is down: nothing was processed; try again after `retryAfterMs`. */
export class SinkUnavailableError extends MailError {
  constructor(message: string, retryAfterMs: number) {
    super('sink', message, { code: 'SinkUnavailable', retryAfterMs });
  }
}

/** The daemon's store cannot be reached: nothing of the mailbox changed; the loop polls again once it answers. */
export class StorePausedError extends MailError {
  constructor(message: string) {
    super('store', message, { code: 'StoreUnavailable', retryAfterMs: STORE_RETRY_MS });
  }
}

/** How soon a loop whose poll met an unavailable store polls again (that poll waits until the store answers). */
const STORE_RETRY_MS = 1000;

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
  /** Per server: consecutive sink-down rounds and when the next try is due. */
  private readonly down = new Map<string, { rounds: number; until: number; error: string }>();
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly now: () => number;
  private readonly batchSize: number;

  constructor(private readonly options: InboundMailProcessorOptions) {
    this.now = options.now ?? Date.now;
    this.batchSize = options.batchSize ?? BATCH_SIZE;
  }

  private async sink(flow: FlowSpec): Promise<InboundSink> {
    const table = queueTableOf(flow);
    if (table !== null) return new PostgresSink(table);
    const webhook = flow.deliver.webhook;
    if (webhook) {
      if (!this.options.resolver)
        throw new MailError('config', `email flow "${flow.name}": the webhook secret cannot be resolved here`);
      // resolved on every poll: a rotated secret is used from the next poll on; never kept beyond the sink object
      return new WebhookSink(webhook.url, await this.options.resolver.resolve(webhook.secret));
    }
    // on every poll: a link on the way may have been changed to lead elsewhere, a replica may have joined
    const refusal =
      this.options.directoryRefusal?.() ?? (await sinkDirRefusal(this.options.stateDir, flow, this.options.sinkRoots));
    if (refusal) throw new MailError('config', refusal);
    const dir = sinkDirOf(this.options.stateDir, flow);
    let sink = this.directories.get(dir);
    if (!sink) this.directories.set(dir, (sink = new DirectorySink(dir)));
    return sink;
  }

  /** Runs `fn` after every earlier holder of `server`'s lock. */
  private withLock<T>(server: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(server) ?? Promise.resolve();
    const run = previous.then(fn, fn);
    const settled = run.catch(() => undefined);
    this.locks.set(server, settled);
    void settled.then(() => this.locks.get(server) === settled && this.locks.delete(server));
    return run;
  }

  async poll(
    client: Mailbox,
    config: ServerConfig & { spec: ImapServerSpec },
    signal: AbortSignal,
  ): Promise<PollStats | void> {
    const { spec, flow } = config;
    if (!flow) {
      await client.status(spec.folder, { messages: true, unseen: true });
      return;
    }
    const mailbox = mailboxOf(spec);
    try {
      return await this.withLock(mailbox.server, () => this.pollFenced(client, spec, flow, mailbox, signal));
    } catch (err) {
      if (err instanceof StoreUnavailableError) throw new StorePausedError(err.message);
      if (err instanceof FencedError) throw new MailError('store', err.message, { code: 'Fenced' });
      throw err;
    }
  }

  /**
   * A poll whose writes may be fenced (a replica that lost the mailbox's lease): its copies that no commit confirmed
   * are then removed where they duplicate another copy, and nothing more is done.
   */
  private async pollFenced(
    client: Mailbox,
    spec: Spec,
    flow: FlowSpec,
    mailbox: MailboxRef,
    signal: AbortSignal,
  ): Promise<PollStats> {
    const unconfirmed: UnconfirmedCopy[] = [];
    try {
      return await this.pollLocked(client, spec, flow, mailbox, signal, unconfirmed);
    } catch (err) {
      if (err instanceof FencedError && unconfirmed.length) {
        const log = this.options.log?.child({ server: mailbox.server, stage: 'inbound' });
        await removeOwnDuplicates(client, spec, unconfirmed, log).catch((e: unknown) =>
          log?.error({ err: (e as Error).message }, 'could not look for duplicated copies'),
        );
      }
      throw err;
    }
  }

  /** Throws while the store is known to be unavailable: checked before anything that changes mail state. */
  private storeAnswers(): void {
    const problem = this.options.health?.problem();
    if (problem) throw new StoreUnavailableError(`the store is unavailable: ${problem.reason}`);
  }

  private async pollLocked(
    client: Mailbox,
    spec: Spec,
    flow: FlowSpec,
    mailbox: MailboxRef,
    signal: AbortSignal,
    unconfirmed: UnconfirmedCopy[],
  ): Promise<PollStats> {
    const stats: PollStats = { delivered: 0, quarantined: 0, duplicates: 0 };
    const guard = () => this.options.guard?.(mailbox.server);
    const serverId = `imap/${spec.shortName}`;
    const log = this.options.log?.child({ server: serverId, stage: 'inbound' });
    const paused = this.down.get(serverId);
    // the sink is down: the loop wakes up when the pause is over
    if (paused && this.now() < paused.until) return { ...stats, sinkPaused: true };
    // the store is away: this poll waits for it (the connection IDLEs meanwhile), so an outage costs one failed poll
    await this.options.health?.whenAvailable(signal);
    if (signal.aborted) return stats;
    guard();
    const sink = await this.sink(flow);
    const box = await this.selected(client, spec.folder);
    const uidValidity = String(box.uidValidity);
    const { store } = this.options;
    const loaded = await store.load(mailbox);
    let cp: Checkpoint = loaded ?? (await this.firstRun(client, spec, mailbox.identity, uidValidity, box.uidNext));
    if (!loaded) {
      await store.commit(mailbox, { checkpoint: cp });
      log?.info(
        { backfill: spec.backfill, pending: Object.keys(cp.pending).length, lastUid: cp.lastUid },
        'inbound checkpoint created',
      );
    }
    if (cp.uidValidity !== uidValidity) cp = await this.newEpoch(cp, uidValidity, box.uidNext, mailbox, log);
    if (cp.copyIntent) await recoverCopy(client, spec, cp, { inbound: store, mailbox }, log, guard, unconfirmed);

    const now = this.now();
    const checkpoint = cp;
    const searched = await client.search({ uidFrom: cp.lastUid + 1 });
    const fresh = searched.filter((u) => u > checkpoint.lastUid);
    const due = Object.entries(cp.pending)
      .filter(([, p]) => p.nextAttemptAt <= now)
      .map(([u]) => Number(u));
    const all = [...new Set([...due, ...fresh])].sort((a, b) => a - b);
    const maxFresh = fresh.reduce((a, b) => Math.max(a, b), cp.lastUid);
    log?.debug({ lastUid: cp.lastUid, fresh: fresh.length, due: due.length }, 'inbound poll');
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
        const ctx: BatchContext = {
          client,
          spec,
          flow,
          sink,
          cp,
          store,
          mailbox,
          uidValidity,
          now: this.now,
          log,
          sinkWasDown,
        };
        this.storeAnswers(); // no sink write for a batch that could not be recorded
        guard();
        const delivery = await alongside(carrying, deliverBatch(ctx, batch));
        // a probe must not move the watermark past the messages still waiting behind it
        const outcome = await recordBatch(ctx, delivery, sinkWasDown ? Math.min(maxFresh, batch.uids[0]!) : maxFresh);
        unconfirmed.length = 0; // the commit confirmed the copies carried out before it
        cp = ctx.cp;
        const intent = cp.copyIntent;
        carrying = ahead(
          intent
            ? carryOut(client, spec, cp, intent.uids, guard).then((made) => void unconfirmed.push(...made))
            : Promise.resolve(),
        );
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
      // a failed read must not leave a COPY running after the poll's lock is released
      await carrying.catch(() => undefined);
    }
    // the last batch's completion (each batch's is persisted with the next one's intent)
    if (i > 0) await store.commit(mailbox, { checkpoint: cp });
    unconfirmed.length = 0;
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
    mailbox: MailboxRef,
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
      `uidvalidity-changed: "${old.folder}" was recreated (UIDVALIDITY ${old.uidValidity} → ${uidValidity}); ` +
        're-checking its messages against the delivered ledger',
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
    await this.options.store.commit(mailbox, { checkpoint: cp });
    return cp;
  }

  private async selected(client: Mailbox, folder: string) {
    const box = client.selected;
    if (box && box.path === folder) return box;
    return client.select(folder);
  }

  private async firstRun(
    client: Mailbox,
    spec: Spec,
    identity: string,
    uidValidity: string,
    uidNext: number,
  ): Promise<Checkpoint> {
    let backlog: number[] = [];
    if (spec.backfill === 'unseen') backlog = await client.search({ unseen: true });
    else if (spec.backfill === 'all') backlog = await client.search({ all: true });
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
  listQuarantine(server?: string): Promise<QuarantineListing[]> {
    return this.options.store.listQuarantine(server);
  }

  /** Puts a quarantined message back into its server's retry set; the server id, or null when the key is unknown. */
  async release(key: string): Promise<string | null> {
    const found = (await this.options.store.listQuarantine()).find((q) => q.key === key);
    if (!found) return null;
    const server = await this.withLock(found.server, () => this.options.store.release(key));
    if (server) this.options.log?.info({ server, key }, 'released from quarantine; retried on the next poll');
    return server;
  }
}

/** The mailbox a server's inbound stage works, as the store knows it. */
export function mailboxOf(spec: ImapServerSpec): MailboxRef {
  return {
    server: `imap/${spec.shortName}`,
    type: spec.type,
    shortName: spec.shortName,
    identity: identityHash({ host: spec.host, user: spec.auth.user, folder: spec.folder }),
    folder: spec.folder,
  };
}
