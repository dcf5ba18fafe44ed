/**
 * The durable outbox in `<state>/outbox/`: accepted messages are written in immutable batch files before the API
 * answers, with group commit: the requests that arrive while the previous batch is being written share one file
 * `<batch>.batch` (temp file, fsync, rename, fsync of the folder; 0600), so a burst of N requests costs two fsyncs,
 * not 2N. `journal.jsonl` records what happened to each message (sent, failed, cancelled, done). Every record in a
 * batch is length-framed and ends with an END marker; a file that does not parse (e.g. cut short) is moved to
 * `quarantine/`, never sent. A batch file is removed only once the journal says every message in it is finished, so
 * a crash at any point resends (same Message-ID) rather than loses. Single-message `<id>.msg` files (the earlier
 * layout) are still read.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { ensurePrivateDir, writeFileAtomic } from '../../adapters/durable-files.js';
import { Journal } from './journal.js';
import type { OutboxSummary } from '../daemon/status.js';
import type { OutboundMessage, OutboundRequest } from './message.js';

export const OUTBOX_FORMAT_VERSION = 1;
const MAGIC = 'MAILCTL-OUTBOX';
const END = '\nEND\n';
/** Journal events that finish a message, and those that only record progress (a later final one wins). */
type FinalEvent = 'done' | 'failed' | 'cancelled';
const FINAL: ReadonlySet<string> = new Set<FinalEvent>(['done', 'failed', 'cancelled']);
const PROGRESS: ReadonlySet<string> = new Set(['deferred', 'sent']);
const isFinal = (r: JournalRecord | undefined): r is JournalRecord & { event: FinalEvent } =>
  r !== undefined && FINAL.has(r.event);
/** Finished records older than this are dropped when the journal is compacted at start. */
const KEEP_FINISHED_MS = 7 * 24 * 3600_000;

export type OutboundState = 'queued' | 'sending' | 'sent' | 'failed' | 'cancelled';

export interface JournalRecord {
  id: string;
  /** `deferred`: a send attempt failed temporarily (its count and next try survive a restart); the others as named. */
  event: 'deferred' | 'sent' | 'done' | 'failed' | 'cancelled';
  at: string;
  messageId: string;
  server: string;
  reply?: string;
  reason?: string;
  /** deferred: the attempts so far and when the next one is due (ISO time). */
  attempts?: number;
  nextAttemptAt?: string;
  /** Where the sent copy went (`imap/<shortName>` and folder), or null when no IMAP server has the same user. */
  storedIn?: { server: string; folder: string } | null;
}

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

export interface OutboundView {
  id: string;
  messageId: string;
  server: string;
  from: string;
  to: string[];
  subject: string;
  createdAt: string;
  state: OutboundState;
  attempts?: number;
  nextAttemptAt?: string | null;
  lastError?: string | null;
  reply?: string | null;
  reason?: string;
  copy?: 'pending' | 'stored' | 'none';
  storedIn?: { server: string; folder: string } | null;
  finishedAt?: string;
}

export function frame(message: OutboundMessage): string {
  const json = JSON.stringify({ formatVersion: OUTBOX_FORMAT_VERSION, message });
  return `${MAGIC} ${OUTBOX_FORMAT_VERSION} ${Buffer.byteLength(json)}\n${json}${END}`;
}

/** Parses a `.msg` file (one framed record); throws when it is incomplete or not ours. */
export function unframe(text: string): OutboundMessage {
  const all = unframeAll(Buffer.from(text));
  if (all.length !== 1) throw new Error(`expected one record, found ${all.length}`);
  return all[0]!;
}

/** Parses a batch file (framed records back to back, at least one); throws when any is incomplete or not ours. */
export function unframeAll(data: Buffer): OutboundMessage[] {
  const messages: OutboundMessage[] = [];
  const end = Buffer.from(END);
  let at = 0;
  do {
    const nl = data.indexOf(0x0a, at);
    const m = /^MAILCTL-OUTBOX (\d+) (\d+)$/.exec(data.subarray(at, nl < 0 ? data.length : nl).toString());
    if (!m) throw new Error(messages.length ? `record ${messages.length + 1}: no outbox header` : 'no outbox header');
    if (Number(m[1]) !== OUTBOX_FORMAT_VERSION) throw new Error(`unsupported formatVersion ${m[1]}`);
    const start = nl + 1;
    const length = Number(m[2]);
    if (
      start + length + end.length > data.length ||
      !data.subarray(start + length, start + length + end.length).equals(end)
    )
      throw new Error('truncated (no END marker)');
    const parsed = JSON.parse(data.subarray(start, start + length).toString()) as {
      formatVersion: number;
      message: OutboundMessage;
    };
    if (parsed.formatVersion !== OUTBOX_FORMAT_VERSION || !parsed.message?.id) throw new Error('not an outbox record');
    messages.push(parsed.message);
    at = start + length + end.length;
  } while (at < data.length);
  return messages;
}

