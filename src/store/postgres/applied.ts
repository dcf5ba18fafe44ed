/** The applied configuration (one row) and the apply log (append-only) in the store's schema. */
import type { AppliedRecord, AppliedStore, ApplyLogEntry } from '../ports.js';
import type { PgContext } from './context.js';

export class PgAppliedStore implements AppliedStore {
  constructor(private readonly ctx: PgContext) {}

  async read(): Promise<AppliedRecord | null> {
    const { rows } = await this.ctx.db.query<{ record: AppliedRecord }>(`SELECT record FROM ${this.ctx.s}.applied`);
    return rows[0]?.record ?? null;
  }

  async write(record: AppliedRecord): Promise<void> {
    await this.ctx.write((c) =>
      c.query(
        `INSERT INTO ${this.ctx.s}.applied (id, record) VALUES (true, $1)
         ON CONFLICT (id) DO UPDATE SET record = excluded.record, updated_at = now()`,
        [JSON.stringify(record)],
      ),
    );
  }

  async appendLog(entry: ApplyLogEntry): Promise<void> {
    await this.ctx.write((c) =>
      c.query(`INSERT INTO ${this.ctx.s}.apply_log (entry) VALUES ($1)`, [JSON.stringify(entry)]),
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
