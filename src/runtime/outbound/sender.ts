/**
 * The send stage of an SMTP loop: consumes the loop's outbox queue through the loop's pooled transport, up to
 * MAX_IN_FLIGHT messages at once. A 4xx reply or a network failure retries with backoff; a 5xx reply fails the
 * message with the server's reply. After the server accepted it, the sent copy is appended; the outbox entry is
 * removed only after both.
 */
import type { Logger } from 'pino';
import { classifyMailError } from '../../adapters/classify.js';
import type { ConnectionSettings } from '../../adapters/connection.js';
import { sendSmtp, type SmtpTransport } from '../../adapters/smtp.js';
import type { ObservedState } from '../../plan/model.js';
import { backoffDelay } from '../backoff.js';
import type { ImapPool } from './imap-pool.js';
import { composeMessage, recipientsOf } from './message.js';
import type { Outbox, OutboxEntry } from './outbox.js';
import { appendSentCopy, copyTargetFor } from './sent-copy.js';

/** What an SmtpLoop hands over once its transport is verified; `serve` returns when `signal` aborts. */
export interface OutboundConsumer {
  serve(context: { serverId: string; transport: SmtpTransport; settings: ConnectionSettings; signal: AbortSignal; log: Logger }): Promise<void>;
}

export const MAX_IN_FLIGHT = 20;
/** Longest sleep between looks at the queue when nothing wakes the sender. */
const IDLE_WAKE_MS = 30_000;

interface Progress {
  copyAttempts: number;
  /** Search the storage folder before appending (the copy may exist already). */
  searchFirst: boolean;
}

export class OutboundSender implements OutboundConsumer {
  private readonly busy = new Set<string>();
  private readonly progress = new WeakMap<OutboxEntry, Progress>();

  constructor(
    private readonly deps: {
      outbox: Outbox;
      pool: ImapPool;
      state: () => ObservedState;
      /** The login user of an SMTP loop (applied server or the system server). */
      smtpUser: (serverId: string) => string | null;
      log: Logger;
    },
  ) {}

  async serve({ serverId, transport, settings, signal, log }: Parameters<OutboundConsumer['serve']>[0]): Promise<void> {
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
          const task: Promise<void> = this.process(entry, transport, settings, log)
            .catch((err: unknown) => log.error({ id: entry.message.id, err: (err as Error).message }, 'outbound step failed'))
            .finally(() => {
              this.busy.delete(entry.message.id);
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
    }
  }

  private async process(entry: OutboxEntry, transport: SmtpTransport, settings: ConnectionSettings, log: Logger): Promise<void> {
    if (entry.state === 'queued' && !(await this.send(entry, transport, settings, log))) return;
    await this.copy(entry, log);
  }

  /** true once the server accepted the message. */
  private async send(entry: OutboxEntry, transport: SmtpTransport, settings: ConnectionSettings, log: Logger): Promise<boolean> {
    const m = entry.message;
    entry.state = 'sending';
    entry.attempts += 1;
    try {
      entry.source ??= await composeMessage(m);
      const info = await sendSmtp(transport, settings, { envelope: { from: m.from, to: recipientsOf(m) }, raw: entry.source });
      this.deps.outbox.markSent(entry, info.response);
      log.debug({ id: m.id, reply: info.response }, 'outbound message sent');
      return true;
    } catch (err) {
      const error = classifyMailError(err);
      entry.state = 'queued';
      entry.lastError = error.message;
      const permanent = error.responseCode !== undefined && error.responseCode >= 500 && error.failureClass !== 'auth' && error.failureClass !== 'tls';
      if (permanent) {
        log.warn({ id: m.id, reply: error.message }, 'outbound message failed: the server refused it');
        await this.deps.outbox.finish(entry, 'failed', { reason: error.message });
        return false;
      }
      entry.nextAttemptAt = Date.now() + backoffDelay(entry.attempts, error.retryAfterMs);
      log.warn({ id: m.id, attempt: entry.attempts, class: error.failureClass, retryInMs: entry.nextAttemptAt - Date.now() }, `outbound message deferred: ${error.message}`);
      return false;
    }
  }

  private async copy(entry: OutboxEntry, log: Logger): Promise<void> {
    const m = entry.message;
    const user = this.deps.smtpUser(m.server);
    const target = user ? copyTargetFor(user, this.deps.state()) : null;
    if (!target) {
      await this.deps.outbox.finish(entry, 'done', { storedIn: null });
      return;
    }
    const progress = this.progress.get(entry) ?? { copyAttempts: 0, searchFirst: entry.recovered };
    this.progress.set(entry, progress);
    const folder = target.spec.storageFolder;
    try {
      entry.source ??= await composeMessage(m);
      const source = entry.source;
      const outcome = await this.deps.pool.with(target.id, target.spec, (client) => appendSentCopy(client, folder, source, m.messageId, progress.searchFirst));
      if (outcome === 'already-there') log.info({ id: m.id, server: target.id }, 'sent copy already in the storage folder (after a restart); not appended again');
      await this.deps.outbox.finish(entry, 'done', { storedIn: { server: target.id, folder } });
    } catch (err) {
      // the APPEND may have reached the server before the failure: search before the next try
      progress.searchFirst = true;
      progress.copyAttempts += 1;
      const error = classifyMailError(err);
      entry.lastError = `sent copy to ${target.id} "${folder}": ${error.message}`;
      entry.nextAttemptAt = Date.now() + backoffDelay(progress.copyAttempts, error.retryAfterMs);
      log.warn({ id: m.id, server: target.id, attempt: progress.copyAttempts, class: error.failureClass }, `sent copy failed; retrying: ${error.message}`);
    }
  }
}
