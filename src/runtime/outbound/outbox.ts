/**
 * The outbox as the send stage sees it: every message not finished yet, in memory, with its progress; everything that
 * must survive a crash goes to the store first (store/ports.ts `OutboxStore`). Accepting is durable before the API
 * answers, with group commit: the requests that arrive while the previous write is running share the next one. A
 * crash at any point resends (same Message-ID) rather than loses. It holds at most `max` waiting messages (more are
 * refused with 503 and Retry-After, whatever the SMTP servers do) and the newest OUTBOX_FINISHED_KEPT finished ones;
 * when it drains after a large backlog, `drained` hears of it (the daemon gives the garbage back, loops/memory.ts).
 */
import { randomUUID } from 'node:crypto';
import { capText } from '../../adapters/text.js';
import type { Logger } from 'pino';
import type { OutboundState, OutboundView } from '../../api/outbound.js';
import type { OutboxSummary } from '../../api/status.js';
import { OUTBOX_FINISHED_KEPT, type FinalEvent, type OutboxEvent, type OutboxStore } from '../../store/ports.js';
import { HttpError } from '../daemon/http.js';
import type { BurstObserver } from '../loops/memory.js';
import { GroupCommit } from './group-commit.js';
import type { OutboundMessage, OutboundRequest } from './message.js';

/** `--outbox-max`: waiting messages the outbox holds at most. */
export const OUTBOX_MAX = 100_000;
/** What a refusal of a full outbox asks the client to wait (seconds). */
export const OUTBOX_FULL_RETRY_AFTER_S = 60;

/** Finished messages, for `outbox` views; the message fields only when it finished in this process. */
type Finished = OutboxEvent & { message: Pick<OutboundMessage, 'from' | 'to' | 'subject' | 'createdAt'> | null };

/** A message still in the outbox, with its progress (in memory; the journal holds what must survive a crash). */
export interface OutboxEntry {
  message: OutboundMessage;
  state: 'queued' | 'sending' | 'sent';
  attempts: number;
  nextAttemptAt: number;
  lastError: string | null;
  reply: string | null;
  /** Loaded from disk at start: it may have been sent or copied before a crash. */
  recovered: boolean;
  /** The MIME source, kept between sending and the sent copy. */
  source?: Buffer;
}

export class Outbox {
  private readonly entries = new Map<string, OutboxEntry>();
  private readonly finished = new Map<string, Finished>();
  private readonly accepting: GroupCommit<OutboundMessage>;
  private readonly recording: GroupCommit<OutboxEvent>;
  /** Counters (tests and benchmark): store writes of accepted messages, messages in them. */
  readonly stats = { batches: 0, accepted: 0 };
  private readonly listeners = new Set<(server: string) => void>();
  /** Stored messages that could not be read back at load (set aside, never sent). */
  quarantined = 0;
  /** Accepted messages whose store write is still running (they count against `max` already). */
  private storing = 0;
  /** Messages finished since the outbox was last empty. */
  private finishedSinceEmpty = 0;
  /**
   * A store shared by a group: messages are accepted by any replica and claimed from the store by the replica that
   * owns their server (`refresh`); per server claimed, the store's position of the last message claimed.
   */
  private readonly claimedUpTo = new Map<string, number>();

  constructor(
    private readonly store: OutboxStore,
    private readonly log?: Logger,
    private readonly max = OUTBOX_MAX,
    /** Told when work starts (`busy`) and how many messages went through when the outbox is empty again (`idle`). */
    private readonly drained?: BurstObserver,
  ) {
    this.accepting = new GroupCommit(async (messages) => {
      await this.store.accept(messages);
      this.stats.batches += 1;
      this.stats.accepted += messages.length;
    });
    this.recording = new GroupCommit((events) => this.store.record(events));
  }

  /** Loads what the store holds: unfinished messages with their progress, and recently finished ones. */
  async load(now = Date.now()): Promise<void> {
    const snapshot = await this.store.load(now);
    for (const { item, reason } of snapshot.damaged)
      this.log?.error({ file: item, reason }, 'outbox file is damaged: moved to quarantine/, not sent');
    this.quarantined = snapshot.damaged.length;
    // in a group the open messages are claimed by the owners of their servers instead
    if (!this.store.claim) for (const { message, last } of snapshot.open) this.adopt(message, last);
    for (const event of snapshot.finished) this.keepFinished({ ...event, message: null });
  }

