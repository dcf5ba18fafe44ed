/**
 * Each server's deliveries (IMAP) or sends (SMTP) per minute over the last hour, in memory, for the status page's
 * small charts. A ring of 60 minute buckets per server: fixed memory whatever the traffic.
 */
import type { LoopRecorder } from '../loops/recorder.js';

export const ACTIVITY_MINUTES = 60;

interface Ring {
  /** The minute (since the epoch) each bucket holds. */
  minutes: number[];
  counts: number[];
}

export class ActivityHistory {
  private readonly rings = new Map<string, Ring>();

  constructor(private readonly now: () => number = Date.now) {}

  add(server: string, count: number): void {
    if (count <= 0) return;
    const minute = Math.floor(this.now() / 60_000);
    let ring = this.rings.get(server);
    if (!ring)
      this.rings.set(
        server,
        (ring = {
          minutes: new Array<number>(ACTIVITY_MINUTES).fill(-1),
          counts: new Array<number>(ACTIVITY_MINUTES).fill(0),
        }),
      );
    const slot = minute % ACTIVITY_MINUTES;
    if (ring.minutes[slot] !== minute) {
      ring.minutes[slot] = minute;
      ring.counts[slot] = 0;
    }
    ring.counts[slot]! += count;
  }

  /** The minutes of the last hour with activity, as `[minutes ago, count]` pairs (0 = this minute). */
  lastHour(server: string): [number, number][] {
    const ring = this.rings.get(server);
    if (!ring) return [];
    const minute = Math.floor(this.now() / 60_000);
    const out: [number, number][] = [];
    for (let slot = 0; slot < ACTIVITY_MINUTES; slot++) {
      const ago = minute - ring.minutes[slot]!;
      if (ago >= 0 && ago < ACTIVITY_MINUTES && ring.counts[slot]! > 0) out.push([ago, ring.counts[slot]!]);
    }
    return out.sort((a, b) => a[0] - b[0]);
  }
}

/** A recorder that also counts deliveries and sends into `history`, then reports everything to `next`. */
export function recordingActivity(next: LoopRecorder, history: ActivityHistory): LoopRecorder {
  return {
    loopCreated: (server, type) => next.loopCreated(server, type),
    loopRestarted: (server) => next.loopRestarted(server),
    pollFinished: (server, ok, seconds) => next.pollFinished(server, ok, seconds),
    messagesQuarantined: (server, count) => next.messagesQuarantined(server, count),
    messagesDelivered(server, count) {
      history.add(server, count);
      next.messagesDelivered(server, count);
    },
    outboundMessage(server, outcome) {
      if (outcome === 'sent') history.add(server, 1);
      next.outboundMessage(server, outcome);
    },
  };
}
