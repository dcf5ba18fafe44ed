/**
 * Inbound state in the state folder: per mailbox, `inbound/<type>_<name>.json` (the checkpoint, checkpoint.ts) and
 * `inbound/<type>_<name>.delivered` (the ledger, ledger.ts), `<name>` the shortName as file names carry it
 * (config/keys.ts; files named by a whole long shortName, from before, are renamed on first load). A batch's commit
 * writes the ledger entries and the checkpoint side by side: the ledger only ever grows with messages that reached
 * their sink, so a crash between the two leaves at most a ledger entry whose checkpoint was not written, which only
 * makes a recheck skip a message that was delivered anyway.
 */
import { rename, stat } from 'node:fs/promises';
import path from 'node:path';
import type { QuarantineListing } from '../../api/quarantine.js';
import { nameInKeys } from '../../config/keys.js';
import { StoreError } from '../errors.js';
import { type BatchCommit, type Checkpoint, type InboundStore, type LedgerEntry, type MailboxRef } from '../ports.js';
import { quarantineListing, releaseInCheckpoint } from '../quarantine.js';
import { checkpointFile, listCheckpoints, loadCheckpoint, removeStaleTemps, saveCheckpoint } from './checkpoint.js';
import { DeliveredLedger, ledgerFile } from './ledger.js';

export class FileInboundStore implements InboundStore {
  private readonly ledgers = new Map<string, DeliveredLedger>();
  /** Checkpoint files whose crash leftovers were removed by this process. */
  private readonly swept = new Set<string>();

  constructor(private readonly stateDir: string) {}

  private checkpointOf(mailbox: MailboxRef): string {
    return checkpointFile(this.stateDir, mailbox.type, mailbox.shortName);
  }

  private ledger(mailbox: MailboxRef): DeliveredLedger {
    const file = ledgerFile(this.stateDir, mailbox.type, mailbox.shortName);
    let ledger = this.ledgers.get(file);
    if (!ledger) this.ledgers.set(file, (ledger = new DeliveredLedger(file)));
    return ledger;
  }

  prepareQueue(table: string): Promise<void> {
    return Promise.reject(
      new StoreError(
        'no-queue-rows',
        `the file store keeps no queue rows (table "${table}"): use a directory or webhook sink`,
      ),
    );
  }

  async load(mailbox: MailboxRef): Promise<Checkpoint | null> {
    const file = this.checkpointOf(mailbox);
    if (!this.swept.has(file)) {
      // The first load of a mailbox in this process comes before any write of it (the daemon lock excludes other
      // processes), so temp files next to its checkpoint and ledger are leftovers of a crash in an atomic write.
      this.swept.add(file);
      await this.renameLegacy(mailbox);
      await removeStaleTemps(file);
      await removeStaleTemps(ledgerFile(this.stateDir, mailbox.type, mailbox.shortName));
    }
    return loadCheckpoint(file, mailbox.identity, mailbox.folder);
  }

  /** Files named by a whole shortName longer than file names now carry become the shortened name's (once). */
  private async renameLegacy({ type, shortName }: MailboxRef): Promise<void> {
    if (nameInKeys(shortName) === shortName) return;
    const dir = path.join(this.stateDir, 'inbound');
    for (const [legacy, now] of [
      [`${type}_${shortName}.json`, checkpointFile(this.stateDir, type, shortName)],
      [`${type}_${shortName}.delivered`, ledgerFile(this.stateDir, type, shortName)],
    ] as const) {
      if (await stat(now).catch(() => null)) continue;
      await rename(path.join(dir, legacy), now).catch((err: NodeJS.ErrnoException) => {
        // none (a new server, or a name too long to have ever been a file)
        if (err.code !== 'ENOENT' && err.code !== 'ENAMETOOLONG') throw err;
      });
    }
  }

  async commit(mailbox: MailboxRef, batch: BatchCommit): Promise<void> {
    if (batch.rows?.length) throw new Error('the file store keeps no queue rows; use a directory or webhook sink');
    const ledger = this.ledger(mailbox);
    await Promise.all([
      saveCheckpoint(this.checkpointOf(mailbox), batch.checkpoint),
      ledger.add(batch.delivered ?? []),
    ]);
    // the ledger is read only while a recreated mailbox is re-checked: its set is not kept in memory beyond that
    const { recheckBelow, lastUid } = batch.checkpoint;
    if (recheckBelow === undefined || lastUid >= recheckBelow - 1) ledger.forget();
  }

  async wasDelivered(mailbox: MailboxRef, entry: LedgerEntry): Promise<boolean> {
    return this.ledger(mailbox).has(entry.messageId, entry.hash);
  }

  /** The ledger keeps no keys; the directory sink's `.json` files are where a key's Message-ID is found. */
  messageIdOf(_key: string): Promise<string | null> {
    return Promise.resolve(null);
  }

  async listQuarantine(server?: string): Promise<QuarantineListing[]> {
    const all = (await listCheckpoints(this.stateDir)).flatMap(({ checkpoint }) => quarantineListing(checkpoint));
    return server ? all.filter((q) => q.server === server) : all;
  }

  async release(key: string): Promise<string | null> {
    for (const { file, checkpoint } of await listCheckpoints(this.stateDir)) {
      if (!releaseInCheckpoint(checkpoint, key)) continue;
      await saveCheckpoint(file, checkpoint);
      return checkpoint.server;
    }
    return null;
  }
}
