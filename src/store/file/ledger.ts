/**
 * What a server delivered, by Message-ID and content hash (sha256 of the exact source), in
 * `<state>/inbound/<type>_<name>.delivered` (0600, one `<hash> <Message-ID>` line per message, appended and
 * fsynced per batch). Bounded: when it holds twice `max` lines it is rewritten with the last `max`. Only read after a
 * UIDVALIDITY change, to recognise mail that was already delivered before the mailbox was recreated.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { appendLineDurably, ensurePrivateDir, writeFileAtomic } from '../../adapters/durable-files.js';
import { nameInKeys } from '../../config/keys.js';
import { LEDGER_MAX_ENTRIES } from '../ports.js';

export function ledgerFile(stateDir: string, type: string, shortName: string): string {
  return path.join(stateDir, 'inbound', `${type}_${nameInKeys(shortName)}.delivered`);
}

/** Message-IDs are single tokens in practice; anything with whitespace is normalised so a line stays parseable. */
const entryKey = (messageId: string | null, hash: string): string => `${hash} ${(messageId ?? '').replace(/\s+/g, '')}`;

export class DeliveredLedger {
  private lines: number | null = null;
  private known: Set<string> | null = null;

  constructor(
    readonly file: string,
    private readonly max = LEDGER_MAX_ENTRIES,
  ) {}

  private async read(): Promise<string[]> {
    const text = await readFile(this.file, 'utf8').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return '';
      throw err;
    });
    return text.split('\n').filter((l) => l !== '');
  }

  /** Was a message with this Message-ID and content delivered (within the last `max` or so)? */
  async has(messageId: string | null, hash: string): Promise<boolean> {
    this.known ??= new Set(await this.read());
    return this.known.has(entryKey(messageId, hash));
  }

  /** Every entry, oldest first (to copy the ledger into another store). */
  async entries(): Promise<{ messageId: string | null; hash: string }[]> {
    return (await this.read()).map((line) => {
      const [hash = '', messageId = ''] = line.split(' ');
      return { hash, messageId: messageId || null };
    });
  }

  /** Drops the in-memory set (after the re-check of a recreated mailbox is over). */
  forget(): void {
    this.known = null;
  }

  async add(entries: readonly { messageId: string | null; hash: string }[]): Promise<void> {
    if (!entries.length) return;
    await ensurePrivateDir(path.dirname(this.file));
    this.lines ??= (await this.read()).length;
    const text = entries.map((e) => entryKey(e.messageId, e.hash)).join('\n');
    await appendLineDurably(this.file, text);
    for (const e of entries) this.known?.add(entryKey(e.messageId, e.hash));
    this.lines += entries.length;
    if (this.lines >= 2 * this.max) {
      const keep = (await this.read()).slice(-this.max);
      await writeFileAtomic(this.file, `${keep.join('\n')}\n`);
      this.lines = keep.length;
      if (this.known) this.known = new Set(keep);
    }
  }
}
