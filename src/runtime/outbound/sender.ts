/**
 * The send stage of an SMTP loop: consumes the loop's outbox queue through the loop's pooled transport, up to
 * MAX_IN_FLIGHT messages at once. A 4xx reply or a network failure retries with backoff; a 5xx reply fails the
 * message with the server's reply. Once the server accepted a message its send slot is free again and the message
 * goes to the copy stage, which appends the sent copies that are ready together in one batch (MULTIAPPEND) on one
 * of a few connections per IMAP server and finishes each batch with one journal write; the outbox entry is removed only
 * after both the send and the copy.
 */
import type { Logger } from 'pino';
import { classifyMailError } from '../../adapters/classify.js';
import type { ConnectionSettings, MailError } from '../../adapters/connection.js';
import { sendSmtpCapturing, type SmtpTransport } from '../../adapters/smtp.js';
import type { ObservedState } from '../../plan/model.js';
import type { StoreHealth } from '../../store/ports.js';
import { backoffDelay } from '../loops/backoff.js';
import type { ImapPool } from './imap-pool.js';
import { composeMessage, mailFieldsOf, recipientsOf } from './message.js';
import type { Outbox, OutboxEntry } from './outbox.js';
import { appendSentCopies, copyTargetFor, type CopyTarget } from './sent-copy.js';

/** What the send stage reports about one message, per SMTP loop (loop counters and /metrics). */
export type SendOutcome = 'sent' | 'deferred' | 'failed';

/** What an SmtpLoop hands over once its transport is verified; `serve` returns when `signal` aborts. */
export interface OutboundConsumer {
  serve(context: {
    serverId: string;
    transport: SmtpTransport;
    settings: ConnectionSettings;
    signal: AbortSignal;
    log: Logger;
    /** Each send attempt's outcome, with why it failed (the loop decides whether that is about its server). */
    report: (outcome: SendOutcome, error?: MailError) => void;
  }): Promise<void>;
}

export const MAX_IN_FLIGHT = 20;
/**
 * Copy stage: at most this many connections per IMAP server append at once, each up to COPY_BATCH copies per command.
 */
export const COPY_CONNECTIONS = 2;
export const COPY_BATCH = 100;
const COPY_BATCH_BYTES = 8 * 1024 * 1024;
/** Longest sleep between looks at the queue when nothing wakes the sender. */
const IDLE_WAKE_MS = 30_000;

interface Progress {
  copyAttempts: number;
  /** Search the storage folder before appending (the copy may exist already). */
  searchFirst: boolean;
}

/** Sent copies waiting for one IMAP server, and how many connections are appending them now. */
interface CopyQueue {
  target: CopyTarget;
  waiting: { entry: OutboxEntry; log: Logger }[];
  workers: number;
}

export class OutboundSender implements OutboundConsumer {
  /** Ids being sent or waiting in / going through the copy stage: the scan leaves them alone. */
  private readonly busy = new Set<string>();
  private readonly progress = new WeakMap<OutboxEntry, Progress>();
  private readonly copies = new Map<string, CopyQueue>();

  constructor(
    private readonly deps: {
      outbox: Outbox;
      pool: ImapPool;
      state: () => ObservedState;
      /** The login user of an SMTP loop (applied server or the system server). */
      smtpUser: (serverId: string) => string | null;
      log: Logger;
      /** The store's health: a message is not sent while its progress could not be recorded. */
      health?: StoreHealth | undefined;
    },
  ) {}

