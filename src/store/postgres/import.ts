/**
 * Copying a whole state into an empty PostgreSQL store (`mailctl store import`), in one transaction under the store's
 * lease: either everything is there afterwards, or nothing is (and the import can be run again).
 */
import type { PoolClient } from 'pg';
import { toStored } from '../checkpoint-format.js';
import { StoreError } from '../errors.js';
import {
  type AppliedRecord,
  type ApplyLogEntry,
  type Checkpoint,
  type KeptCredential,
  type LedgerEntry,
  type OutboxSnapshot,
} from '../ports.js';
import type { PgContext } from './context.js';
import { ledgerId } from './inbound.js';

/** Everything a store keeps, read out of another one. */
export interface StoreSnapshot {
  applied: AppliedRecord | null;
  applyLog: ApplyLogEntry[];
  /** Per mailbox (`imap/<shortName>`): its checkpoint (if any) and its delivered ledger, oldest first. */
  inbound: { server: string; checkpoint: Checkpoint | null; delivered: LedgerEntry[] }[];
  outbox: Pick<OutboxSnapshot, 'open' | 'finished'>;
  credentials: KeptCredential[];
}

/** The tables an import fills: it refuses to write into a store where any of them holds a row. */
const DATA_TABLES = ['applied', 'apply_log', 'checkpoints', 'delivered', 'outbox', 'credentials'];

async function refuseNonEmpty(c: PoolClient, s: string, location: string): Promise<void> {
  const { rows } = await c.query<{ name: string }>(
    DATA_TABLES.map((t) => `SELECT '${t}' AS name FROM ${s}.${t} HAVING count(*) > 0`).join(' UNION ALL '),
  );
  if (rows.length)
    throw new StoreError(
      'store-not-empty',
      `the store ${location} is not empty (${rows.map((r) => r.name).join(', ')} hold rows): an import goes ` +
        'into an empty store only',
    );
}

export async function importSnapshot(ctx: PgContext, location: string, snapshot: StoreSnapshot): Promise<void> {
  const s = ctx.s;
  await ctx.write(async (c) => {
    await refuseNonEmpty(c, s, location);
    if (snapshot.applied)
      await c.query(`INSERT INTO ${s}.applied (id, record) VALUES (true, $1)`, [JSON.stringify(snapshot.applied)]);
    if (snapshot.applyLog.length)
      await c.query(
        `INSERT INTO ${s}.apply_log (entry) SELECT e::json FROM unnest($1::text[]) WITH ORDINALITY AS x(e, n) ` +
          'ORDER BY n',
        [snapshot.applyLog.map((e) => JSON.stringify(e))],
      );
    for (const { server, checkpoint, delivered } of snapshot.inbound) {
      if (checkpoint)
        await c.query(`INSERT INTO ${s}.checkpoints (server, identity, folder, checkpoint) VALUES ($1, $2, $3, $4)`, [
          server,
          checkpoint.identity,
          checkpoint.folder,
          JSON.stringify(toStored(checkpoint)),
        ]);
      if (delivered.length)
        await c.query(
          `INSERT INTO ${s}.delivered (server, hash, message_id)
           SELECT $1, h, m FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS x(h, m, n) ORDER BY n
           ON CONFLICT DO NOTHING`,
          [server, delivered.map((e) => e.hash), delivered.map((e) => ledgerId(e.messageId))],
        );
    }
    // finished first, then the open ones in the order they were accepted (the order they are sent in)
    for (const event of snapshot.outbox.finished)
      await c.query(
        `INSERT INTO ${s}.outbox (id, server, message, last_event, finished_at) VALUES ($1, $2, NULL, $3, $4)`,
        [event.id, event.server, JSON.stringify(event), event.at],
      );
    for (const { message, last } of snapshot.outbox.open)
      await c.query(`INSERT INTO ${s}.outbox (id, server, message, last_event) VALUES ($1, $2, $3, $4)`, [
        message.id,
        message.server,
        JSON.stringify(message),
        last === null ? null : JSON.stringify(last),
      ]);
    for (const credential of snapshot.credentials)
      await c.query(`INSERT INTO ${s}.credentials (id, credential) VALUES ($1, $2)`, [
        credential.id,
        JSON.stringify(credential),
      ]);
  });
}