  private adopt(message: OutboundMessage, last: OutboxEvent | null): void {
    this.entries.set(message.id, {
      message,
      state: last?.event === 'sent' ? 'sent' : 'queued',
      attempts: last?.attempts ?? 0,
      nextAttemptAt: last?.nextAttemptAt ? Date.parse(last.nextAttemptAt) : 0,
      lastError: last?.event === 'deferred' ? (last.reason ?? null) : null,
      reply: last?.reply ?? null,
      recovered: true,
    });
  }

  /**
   * A group: claims the messages of `server` (which this replica owns now) that any replica accepted since the last
   * claim. Nothing for a store one daemon owns (its messages are all in memory already).
   */
  async refresh(server: string): Promise<void> {
    if (!this.store.claim) return;
    const { open, lastSeq } = await this.store.claim(server, this.claimedUpTo.get(server) ?? 0);
    this.claimedUpTo.set(server, lastSeq);
    for (const { message, last } of open) if (!this.entries.has(message.id)) this.adopt(message, last);
  }

  /** A group: `server` moved to another replica, which claims its messages now; this one forgets them. */
  forget(server: string): void {
    if (!this.store.claim) return;
    this.claimedUpTo.delete(server);
    for (const [id, e] of this.entries)
      if (e.message.server === server && e.state !== 'sending') this.entries.delete(id);
  }

  /** Remembers a finished message for views, forgetting the oldest beyond OUTBOX_FINISHED_KEPT. */
  private keepFinished(finished: Finished): void {
    this.finished.delete(finished.id);
    this.finished.set(finished.id, finished);
    if (this.finished.size > OUTBOX_FINISHED_KEPT) this.finished.delete(this.finished.keys().next().value!);
  }

  /**
   * Stores the message durably, then queues it. Resolves only when it is stored: requests that arrive while a write is
   * running wait for the next one and share it (group commit). A full outbox refuses it with 503 and Retry-After.
   */
  async accept(
    request: OutboundRequest & { from: string; server: string; inReplyToMessageId?: string },
  ): Promise<OutboundMessage> {
    if (this.entries.size + this.storing >= this.max)
      throw new HttpError(
        503,
        `the outbox is full: ${this.max} messages are waiting to be sent (--outbox-max); try again later`,
        {},
        { 'retry-after': String(OUTBOX_FULL_RETRY_AFTER_S) },
      );
    this.drained?.busy();
    const id = randomUUID();
    const domain = request.from.split('@')[1] ?? 'mailctl.invalid';
    const message: OutboundMessage = {
      ...request,
      id,
      messageId: `<${id}@${domain}>`,
      createdAt: new Date().toISOString(),
    };
    this.storing += 1;
    try {
      await this.accepting.add(message);
    } finally {
      this.storing -= 1;
    }
    // a group: the owning replica claims it from the store (woken by NOTIFY, or this notify when it is us)
    if (this.store.claim) {
      this.notify(message.server);
      return message;
    }
    this.entries.set(message.id, {
      message,
      state: 'queued',
      attempts: 0,
      nextAttemptAt: 0,
      lastError: null,
      reply: null,
      recovered: false,
    });
    this.notify(message.server);
    return message;
  }

