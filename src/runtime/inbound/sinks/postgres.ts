/**
 * The `postgres` sink: each message becomes a row of the flow's queue table in the daemon's own store. Delivering
 * writes nothing by itself: the rows go into the store with the batch's checkpoint, in one transaction (commit.ts),
 * so a message is in its queue exactly once with no file and no fsync of its own. Text fields get the same cleaning
 * as the directory sink's `.json` (no control characters; PostgreSQL text cannot hold a NUL at all); `source` keeps
 * the exact bytes.
 */
import type { QueueRow } from '../../../store/ports.js';
import type { InboundSink, SinkItem, SinkResult } from './directory.js';

/** Runs of C0/C1 control characters, DEL and the Unicode line separators, which a decoded header may carry. */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g;

/** A header value as a queue may show it: each run of control characters becomes one space. */
export const cleanText = (text: string): string => text.replace(CONTROL, ' ');

export class PostgresSink implements InboundSink {
  constructor(readonly table: string) {}

  row(item: SinkItem): QueueRow {
    const m = item.metadata;
    return {
      table: this.table,
      key: item.key,
      queue: m.queue,
      server: m.server,
      folder: m.folder,
      uidValidity: m.uidValidity,
      uid: m.uid,
      messageId: m.messageId === null ? null : cleanText(m.messageId),
      from: m.from.map(cleanText),
      to: m.to.map(cleanText),
      cc: m.cc.map(cleanText),
      subject: cleanText(m.subject),
      date: m.date,
      autoReply: m.autoReply,
      receivedAt: m.receivedAt,
      source: item.source,
    };
  }

  deliverBatch(items: readonly SinkItem[]): Promise<SinkResult[]> {
    return Promise.resolve(items.map((item) => ({ key: item.key, ok: true as const, row: this.row(item) })));
  }
}
