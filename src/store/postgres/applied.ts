/**
 * The applied configuration (one row, with its generation: each write adds one) and the apply log (append-only) in the
 * store's schema. In a group only the holder of the `reconciler` lease writes them (fenced by it), and a new generation
 * is announced to the other replicas (NOTIFY, at commit), which then run it.
 */
import type { AppliedRecord, AppliedStore, ApplyLogEntry } from '../ports.js';
import { RECONCILER_LEASE } from '../group-ports.js';
import type { PgContext } from './context.js';

export class PgAppliedStore implements AppliedStore {
  constructor(private readonly ctx: PgContext) {}

  async read(): Promise<AppliedRecord | null> {
    const { rows } = await this.ctx.db.query<{ record: AppliedRecord; generation: string }>(
      `SELECT record, generation FROM ${this.ctx.s}.applied`,
    );
    const row = rows[0];
    return row ? { ...row.record, generation: Number(row.generation) } : null;
  }

  async write(record: AppliedRecord): Promise<void> {
    const { generation: _, ...stored } = record;
    const group = this.ctx.group;
    await this.ctx.write(async (c) => {
      await c.query(
        `INSERT INTO ${this.ctx.s}.applied AS a (id, record) VALUES (true, $1)
         ON CONFLICT (id) DO UPDATE SET record = excluded.record, updated_at = now(), generation = a.generation + 1`,
        [JSON.stringify(stored)],
      );
      if (group) await c.query(group.notice('applied'));
    }, RECONCILER_LEASE);
  }

  async appendLog(entry: ApplyLogEntry): Promise<void> {
    await this.ctx.write(
      (c) => c.query(`INSERT INTO ${this.ctx.s}.apply_log (entry) VALUES ($1)`, [JSON.stringify(entry)]),
      RECONCILER_LEASE,
    );
  }

  async recentLog(limit: number): Promise<ApplyLogEntry[]> {
    const { rows } = await this.ctx.db.query<{ entry: ApplyLogEntry }>(
      `SELECT entry FROM ${this.ctx.s}.apply_log ORDER BY seq DESC LIMIT $1`,
      [limit],
    );
    return rows.map((r) => r.entry).reverse();
  }
}