  async serve({
    serverId,
    transport,
    settings,
    signal,
    log,
    report,
  }: Parameters<OutboundConsumer['serve']>[0]): Promise<void> {
    const inFlight = new Set<Promise<void>>();
    let wake: (() => void) | null = null;
    const kick = () => {
      const w = wake;
      wake = null;
      w?.();
    };
    const off = this.deps.outbox.onWork((server) => server === serverId && kick());
    signal.addEventListener('abort', kick, { once: true });
    try {
      while (!signal.aborted) {
        if (this.deps.health?.problem()) {
          log.info('the store is unavailable: sending waits until it answers');
          await this.deps.health.whenAvailable(signal);
          continue;
        }
        // a group: what other replicas accepted for this server since the last look
        await this.deps.outbox
          .refresh(serverId)
          .catch((err: unknown) => log.warn({ err: (err as Error).message }, 'could not claim outbound messages'));
        const now = Date.now();
        let nextDue = now + IDLE_WAKE_MS;
        for (const entry of this.deps.outbox.of(serverId)) {
          if (inFlight.size >= MAX_IN_FLIGHT) break;
          if (this.busy.has(entry.message.id) || entry.state === 'sending') continue;
          if (entry.nextAttemptAt > now) {
            nextDue = Math.min(nextDue, entry.nextAttemptAt);
            continue;
          }
          this.busy.add(entry.message.id);
          if (entry.state === 'sent') {
            // sent before (a copy that failed, or recovered after a restart): only the copy is left
            this.toCopy(entry, log).catch((err: unknown) => {
              this.busy.delete(entry.message.id);
              log.error({ id: entry.message.id, err: (err as Error).message }, 'outbound step failed');
            });
            continue;
          }
          const task: Promise<void> = this.send(entry, transport, settings, log, report)
            .then((sent) => {
              if (sent) return this.toCopy(entry, log);
              this.busy.delete(entry.message.id);
            })
            .catch((err: unknown) => {
              this.busy.delete(entry.message.id);
              log.error({ id: entry.message.id, err: (err as Error).message }, 'outbound step failed');
            })
            .finally(() => {
              inFlight.delete(task);
              kick();
            });
          inFlight.add(task);
        }
        if (signal.aborted) break;
        // synchronous from the scan to here: no kick can be missed
        await new Promise<void>((resolve) => {
          const timer = setTimeout(kick, Math.max(10, nextDue - Date.now()));
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    } finally {
      off();
      await Promise.allSettled([...inFlight]);
      this.deps.outbox.forget(serverId);
    }
  }

  /** true once the server accepted the message. */
  private async send(
    entry: OutboxEntry,
    transport: SmtpTransport,
    settings: ConnectionSettings,
    log: Logger,
    report: (outcome: SendOutcome, error?: MailError) => void,
  ): Promise<boolean> {
    const m = entry.message;
    entry.state = 'sending';
    entry.attempts += 1;
    try {
      const { info, source } = await sendSmtpCapturing(transport, settings, {
        ...mailFieldsOf(m),
        envelope: { from: m.from, to: recipientsOf(m) },
      });
      entry.source = source;
      this.deps.outbox.markSent(entry, info.response);
      report('sent');
      log.debug({ id: m.id, reply: info.response }, 'outbound message sent');
      return true;
    } catch (err) {
      const error = classifyMailError(err);
      entry.state = 'queued';
      entry.lastError = error.message;
      const permanent =
        error.responseCode !== undefined &&
        error.responseCode >= 500 &&
        error.failureClass !== 'auth' &&
        error.failureClass !== 'tls';
      if (permanent) {
        log.warn({ id: m.id, reply: error.message }, 'outbound message failed: the server refused it');
        report('failed', error);
        await this.deps.outbox.finish(entry, 'failed', { reason: error.message });
        return false;
      }
      entry.nextAttemptAt = Date.now() + backoffDelay(entry.attempts, error.retryAfterMs);
      this.deps.outbox.markDeferred(entry);
      report('deferred', error);
      log.warn(
        { id: m.id, attempt: entry.attempts, class: error.failureClass, retryInMs: entry.nextAttemptAt - Date.now() },
        `outbound message deferred: ${error.message}`,
      );
      return false;
    }
  }

  /** Hands a sent message to the copy stage (or finishes it when no IMAP server has its user). Keeps it busy. */
  private async toCopy(entry: OutboxEntry, log: Logger): Promise<void> {
    const user = this.deps.smtpUser(entry.message.server);
    const target = user ? copyTargetFor(user, this.deps.state()) : null;
    if (!target) {
      try {
        await this.deps.outbox.finish(entry, 'done', { storedIn: null });
      } finally {
        this.release([entry]);
      }
      return;
    }
    let queue = this.copies.get(target.id);
    if (!queue) this.copies.set(target.id, (queue = { target, waiting: [], workers: 0 }));
    queue.target = target;
    queue.waiting.push({ entry, log });
    if (queue.workers < COPY_CONNECTIONS) {
      queue.workers += 1;
      void this.copyWorker(queue);
    }
  }

  /** Appends the waiting copies of one IMAP server, a batch at a time, until none is left. */
  private async copyWorker(queue: CopyQueue): Promise<void> {
    // let the messages sent in this turn of the event loop join the first batch
    await new Promise<void>((resolve) => setImmediate(resolve));
    try {
      while (queue.waiting.length) {
        let bytes = 0;
        let n = 0;
        // a copy that failed before goes alone, so one bad message cannot hold back the others
        if (this.progress.get(queue.waiting[0]!.entry)?.copyAttempts) n = 1;
        else {
          while (
            n < queue.waiting.length &&
            n < COPY_BATCH &&
            (n === 0 || bytes + (queue.waiting[n]!.entry.source?.length ?? 0) <= COPY_BATCH_BYTES)
          ) {
            bytes += queue.waiting[n]!.entry.source?.length ?? 0;
            if (this.progress.get(queue.waiting[n]!.entry)?.copyAttempts) break;
            n += 1;
          }
        }
        await this.copyBatch(queue.target, queue.waiting.splice(0, Math.max(1, n)));
      }
    } finally {
      queue.workers -= 1;
    }
  }

  private async copyBatch(target: CopyTarget, batch: { entry: OutboxEntry; log: Logger }[]): Promise<void> {
    const folder = target.spec.storageFolder;
    const entries = batch.map((b) => b.entry);
    const progress = entries.map((entry) => {
      const p = this.progress.get(entry) ?? { copyAttempts: 0, searchFirst: entry.recovered };
      this.progress.set(entry, p);
      return p;
    });
    try {
      const items = await Promise.all(
        entries.map(async (entry, i) => ({
          source: (entry.source ??= await composeMessage(entry.message)),
          messageId: entry.message.messageId,
          searchFirst: progress[i]!.searchFirst,
        })),
      );
      const outcomes = await this.deps.pool.with(target.id, target.spec, (client) =>
        appendSentCopies(client, folder, items),
      );
      outcomes.forEach((outcome, i) => {
        if (outcome === 'already-there')
          batch[i]!.log.info(
            { id: entries[i]!.message.id, server: target.id },
            'sent copy already in the storage folder (after a restart); not appended again',
          );
      });
      await this.deps.outbox.finishMany(entries, 'done', { storedIn: { server: target.id, folder } });
    } catch (err) {
      // an APPEND may have reached the server before the failure: search before the next try
      const error = classifyMailError(err);
      entries.forEach((entry, i) => {
        const p = progress[i]!;
        p.searchFirst = true;
        p.copyAttempts += 1;
        entry.lastError = `sent copy to ${target.id} "${folder}": ${error.message}`;
        entry.nextAttemptAt = Date.now() + backoffDelay(p.copyAttempts, error.retryAfterMs);
      });
      batch[0]!.log.warn(
        {
          ids: entries.map((e) => e.message.id),
          server: target.id,
          attempt: progress[0]!.copyAttempts,
          class: error.failureClass,
        },
        `sent copy failed; retrying: ${error.message}`,
      );
    } finally {
      this.release(entries);
    }
  }

  /** The entries are no longer busy; the send loops look at the queue again. */
  private release(entries: OutboxEntry[]): void {
    const servers = new Set<string>();
    for (const entry of entries) {
      this.busy.delete(entry.message.id);
      servers.add(entry.message.server);
    }
    for (const server of servers) this.deps.outbox.notify(server);
  }
}