/** Most messages in one batch file (a larger burst is written as several files, one after the other). */
const MAX_BATCH = 500;

/** A file of the outbox and the ids in it that are not finished yet; it is removed when none is left. */
interface OutboxFile {
  file: string;
  open: Set<string>;
}

export class Outbox {
  readonly dir: string;
  private readonly entries = new Map<string, OutboxEntry>();
  private readonly finished = new Map<
    string,
    JournalRecord & {
      event: FinalEvent;
      message: Pick<OutboundMessage, 'from' | 'to' | 'subject' | 'createdAt'> | null;
    }
  >();
  private readonly journal: Journal<JournalRecord>;
  /** The file each queued message is in. */
  private readonly fileOf = new Map<string, OutboxFile>();
  /** Accepted messages waiting for the next batch file. */
  private pending: { message: OutboundMessage; done: () => void; fail: (err: unknown) => void }[] = [];
  private writing: Promise<void> | null = null;
  private batchSeq = 0;
  /** Counters (tests and benchmark): batch files written, messages in them. */
  readonly stats = { batches: 0, accepted: 0 };
  private readonly listeners = new Set<(server: string) => void>();
  quarantined = 0;

  constructor(
    stateDir: string,
    private readonly log?: Logger,
  ) {
    this.dir = path.join(stateDir, 'outbox');
    this.journal = new Journal(path.join(this.dir, 'journal.jsonl'));
  }

  /** Loads the outbox: quarantines broken files, drops finished ones, compacts the journal. */
  async load(now = Date.now()): Promise<void> {
    await ensurePrivateDir(this.dir);
    const records = new Map<string, JournalRecord>();
    const text = await readFile(this.journal.file, 'utf8').catch(() => '');
    for (const line of text.split('\n')) {
      if (!line.trim()) continue;
      try {
        const r = JSON.parse(line) as JournalRecord;
        if (r.id && !(PROGRESS.has(r.event) && isFinal(records.get(r.id)))) records.set(r.id, r);
      } catch {
        /* a torn last line after a crash */
      }
    }
    /** Ids in files that stay: their journal records must survive compaction (finished ones are not resent). */
    const live = new Set<string>();
    for (const name of (await readdir(this.dir)).sort()) {
      const file = path.join(this.dir, name);
      if (name.startsWith('.') && name.endsWith('.tmp')) {
        await rm(file, { force: true }); // never acknowledged
        continue;
      }
      if (!name.endsWith('.msg') && !name.endsWith('.batch')) continue;
      let messages: OutboundMessage[];
      try {
        messages = unframeAll(await readFile(file));
        if (name.endsWith('.msg') && (messages.length !== 1 || `${messages[0]!.id}.msg` !== name))
          throw new Error('file name and id differ');
        if (messages.some((m) => this.entries.has(m.id) || this.fileOf.has(m.id)))
          throw new Error('an id that another outbox file has too');
      } catch (err) {
        await this.quarantine(file, (err as Error).message);
        continue;
      }
      const entry: OutboxFile = { file, open: new Set() };
      for (const message of messages) {
        const record = records.get(message.id);
        if (isFinal(record)) continue;
        entry.open.add(message.id);
        this.fileOf.set(message.id, entry);
        this.entries.set(message.id, {
          message,
          state: record?.event === 'sent' ? 'sent' : 'queued',
          attempts: record?.attempts ?? 0,
          nextAttemptAt: record?.nextAttemptAt ? Date.parse(record.nextAttemptAt) : 0,
          lastError: record?.event === 'deferred' ? (record.reason ?? null) : null,
          reply: record?.reply ?? null,
          recovered: true,
        });
      }
      if (entry.open.size === 0) await unlink(file).catch(() => undefined);
      else for (const m of messages) live.add(m.id);
    }
    const keep = [...records.values()].filter((r) => live.has(r.id) || now - Date.parse(r.at) < KEEP_FINISHED_MS);
    for (const r of keep) if (isFinal(r)) this.finished.set(r.id, { ...r, message: null });
    await writeFileAtomic(this.journal.file, keep.map((r) => `${JSON.stringify(r)}\n`).join(''));
    await this.journal.open();
  }

