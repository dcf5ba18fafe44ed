/**
 * The durable outbox in `<state>/outbox/`: one immutable `<id>.msg` per accepted message, written before the API
 * answers (temp file, fsync, rename, fsync of the folder; 0600), and `journal.jsonl` for what happened to it (sent,
 * failed, cancelled, done). A `.msg` is length-framed and ends with an END marker; one that does not parse (e.g. cut
 * short) is moved to `quarantine/`, never sent. The `.msg` is removed only once the journal says the message is
 * finished, so a crash at any point resends (same Message-ID) rather than loses.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { ensurePrivateDir, writeFileAtomic } from '../../adapters/durable-files.js';
import { GroupSync, Journal } from './journal.js';
import type { OutboundMessage, OutboundRequest } from './message.js';

export const OUTBOX_FORMAT_VERSION = 1;
const MAGIC = 'MAILCTL-OUTBOX';
const END = '\nEND\n';
/** Finished records older than this are dropped when the journal is compacted at start. */
const KEEP_FINISHED_MS = 7 * 24 * 3600_000;

export type OutboundState = 'queued' | 'sending' | 'sent' | 'failed' | 'cancelled';

export interface JournalRecord {
  id: string;
  event: 'sent' | 'done' | 'failed' | 'cancelled';
  at: string;
  messageId: string;
  server: string;
  reply?: string;
  reason?: string;
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

/** Parses a `.msg` file; throws when it is incomplete or not ours. */
export function unframe(text: string): OutboundMessage {
  const nl = text.indexOf('\n');
  const m = /^MAILCTL-OUTBOX (\d+) (\d+)$/.exec(nl < 0 ? text : text.slice(0, nl));
  if (!m) throw new Error('no outbox header');
  if (Number(m[1]) !== OUTBOX_FORMAT_VERSION) throw new Error(`unsupported formatVersion ${m[1]}`);
  const body = Buffer.from(text.slice(nl + 1));
  const length = Number(m[2]);
  if (body.length !== length + Buffer.byteLength(END) || body.subarray(length).toString() !== END) throw new Error('truncated (no END marker)');
  const parsed = JSON.parse(body.subarray(0, length).toString()) as { formatVersion: number; message: OutboundMessage };
  if (parsed.formatVersion !== OUTBOX_FORMAT_VERSION || !parsed.message?.id) throw new Error('not an outbox record');
  return parsed.message;
}

export class Outbox {
  readonly dir: string;
  private readonly entries = new Map<string, OutboxEntry>();
  private readonly finished = new Map<string, JournalRecord & { message: Pick<OutboundMessage, 'from' | 'to' | 'subject' | 'createdAt'> | null }>();
  private readonly journal: Journal<JournalRecord>;
  private readonly dirSync: GroupSync;
  private readonly listeners = new Set<(server: string) => void>();
  quarantined = 0;

