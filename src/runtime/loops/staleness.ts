/**
 * Staleness watchdog: an enabled IMAP server whose last successful poll is older than 3× its poll interval is stale.
 * It logs one line when a server goes stale and one when it recovers (not one per check); status and metrics read
 * the current set.
 */
import { pollIntervalMs } from '../../config/schedule.js';
import type { Logger } from 'pino';
import type { ObservedState } from '../../plan/model.js';
import type { LoopStatus } from './loop.js';

export const STALE_AFTER_INTERVALS = 3;
export interface WatchedServer {
  id: string;
  pollSchedule: string;
  lastSuccess: string | null;
}

/** The servers the watchdog looks after: enabled IMAP servers with a running loop. */
export function watchedServers(applied: ObservedState, loops: ReadonlyMap<string, LoopStatus>): WatchedServer[] {
  const out: WatchedServer[] = [];
  for (const [id, server] of Object.entries(applied.servers)) {
    const loop = loops.get(id);
    const spec = server.config.spec;
    if (server.status !== 'active' || spec.type !== 'imap' || !loop) continue;
    out.push({ id, pollSchedule: spec.pollSchedule, lastSuccess: loop.lastSuccess });
  }
  return out;
}

export class StalenessWatchdog {
  private readonly stale = new Set<string>();
  /** When a server was first watched: the reference while it has never succeeded. */
  private readonly firstSeen = new Map<string, number>();

  constructor(
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  get staleIds(): ReadonlySet<string> {
    return this.stale;
  }

  check(servers: readonly WatchedServer[]): void {
    const now = this.now();
    const present = new Set(servers.map((s) => s.id));
    for (const id of [...this.firstSeen.keys()]) {
      if (!present.has(id)) {
        this.firstSeen.delete(id);
        this.stale.delete(id);
      }
    }
    for (const server of servers) {
      if (!this.firstSeen.has(server.id)) this.firstSeen.set(server.id, now);
      const interval = pollIntervalMs(server.pollSchedule);
      if (interval === null) continue;
      const since = server.lastSuccess ? Date.parse(server.lastSuccess) : this.firstSeen.get(server.id)!;
      const limitMs = STALE_AFTER_INTERVALS * interval;
      const isStale = now - since > limitMs;
      if (isStale && !this.stale.has(server.id)) {
        this.stale.add(server.id);
        this.log.warn(
          { server: server.id, lastSuccess: server.lastSuccess, staleAfterSeconds: limitMs / 1000 },
          `${server.id} is stale: no successful poll for ${STALE_AFTER_INTERVALS}× its poll interval`,
        );
      } else if (!isStale && this.stale.has(server.id)) {
        this.stale.delete(server.id);
        this.log.info(
          { server: server.id, lastSuccess: server.lastSuccess },
          `${server.id} recovered: polled successfully again`,
        );
      }
    }
  }
}