  private async quarantine(file: string, why: string): Promise<void> {
    const dir = path.join(this.dir, 'quarantine');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await rename(file, path.join(dir, `${path.basename(file)}.${Date.now()}`));
    this.quarantined += 1;
    this.log?.error(
      { file: path.basename(file), reason: why },
      'outbox file is damaged: moved to quarantine/, not sent',
    );
  }

  /**
   * Writes the message durably, then queues it. Resolves only when it is on disk: requests that arrive while a batch
   * is being written wait for the next one and share its file and fsyncs (group commit).
   */
  async accept(
    request: OutboundRequest & { from: string; server: string; inReplyToMessageId?: string },
  ): Promise<OutboundMessage> {
    const id = randomUUID();
    const domain = request.from.split('@')[1] ?? 'mailctl.invalid';
    const message: OutboundMessage = {
      ...request,
      id,
      messageId: `<${id}@${domain}>`,
      createdAt: new Date().toISOString(),
    };
    await new Promise<void>((done, fail) => {
      this.pending.push({ message, done, fail });
      this.writing ??= this.writeBatches();
    });
    return message;
  }

  private async writeBatches(): Promise<void> {
    // let the requests of this turn of the event loop join the first batch
    await new Promise<void>((resolve) => setImmediate(resolve));
    while (this.pending.length) {
      const batch = this.pending.splice(0, MAX_BATCH);
      try {
        const file = path.join(
          this.dir,
          `${Date.now().toString(36)}-${process.pid.toString(36)}-${(this.batchSeq++).toString(36)}.batch`,
        );
        await writeFileAtomic(file, batch.map((b) => frame(b.message)).join(''));
        const entry: OutboxFile = { file, open: new Set(batch.map((b) => b.message.id)) };
        const servers = new Set<string>();
        for (const { message } of batch) {
          this.fileOf.set(message.id, entry);
          this.entries.set(message.id, {
            message,
            state: 'queued',
            attempts: 0,
            nextAttemptAt: 0,
            lastError: null,
            reply: null,
            recovered: false,
          });
          servers.add(message.server);
        }
        this.stats.batches += 1;
        this.stats.accepted += batch.length;
        batch.forEach((b) => b.done());
        for (const server of servers) this.notify(server);
      } catch (err) {
        batch.forEach((b) => b.fail(err));
      }
    }
    this.writing = null;
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
    entry.reply = reply;
    void this.journal.append(this.record(entry, 'sent', { reply })).catch(() => undefined);
  }

  /** Records a temporary failure, so the attempt count and backoff survive a restart (not awaited, like markSent). */
  markDeferred(entry: OutboxEntry): void {
    const extra = {
      attempts: entry.attempts,
      nextAttemptAt: new Date(entry.nextAttemptAt).toISOString(),
      ...(entry.lastError !== null && { reason: entry.lastError }),
    };
    void this.journal.append(this.record(entry, 'deferred', extra)).catch(() => undefined);
  }

  /** Finishes a message: journal first (durably), then its file goes once nothing in it is left. */
  async finish(entry: OutboxEntry, event: FinalEvent, extra: Partial<JournalRecord> = {}): Promise<void> {
    await this.finishMany([entry], event, extra);
  }

  /** Finishes several messages with one journal write and fsync. */
  async finishMany(entries: OutboxEntry[], event: FinalEvent, extra: Partial<JournalRecord> = {}): Promise<void> {
    const records = entries.map((entry) => ({
      ...this.record(entry, event, { ...(entry.reply !== null && { reply: entry.reply }), ...extra }),
      event,
    }));
    await this.journal.appendMany(records);
    const emptied = new Set<OutboxFile>();
    entries.forEach((entry, i) => {
      const id = entry.message.id;
      this.entries.delete(id);
      const { from, to, subject, createdAt } = entry.message;
      this.finished.set(id, { ...records[i]!, message: { from, to, subject, createdAt } });
      const file = this.fileOf.get(id);
      this.fileOf.delete(id);
      if (file?.open.delete(id) && file.open.size === 0) emptied.add(file);
    });
    await Promise.all([...emptied].map((f) => unlink(f.file).catch(() => undefined)));
  }

  private record(entry: OutboxEntry, event: JournalRecord['event'], extra: Partial<JournalRecord>): JournalRecord {
    return {
      id: entry.message.id,
      event,
      at: new Date().toISOString(),
      messageId: entry.message.messageId,
      server: entry.message.server,
      ...extra,
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
    const state: OutboundState = f.event === 'done' ? 'sent' : f.event;
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
    await this.writing;
    await this.journal.close();
  }
}
