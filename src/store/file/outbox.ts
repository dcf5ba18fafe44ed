/**
 * The outbox in `<state>/outbox/`: accepted messages are written in immutable batch files (temp file, fsync, rename,
 * fsync of the folder; 0600) — one file per `accept`, so the requests that arrive together share two fsyncs.
 * `journal.jsonl` records what happened to each message (deferred, sent, done, failed, cancelled). Every record in a
 * batch file is length-framed and ends with an END marker; a file that does not parse (e.g. cut short) is moved to
 * `quarantine/`, never sent. A batch file is removed only once the journal says every message in it is finished, so a
 * crash at any point resends (same Message-ID) rather than loses. The journal is compacted at load and, once it has
 * doubled, while running: it keeps the last record of each message still in a batch file and the newest finished
 * ones (OUTBOX_FINISHED_KEPT, of the last week). Single-message `<id>.msg` files (an earlier layout) are still read.
 */
import { mkdir, readdir, readFile, rename, rm, unlink } from 'node:fs/promises';
import path from 'node:path';
import { ensurePrivateDir, writeFileAtomic } from '../../adapters/durable-files.js';
import {
  OUTBOX_FINISHED_KEPT,
  type OutboxEvent,
  type OutboxSnapshot,
  type OutboxStore,
  type StoredOutboundMessage,
} from '../ports.js';
import { Journal } from './journal.js';

export const OUTBOX_FORMAT_VERSION = 1;
const MAGIC = 'MAILCTL-OUTBOX';
const END = '\nEND\n';
const FINAL: ReadonlySet<string> = new Set(['done', 'failed', 'cancelled']);
const PROGRESS: ReadonlySet<string> = new Set(['deferred', 'sent']);
const isFinal = (r: OutboxEvent | undefined): boolean => r !== undefined && FINAL.has(r.event);
/** Finished records older than this are dropped when the journal is compacted. */
const KEEP_FINISHED_MS = 7 * 24 * 3600_000;
/** The journal is compacted while running once it is at least this big (and twice its size after the last time). */
const COMPACT_MIN_BYTES = 1024 * 1024;

/** The last record of each message in `lines` (a late progress record never replaces a final one), with its line. */
function latestRecords(lines: Iterable<string>): Map<string, { record: OutboxEvent; line: string }> {
  const latest = new Map<string, { record: OutboxEvent; line: string }>();
  for (const line of lines) {
    if (!line.trim()) continue;
    try {
      const record = JSON.parse(line) as OutboxEvent;
      if (record.id && !(PROGRESS.has(record.event) && isFinal(latest.get(record.id)?.record)))
        latest.set(record.id, { record, line });
    } catch {
      /* a torn line (a crash or a full disk in the middle of an append) */
    }
  }
  return latest;
}

/**
 * What a compacted journal keeps, in its order: the last record of every message still in a batch file (a finished
 * one's final record is what keeps it from being sent again), and of the other finished messages the newest
 * OUTBOX_FINISHED_KEPT of the last week.
 */
function keptRecords<T extends { record: OutboxEvent }>(
  latest: ReadonlyMap<string, T>,
  inFile: (id: string) => boolean,
  now: number,
): T[] {
  const finished = [...latest.values()]
    .filter((r) => !inFile(r.record.id) && isFinal(r.record) && now - Date.parse(r.record.at) < KEEP_FINISHED_MS)
    .sort((a, b) => (a.record.at < b.record.at ? -1 : a.record.at > b.record.at ? 1 : 0))
    .slice(-OUTBOX_FINISHED_KEPT);
  const shown = new Set(finished);
  return [...latest.values()].filter((r) => inFile(r.record.id) || shown.has(r));
}

export function frame(message: StoredOutboundMessage): string {
  const json = JSON.stringify({ formatVersion: OUTBOX_FORMAT_VERSION, message });
  return `${MAGIC} ${OUTBOX_FORMAT_VERSION} ${Buffer.byteLength(json)}\n${json}${END}`;
}

/** Parses a `.msg` file (one framed record); throws when it is incomplete or not ours. */
export function unframe(text: string): StoredOutboundMessage {
  const all = unframeAll(Buffer.from(text));
  if (all.length !== 1) throw new Error(`expected one record, found ${all.length}`);
  return all[0]!;
}

/** Parses a batch file (framed records back to back, at least one); throws when any is incomplete or not ours. */
export function unframeAll(data: Buffer): StoredOutboundMessage[] {
  const messages: StoredOutboundMessage[] = [];
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
      message: StoredOutboundMessage;
    };
    if (parsed.formatVersion !== OUTBOX_FORMAT_VERSION || !parsed.message?.id) throw new Error('not an outbox record');
    messages.push(parsed.message);
    at = start + length + end.length;
  } while (at < data.length);
  return messages;
}