  onWork(listener: (server: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  notify(server: string): void {
    for (const l of this.listeners) l(server);
  }

  get(id: string): OutboxEntry | undefined {
    return this.entries.get(id);
  }

  /** Entries of one server, oldest first. */
  *of(server: string): Iterable<OutboxEntry> {
    for (const e of this.entries.values()) if (e.message.server === server) yield e;
  }

  size(): number {
    return this.entries.size;
  }

  /** Counts by state, for `status` and /metrics. */
  summary(): OutboxSummary {
    const counts = { queued: 0, sending: 0, copying: 0, damagedFiles: this.quarantined };
    for (const e of this.entries.values()) counts[e.state === 'sent' ? 'copying' : e.state] += 1;
    return counts;
  }

  /** Records that the server accepted it (not awaited: a crash before the record only means a resend). */
  markSent(entry: OutboxEntry, reply: string): void {
    entry.state = 'sent';
    entry.reply = capText(reply);
    void this.recording.add(this.event(entry, 'sent', { reply: entry.reply })).catch(() => undefined);
  }

  /** Records a temporary failure, so the attempt count and backoff survive a restart (not awaited, like markSent). */
  markDeferred(entry: OutboxEntry): void {
    const extra = {
      attempts: entry.attempts,
      nextAttemptAt: new Date(entry.nextAttemptAt).toISOString(),
      ...(entry.lastError !== null && { reason: entry.lastError }),
    };
    void this.recording.add(this.event(entry, 'deferred', extra)).catch(() => undefined);
  }

  /** Finishes a message: recorded durably first, then it leaves the queue. */
  async finish(entry: OutboxEntry, event: FinalEvent, extra: Partial<OutboxEvent> = {}): Promise<void> {
    await this.finishMany([entry], event, extra);
  }

  /** Finishes several messages with one store write. */
  async finishMany(entries: OutboxEntry[], event: FinalEvent, extra: Partial<OutboxEvent> = {}): Promise<void> {
    const events = entries.map((entry) =>
      this.event(entry, event, { ...(entry.reply !== null && { reply: entry.reply }), ...extra }),
    );
    await this.recording.add(...events);
    entries.forEach((entry, i) => {
      const id = entry.message.id;
      this.entries.delete(id);
      const { from, to, subject, createdAt } = entry.message;
      this.keepFinished({ ...events[i]!, message: { from, to, subject, createdAt } });
    });
    this.finishedSinceEmpty += entries.length;
    if (this.entries.size === 0) {
      this.drained?.idle(this.finishedSinceEmpty);
      this.finishedSinceEmpty = 0;
    }
  }

  private event(entry: OutboxEntry, event: OutboxEvent['event'], extra: Partial<OutboxEvent>): OutboxEvent {
    return {
      id: entry.message.id,
      event,
      at: new Date().toISOString(),
      messageId: entry.message.messageId,
      server: entry.message.server,
      ...extra,
      // a server's words, stored: capped
      ...(extra.reply !== undefined && { reply: capText(extra.reply) }),
      ...(extra.reason !== undefined && { reason: capText(extra.reason) }),
    };
  }

  /** The Message-ID of an outbound id, queued or finished. */
  messageIdOf(id: string): string | null {
    return this.entries.get(id)?.message.messageId ?? this.finished.get(id)?.messageId ?? null;
  }

  view(id: string): OutboundView | null {
    const e = this.entries.get(id);
    if (e) return this.viewOf(e);
    const f = this.finished.get(id);
    if (!f) return null;
    const state: OutboundState = f.event === 'done' ? 'sent' : (f.event as OutboundState);
    return {
      id,
      messageId: f.messageId,
      server: f.server,
      from: f.message?.from ?? '',
      to: f.message?.to ?? [],
      subject: f.message?.subject ?? '',
      createdAt: f.message?.createdAt ?? '',
      state,
      finishedAt: f.at,
      ...(f.reply !== undefined && { reply: f.reply }),
      ...(f.reason !== undefined && { reason: f.reason }),
      ...(f.event === 'done' && { copy: f.storedIn ? 'stored' : 'none', storedIn: f.storedIn ?? null }),
    };
  }

  private viewOf(e: OutboxEntry): OutboundView {
    const m = e.message;
    return {
      id: m.id,
      messageId: m.messageId,
      server: m.server,
      from: m.from,
      to: m.to,
      subject: m.subject,
      createdAt: m.createdAt,
      state: e.state,
      attempts: e.attempts,
      nextAttemptAt: e.nextAttemptAt ? new Date(e.nextAttemptAt).toISOString() : null,
      lastError: e.lastError,
      reply: e.reply,
      ...(e.state === 'sent' && { copy: 'pending' as const }),
    };
  }

  /** The queued messages, oldest first (the first `limit` only, when given). */
  list(limit = Infinity): OutboundView[] {
    const views: OutboundView[] = [];
    for (const e of this.entries.values()) {
      if (views.length >= limit) break;
      views.push(this.viewOf(e));
    }
    return views;
  }

  async close(): Promise<void> {
    await this.accepting.drain();
    await this.recording.drain();
    await this.store.close();
  }
}
