/**
 * The `directory` sink: for each message exactly one `<dir>/<queue>/<key>.eml` (the exact source) and `<key>.json`
 * (metadata). Temp files are `.<key>.tmp` in the same folder; the `.eml` is renamed into place first and the `.json`
 * last, so a `.json` marks a complete pair. A retry of the same key overwrites, never duplicates. fsyncs are grouped
 * per batch: every file is fsynced, each queue folder once after the `.eml` renames and once after the `.json` ones.
 */
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { fsyncDir, writeFileDurably } from '../../../adapters/durable-files.js';
import { classifyMailError } from '../../../adapters/classify.js';
import { MailError } from '../../../adapters/connection.js';
import { nameInKeys } from '../../../config/keys.js';
import type { FlowSpec } from '../../../config/model.js';
import { leadsInto } from '../../../connect/confine.js';
import type { InboundMetadata, QueueRow } from '../../../store/ports.js';

export type { InboundMetadata } from '../../../store/ports.js';

export interface SinkItem {
  key: string;
  queue: string;
  source: Buffer;
  metadata: InboundMetadata;
}

/**
 * A delivery: done (or, for a sink in the store, `row` to write with the batch's commit), or failed: `permanent` (the
 * sink refused this message: never retried, quarantined) or transient (retried); `sinkDown` says the failure is the
 * sink's, not the message's (connection refused, disk full...).
 */
export type SinkResult =
  | { key: string; ok: true; row?: QueueRow }
  | { key: string; ok: false; error: Error; permanent?: boolean; sinkDown?: boolean };

/** Where a flow delivers: the directory sink or the webhook sink. */
export interface InboundSink {
  /** Results are in the order of `items`; one item failing does not fail the others. */
  deliverBatch(items: readonly SinkItem[]): Promise<SinkResult[]>;
}

/** Errors of the file system or the queue folder as a whole, not of one message. */
const SINK_DOWN_CODES = new Set(['ENOSPC', 'EROFS', 'EDQUOT', 'EIO', 'EACCES', 'EPERM']);

/** A file error as `status` shows it: what it means, the operation and the file (`local` class wording). */
function fileError(err: Error): Error {
  const classified = classifyMailError(err);
  return classified.failureClass === 'local' ? classified : err;
}

/**
 * `<shortName>.<uidValidity>.<uid>.<first 8 hex of sha256(host \0 user \0 folder)>`, the shortName as keys carry it
 * (shortened beyond 64 characters, config/keys.ts).
 */
export function messageKey(
  shortName: string,
  uidValidity: string,
  uid: number,
  identity: { host: string; user: string; folder: string },
): string {
  return `${nameInKeys(shortName)}.${uidValidity}.${uid}.${identityHash(identity).slice(0, 8)}`;
}

export function identityHash({ host, user, folder }: { host: string; user: string; folder: string }): string {
  return createHash('sha256').update(`${host}\0${user}\0${folder}`).digest('hex');
}

/** Queue names become folder names: refuse anything that could leave the sink folder. */
export function safeQueueName(queue: string): string {
  if (!queue || queue === '.' || queue === '..' || /[/\\\0]/.test(queue) || queue.startsWith('.'))
    throw new Error(`queue name ${JSON.stringify(queue)} is not a safe folder name`);
  return queue;
}

export class DirectorySink implements InboundSink {
  private readonly known = new Set<string>();

  constructor(readonly dir: string) {}

  private async queueDir(queue: string): Promise<string> {
    const dir = path.join(this.dir, safeQueueName(queue));
    if (!this.known.has(dir)) {
      const created = await mkdir(dir, { recursive: true, mode: 0o750 });
      if (created) await fsyncDir(path.dirname(dir)).catch(() => undefined);
      this.known.add(dir);
    }
    return dir;
  }

  /** Delivers a batch; one item failing does not fail the others. Results are in the order of `items`. */
  async deliverBatch(items: readonly SinkItem[]): Promise<SinkResult[]> {
    const state = items.map((item) => ({ item, dir: '', error: null as Error | null }));
    const fail = (s: (typeof state)[number], err: unknown) =>
      (s.error ??= err instanceof Error ? err : new Error(String(err)));
    const syncDirs = async () => {
      const dirs = new Map<string, typeof state>();
      for (const s of state) if (!s.error) dirs.set(s.dir, [...(dirs.get(s.dir) ?? []), s]);
      await Promise.all(
        [...dirs].map(([dir, members]) => fsyncDir(dir).catch((err) => members.forEach((s) => fail(s, err)))),
      );
    };
    // 1. every .eml: write the temp file, fsync, rename into place
    await Promise.all(
      state.map(async (s) => {
        let temp: string | null = null;
        try {
          s.dir = await this.queueDir(s.item.queue);
          temp = path.join(s.dir, `.${s.item.key}.tmp`);
          await writeFileDurably(temp, s.item.source);
          await rename(temp, path.join(s.dir, `${s.item.key}.eml`));
        } catch (err) {
          if (s.dir) this.known.delete(s.dir); // recreate the folder next time if it was removed
          fail(s, err);
          // a partial file of a full disk holds space that the next delivery needs
          if (temp) await rm(temp, { force: true }).catch(() => undefined);
        }
      }),
    );
    await syncDirs();
    // 2. every .json last: its presence marks the pair complete
    await Promise.all(
      state.map(async (s) => {
        if (s.error) return;
        const temp = path.join(s.dir, `.${s.item.key}.tmp`);
        try {
          await writeFileDurably(temp, `${JSON.stringify(s.item.metadata, null, 2)}\n`);
          await rename(temp, path.join(s.dir, `${s.item.key}.json`));
        } catch (err) {
          fail(s, err);
          await rm(temp, { force: true }).catch(() => undefined);
        }
      }),
    );
    await syncDirs();
    return state.map((s) =>
      s.error
        ? {
            key: s.item.key,
            ok: false,
            error: fileError(s.error),
            sinkDown: SINK_DOWN_CODES.has((s.error as NodeJS.ErrnoException).code ?? ''),
          }
        : { key: s.item.key, ok: true },
    );
  }
}

/** `deliver.directory` of a flow, absolute or relative to the daemon's state folder. */
export function sinkDirOf(stateDir: string, flow: FlowSpec): string {
  const dir = flow.deliver.directory;
  if (!dir) throw new MailError('config', `email flow "${flow.name}" has no directory sink`);
  return path.resolve(stateDir, dir);
}

/**
 * Why a flow may not deliver to its `deliver.directory`, or null: it must lead below a `--sink-root` (judged where it
 * really leads, links followed), so a changed file cannot make the daemon write mail into any folder it can write to.
 */
export async function sinkDirRefusal(
  stateDir: string,
  flow: FlowSpec,
  roots: readonly string[],
): Promise<string | null> {
  const dir = sinkDirOf(stateDir, flow);
  if (await leadsInto(dir, roots)) return null;
  return (
    `email flow "${flow.name}": deliver.directory ${dir} is not inside a folder allowed by --sink-root ` +
    `(${roots.join(', ')})`
  );
}

/** The Message-ID in the `.json` of `key` in any queue of these sink folders, or null. */
export async function messageIdInDirectories(dirs: readonly string[], key: string): Promise<string | null> {
  for (const dir of dirs) {
    const queues = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const q of queues) {
      if (!q.isDirectory()) continue;
      const text = await readFile(path.join(dir, q.name, `${key}.json`), 'utf8').catch(() => null);
      if (text !== null) return (JSON.parse(text) as { messageId?: string | null }).messageId ?? null;
    }
  }
  return null;
}
