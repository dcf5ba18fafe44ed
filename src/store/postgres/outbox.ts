/**
 * The outbox in the store's schema: one `outbox` row per message (in the order accepted), with its last event. A final
 * event (done, failed, cancelled) sets `finished_at` and drops the message itself (the event is kept for the `outbox`
 * views: the newest OUTBOX_FINISHED_KEPT of the last week, trimmed at load and every so often while running); a
 * progress event never reopens a finished row. `accept` inserts the requests that arrived together in one statement
 * and one commit, as the file outbox shares one fsync.
 */
import {
  OUTBOX_FINISHED_KEPT,
  type OutboxEvent,
  type OutboxSnapshot,
  type OutboxStore,
  type StoredOutboundMessage,
} from '../ports.js';
import type { PgContext } from './context.js';

const FINAL: ReadonlySet<string> = new Set(['done', 'failed', 'cancelled']);
/** Finished messages older than this are forgotten. */
const KEEP_FINISHED_MS = 7 * 24 * 3600_000;
/** Finished messages recorded between two trims while running: the table holds at most this many more than it keeps. */
const TRIM_EVERY = 100;

export class PgOutboxStore implements OutboxStore {
  private finishedSinceTrim = 0;

  constructor(private readonly ctx: PgContext) {}

  /** Forgets the finished messages older than a week and beyond the newest OUTBOX_FINISHED_KEPT. */
  private async trim(now: number): Promise<void> {
    const s = this.ctx.s;
    await this.ctx.writeOne(
      (held) =>
        `DELETE FROM ${s}.outbox WHERE finished_at IS NOT NULL AND ${held} AND (finished_at < $1 OR id NOT IN (
           SELECT id FROM ${s}.outbox WHERE finished_at IS NOT NULL ORDER BY finished_at DESC, seq DESC LIMIT $2))`,
      [new Date(now - KEEP_FINISHED_MS), OUTBOX_FINISHED_KEPT],
    );
    this.finishedSinceTrim = 0;
  }

  async load(now: number): Promise<OutboxSnapshot> {
    const s = this.ctx.s;
    await this.trim(now);
    // open messages in the order they were accepted (sent in that order); finished ones oldest first
    const { rows } = await this.ctx.db.query<{
      message: StoredOutboundMessage | null;
      last_event: OutboxEvent | null;
      finished_at: Date | null;
    }>(`SELECT message, last_event, finished_at FROM ${s}.outbox ORDER BY finished_at NULLS FIRST, seq`);
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
    const finals = list.filter((e) => FINAL.has(e.event)).length;
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
    this.finishedSinceTrim += finals;
    if (this.finishedSinceTrim >= TRIM_EVERY) await this.trim(Date.now());
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
