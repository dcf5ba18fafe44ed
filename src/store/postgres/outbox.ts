/**
 * The outbox in the store's schema: one `outbox` row per message (in the order accepted), with its last event. A final
 * event (done, failed, cancelled) sets `finished_at` and drops the message itself (the event is kept a week for the
 * `outbox` views); a progress event never reopens a finished row. `accept` inserts the requests that arrived together
 * in one statement and one commit, as the file outbox shares one fsync.
 */
import type { OutboxEvent, OutboxSnapshot, OutboxStore, StoredOutboundMessage } from '../ports.js';
import type { PgContext } from './context.js';

const FINAL: ReadonlySet<string> = new Set(['done', 'failed', 'cancelled']);
/** Finished messages older than this are forgotten at load. */
const KEEP_FINISHED_MS = 7 * 24 * 3600_000;

export class PgOutboxStore implements OutboxStore {
  constructor(private readonly ctx: PgContext) {}

  async load(now: number): Promise<OutboxSnapshot> {
    const s = this.ctx.s;
    await this.ctx.write((c) =>
      c.query(`DELETE FROM ${s}.outbox WHERE finished_at < $1`, [new Date(now - KEEP_FINISHED_MS)]),
    );
    const { rows } = await this.ctx.db.query<{
      message: StoredOutboundMessage | null;
      last_event: OutboxEvent | null;
      finished_at: Date | null;
    }>(`SELECT message, last_event, finished_at FROM ${s}.outbox ORDER BY seq`);
    const snapshot: OutboxSnapshot = { open: [], finished: [], damaged: [] };
    for (const r of rows) {
      if (r.finished_at === null && r.message) snapshot.open.push({ message: r.message, last: r.last_event });
      else if (r.last_event) snapshot.finished.push(r.last_event);
    }
    return snapshot;
  }

  async accept(messages: readonly StoredOutboundMessage[]): Promise<void> {
    if (!messages.length) return;
    await this.ctx.writeOne(
      (held) =>
        `INSERT INTO ${this.ctx.s}.outbox (id, server, message)
         SELECT id, server, message::json FROM unnest($1::text[], $2::text[], $3::text[]) AS m(id, server, message)
         WHERE ${held}`,
      [messages.map((m) => m.id), messages.map((m) => m.server), messages.map((m) => JSON.stringify(m))],
    );
  }

  async record(events: readonly OutboxEvent[]): Promise<void> {
    // per message, the event that stands: the last one, except that nothing after a final event reopens it
    const standing = new Map<string, OutboxEvent>();
    for (const e of events) {
      const before = standing.get(e.id);
      if (before && FINAL.has(before.event) && !FINAL.has(e.event)) continue;
      standing.set(e.id, e);
    }
    if (!standing.size) return;
    const list = [...standing.values()];
    await this.ctx.writeOne(
      (held) =>
        `UPDATE ${this.ctx.s}.outbox o
         SET last_event = e.event::json,
             finished_at = CASE WHEN e.final THEN e.at ELSE NULL END,
             message = CASE WHEN e.final THEN NULL ELSE o.message END
         FROM unnest($1::text[], $2::text[], $3::boolean[], $4::timestamptz[]) AS e(id, event, final, at)
         WHERE o.id = e.id AND (o.finished_at IS NULL OR e.final) AND ${held}`,
      [
        list.map((e) => e.id),
        list.map((e) => JSON.stringify(e)),
        list.map((e) => FINAL.has(e.event)),
        list.map((e) => e.at),
      ],
    );
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