/** A file of the outbox, every id in it, and those not finished yet; it is removed when none is left. */
interface OutboxFile {
  file: string;
  ids: readonly string[];
  open: Set<string>;
}

export class FileOutboxStore implements OutboxStore {
  readonly dir: string;
  private readonly journal: Journal<OutboxEvent>;
  /** The file each unfinished message is in. */
  private readonly fileOf = new Map<string, OutboxFile>();
  /** Every message whose file is still there, finished or not: the journal keeps their last records. */
  private readonly inFiles = new Set<string>();
  private batchSeq = 0;

  constructor(stateDir: string) {
    this.dir = path.join(stateDir, 'outbox');
    this.journal = new Journal(path.join(this.dir, 'journal.jsonl'), {
      compactAtBytes: COMPACT_MIN_BYTES,
      compact: (lines) =>
        keptRecords(latestRecords(lines), (id) => this.inFiles.has(id), Date.now()).map((r) => r.line),
    });
  }

  async load(now: number): Promise<OutboxSnapshot> {
    await ensurePrivateDir(this.dir);
    const text = await readFile(this.journal.file, 'utf8').catch(() => '');
    const latest = latestRecords(text.split('\n'));
    const records = new Map([...latest].map(([id, { record }]) => [id, record]));
    const open: OutboxSnapshot['open'] = [];
    const damaged: OutboxSnapshot['damaged'] = [];
    for (const name of (await readdir(this.dir)).sort()) {
      const file = path.join(this.dir, name);
      if (name.startsWith('.') && name.endsWith('.tmp')) {
        await rm(file, { force: true }); // never acknowledged
        continue;
      }
      if (!name.endsWith('.msg') && !name.endsWith('.batch')) continue;
      let messages: StoredOutboundMessage[];
      try {
        messages = unframeAll(await readFile(file));
        if (name.endsWith('.msg') && (messages.length !== 1 || `${messages[0]!.id}.msg` !== name))
          throw new Error('file name and id differ');
        if (messages.some((m) => this.fileOf.has(m.id))) throw new Error('an id that another outbox file has too');
      } catch (err) {
        await this.setAside(file);
        damaged.push({ item: name, reason: (err as Error).message });
        continue;
      }
      const entry: OutboxFile = { file, ids: messages.map((m) => m.id), open: new Set() };
      for (const message of messages) {
        const record = records.get(message.id);
        if (isFinal(record)) continue;
        entry.open.add(message.id);
        this.fileOf.set(message.id, entry);
        open.push({ message, last: record ?? null });
      }
      if (entry.open.size === 0) await unlink(file).catch(() => undefined);
      else for (const id of entry.ids) this.inFiles.add(id);
    }
    const keep = keptRecords(latest, (id) => this.inFiles.has(id), now);
    await writeFileAtomic(this.journal.file, keep.map((r) => `${r.line}\n`).join(''));
    await this.journal.open();
    const finished = keep.map((r) => r.record).filter(isFinal);
    return { open, finished: finished.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0)), damaged };
  }

  /** A file that does not parse goes to `quarantine/` (kept for a person to look at, never sent). */
  private async setAside(file: string): Promise<void> {
    const dir = path.join(this.dir, 'quarantine');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await rename(file, path.join(dir, `${path.basename(file)}.${Date.now()}`));
  }

  async accept(messages: readonly StoredOutboundMessage[]): Promise<void> {
    if (!messages.length) return;
    const name = `${Date.now().toString(36)}-${process.pid.toString(36)}-${(this.batchSeq++).toString(36)}.batch`;
    const file = path.join(this.dir, name);
    await writeFileAtomic(file, messages.map(frame).join(''));
    const ids = messages.map((m) => m.id);
    const entry: OutboxFile = { file, ids, open: new Set(ids) };
    for (const id of ids) {
      this.fileOf.set(id, entry);
      this.inFiles.add(id);
    }
  }

  async record(events: readonly OutboxEvent[]): Promise<void> {
    await this.journal.appendMany([...events]);
    const emptied = new Set<OutboxFile>();
    for (const e of events) {
      if (!FINAL.has(e.event)) continue;
      const file = this.fileOf.get(e.id);
      this.fileOf.delete(e.id);
      if (file?.open.delete(e.id) && file.open.size === 0) emptied.add(file);
    }
    await Promise.all(
      [...emptied].map(async (f) => {
        const gone = await unlink(f.file).then(
          () => true,
          (err: NodeJS.ErrnoException) => err.code === 'ENOENT',
        );
        // a file that stays is read at the next load: its messages' final records must stay too
        if (gone) for (const id of f.ids) this.inFiles.delete(id);
      }),
    );
  }

  async close(): Promise<void> {
    await this.journal.close();
  }
}
