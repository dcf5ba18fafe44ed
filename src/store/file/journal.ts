/**
 * Durable helpers with group commit: many concurrent writers share one fsync. `GroupSync` coalesces fsyncs of one
 * folder; `Journal` is an append-only JSON-lines file whose appends resolve once they are on disk: the appends made
 * while a write is running (or in the same turn of the event loop) go out together in the next write and fsync.
 */
import { open, readFile, type FileHandle } from 'node:fs/promises';
import { fsyncDir, withPath, writeFileAtomic } from '../../adapters/durable-files.js';

/** Coalesces `fsync(dir)`: a caller waits for a sync that started after its call, shared with other callers. */
export class GroupSync {
  private running: Promise<void> | null = null;
  private queued: Promise<void> | null = null;

  constructor(private readonly sync: () => Promise<void>) {}

  static forDir(dir: string): GroupSync {
    return new GroupSync(() => fsyncDir(dir));
  }

  request(): Promise<void> {
    if (this.queued) return this.queued;
    if (!this.running) {
      this.running = this.sync().finally(() => (this.running = null));
      return this.running;
    }
    this.queued = this.running
      .catch(() => undefined)
      .then(() => {
        this.queued = null;
        return this.request();
      });
    return this.queued;
  }
}

export interface JournalOptions {
  /**
   * Rewrites the journal's lines to those worth keeping: called between writes (appends wait) once the file is
   * `compactAtBytes` big and twice its size after the last compaction, so compaction costs O(1) per record.
   */
  compact?: (lines: string[]) => string[];
  compactAtBytes?: number;
}

/**
 * An append-only JSON-lines file (0600). `append` resolves after the line is written and fsynced. A write cut short
 * (a full disk) is cut off again at the end of the last good line, so the next record never lands glued to a torn
 * one (both would be lost: a finished message would be sent again after a restart); when even that fails, or the
 * file ends in a torn line when opened, the next write starts on a new line, and every line is read on its own.
 */
export class Journal<T> {
  private handle: FileHandle | null = null;
  private pending: { line: string; done: () => void; fail: (err: unknown) => void }[] = [];
  private flushing: Promise<void> | null = null;
  /** The file's size after the last write that completed. */
  private goodSize = 0;
  /** The file may end in a torn line: the next write starts with a line break. */
  private torn = false;
  private compactAt = Infinity;

  constructor(
    readonly file: string,
    private readonly options: JournalOptions = {},
  ) {}

  async open(): Promise<void> {
    this.handle = await open(this.file, 'a+', 0o600);
    await this.handle.chmod(0o600);
    this.goodSize = (await this.handle.stat()).size;
    if (this.goodSize > 0) {
      const last = Buffer.alloc(1);
      await this.handle.read(last, 0, 1, this.goodSize - 1);
      this.torn = last[0] !== 0x0a;
    }
    this.planCompaction();
  }

  private planCompaction(): void {
    if (this.options.compact) this.compactAt = Math.max(this.options.compactAtBytes ?? 0, 2 * this.goodSize);
  }

  /**
   * Replaces the file with the lines `compact` keeps (atomically: temp file, rename), then appends to the new one. A
   * failure (a full disk) leaves the file as it was, and appends go on.
   */
  private async compact(keep: (lines: string[]) => string[]): Promise<void> {
    try {
      const lines = (await readFile(this.file, 'utf8')).split('\n').filter(Boolean);
      const text = keep(lines)
        .map((l) => `${l}\n`)
        .join('');
      await writeFileAtomic(this.file, text);
      const handle = await open(this.file, 'a+', 0o600);
      await this.handle?.close();
      this.handle = handle;
      this.goodSize = Buffer.byteLength(text);
      this.torn = false;
    } catch {
      /* the journal stays as it is: compaction only saves space */
    }
    this.planCompaction();
  }

  append(record: T): Promise<void> {
    return this.appendMany([record]);
  }

  /** Appends several records in one write (and one fsync, shared with the other appends waiting then). */
  appendMany(records: T[]): Promise<void> {
    if (!records.length) return Promise.resolve();
    return new Promise<void>((done, fail) => {
      this.pending.push({ line: records.map((r) => `${JSON.stringify(r)}\n`).join(''), done, fail });
      this.flushing ??= this.flush();
    });
  }

  private async flush(): Promise<void> {
    // the appends made in this turn of the event loop share the first write and fsync
    await new Promise<void>((resolve) => setImmediate(resolve));
    while (this.pending.length) {
      const batch = this.pending;
      this.pending = [];
      try {
        if (!this.handle) throw new Error(`journal ${this.file} is closed`);
        const data = Buffer.from(`${this.torn ? '\n' : ''}${batch.map((b) => b.line).join('')}`);
        try {
          await this.handle.appendFile(data);
          await this.handle.sync();
        } catch (err) {
          await this.cutTornTail();
          throw withPath(err, this.file);
        }
        this.goodSize += data.length;
        this.torn = false;
        batch.forEach((b) => b.done());
      } catch (err) {
        batch.forEach((b) => b.fail(err));
      }
      if (this.options.compact && this.goodSize >= this.compactAt) await this.compact(this.options.compact);
    }
    this.flushing = null;
  }

  /** After a failed write: back to the last good line, or else the next write starts a new line. */
  private async cutTornTail(): Promise<void> {
    try {
      await this.handle!.truncate(this.goodSize);
      await this.handle!.sync();
    } catch {
      this.torn = true;
    }
  }

  async close(): Promise<void> {
    await this.flushing;
    await this.handle?.close();
    this.handle = null;
  }
}