  constructor(stateDir: string, private readonly log?: Logger) {
    this.dir = path.join(stateDir, 'outbox');
    this.journal = new Journal(path.join(this.dir, 'journal.jsonl'));
    this.dirSync = GroupSync.forDir(this.dir);
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
        if (r.id && (r.event !== 'sent' || records.get(r.id)?.event !== 'done')) records.set(r.id, r);
      } catch {
        /* a torn last line after a crash */
      }
    }
    for (const name of await readdir(this.dir)) {
      const file = path.join(this.dir, name);
      if (name.startsWith('.') && name.endsWith('.tmp')) {
        await rm(file, { force: true }); // never acknowledged
        continue;
      }
      if (!name.endsWith('.msg')) continue;
      let message: OutboundMessage;
      try {
        message = unframe(await readFile(file, 'utf8'));
        if (`${message.id}.msg` !== name) throw new Error('file name and id differ');
      } catch (err) {
        await this.quarantine(file, (err as Error).message);
        continue;
      }
      const record = records.get(message.id);
      if (record && record.event !== 'sent') {
        await unlink(file).catch(() => undefined);
        continue;
      }
      this.entries.set(message.id, {
        message,
        state: record?.event === 'sent' ? 'sent' : 'queued',
        attempts: 0,
        nextAttemptAt: 0,
        lastError: null,
        reply: record?.reply ?? null,
        recovered: true,
      });
    }
    const keep = [...records.values()].filter((r) => this.entries.has(r.id) || now - Date.parse(r.at) < KEEP_FINISHED_MS);
    for (const r of keep) if (r.event !== 'sent') this.finished.set(r.id, { ...r, message: null });
    await writeFileAtomic(this.journal.file, keep.map((r) => `${JSON.stringify(r)}\n`).join(''));
    await this.journal.open();
  }

  private async quarantine(file: string, why: string): Promise<void> {
    const dir = path.join(this.dir, 'quarantine');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await rename(file, path.join(dir, `${path.basename(file)}.${Date.now()}`));
    this.quarantined += 1;
    this.log?.error({ file: path.basename(file), reason: why }, 'outbox file is damaged: moved to quarantine/, not sent');
  }

  /** Writes the message durably, then queues it. Resolves only when it is on disk. */
  async accept(request: OutboundRequest & { from: string; server: string; inReplyToMessageId?: string }): Promise<OutboundMessage> {
    const id = randomUUID();
    const domain = request.from.split('@')[1] ?? 'mailctl.invalid';
    const message: OutboundMessage = { ...request, id, messageId: `<${id}@${domain}>`, createdAt: new Date().toISOString() };
    const file = path.join(this.dir, `${id}.msg`);
    await writeFileAtomic(file, frame(message), { syncDir: false });
    await this.dirSync.request();
    this.entries.set(id, { message, state: 'queued', attempts: 0, nextAttemptAt: 0, lastError: null, reply: null, recovered: false });
    this.notify(request.server);
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

  /** Records that the server accepted it (not awaited: a crash before the record only means a resend). */
  markSent(entry: OutboxEntry, reply: string): void {
    entry.state = 'sent';
    entry.reply = reply;
    void this.journal.append(this.record(entry, 'sent', { reply })).catch(() => undefined);
  }

  /** Finishes a message: journal first (durably), then the `.msg` goes. */
  async finish(entry: OutboxEntry, event: 'done' | 'failed' | 'cancelled', extra: Partial<JournalRecord> = {}): Promise<void> {
    const record = this.record(entry, event, { ...(entry.reply !== null && { reply: entry.reply }), ...extra });
    await this.journal.append(record);
    this.entries.delete(entry.message.id);
    const { from, to, subject, createdAt } = entry.message;
    this.finished.set(entry.message.id, { ...record, message: { from, to, subject, createdAt } });
    await unlink(path.join(this.dir, `${entry.message.id}.msg`)).catch(() => undefined);
  }

  private record(entry: OutboxEntry, event: JournalRecord['event'], extra: Partial<JournalRecord>): JournalRecord {
    return { id: entry.message.id, event, at: new Date().toISOString(), messageId: entry.message.messageId, server: entry.message.server, ...extra };
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
    const state: OutboundState = f.event === 'done' ? 'sent' : f.event === 'sent' ? 'sent' : f.event;
    return {
      id, messageId: f.messageId, server: f.server, from: f.message?.from ?? '', to: f.message?.to ?? [], subject: f.message?.subject ?? '',
      createdAt: f.message?.createdAt ?? '', state, finishedAt: f.at,
      ...(f.reply !== undefined && { reply: f.reply }),
      ...(f.reason !== undefined && { reason: f.reason }),
      ...(f.event === 'done' && { copy: f.storedIn ? 'stored' : 'none', storedIn: f.storedIn ?? null }),
    };
  }

  private viewOf(e: OutboxEntry): OutboundView {
    const m = e.message;
    return {
      id: m.id, messageId: m.messageId, server: m.server, from: m.from, to: m.to, subject: m.subject, createdAt: m.createdAt, state: e.state,
      attempts: e.attempts, nextAttemptAt: e.nextAttemptAt ? new Date(e.nextAttemptAt).toISOString() : null, lastError: e.lastError, reply: e.reply,
      ...(e.state === 'sent' && { copy: 'pending' as const }),
    };
  }

  list(): OutboundView[] {
    return [...this.entries.values()].map((e) => this.viewOf(e));
  }

  async close(): Promise<void> {
    await this.journal.close();
  }
}
