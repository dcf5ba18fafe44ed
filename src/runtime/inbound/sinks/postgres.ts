/**
 * The `postgres` sink: each message becomes a row of the flow's queue table in the daemon's own store. Delivering
 * writes nothing by itself: the rows go into the store with the batch's checkpoint, in one transaction (commit.ts),
 * so a message is in its queue exactly once with no file and no fsync of its own. The text fields are the `.json`'s,
 * with no control character in them (facts.ts; PostgreSQL text could not hold a NUL at all); `source` keeps the exact
 * bytes.
 */
import type { QueueRow } from '../../../store/ports.js';
import type { InboundSink, SinkItem, SinkResult } from './directory.js';

export class PostgresSink implements InboundSink {
  constructor(readonly table: string) {}

  row({ key, source, metadata: m }: SinkItem): QueueRow {
    return {
      table: this.table,
      key,
      queue: m.queue,
      server: m.server,
      folder: m.folder,
      uidValidity: m.uidValidity,
      uid: m.uid,
      messageId: m.messageId,
      from: m.from,
      to: m.to,
      cc: m.cc,
      subject: m.subject,
      date: m.date,
      autoReply: m.autoReply,
      receivedAt: m.receivedAt,
      source,
    };
  }

  deliverBatch(items: readonly SinkItem[]): Promise<SinkResult[]> {
    return Promise.resolve(items.map((item) => ({ key: item.key, ok: true as const, row: this.row(item) })));
  }
}
