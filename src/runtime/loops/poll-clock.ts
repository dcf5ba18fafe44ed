/**
 * The poll schedules of all IMAP loops: one node-cron task per distinct `pollSchedule`, shared by every loop that uses
 * it. A task costs ~4 KB (measured), and a thousand loops on the default schedule need one instead of a thousand. The
 * loops fire when they would with a task each: cron times are the same for everyone who uses an expression.
 */
import { runOnSchedule } from '../../config/schedule.js';

interface SharedSchedule {
  task: { stop(): void };
  listeners: Set<() => void>;
}

export class PollClock {
  private readonly schedules = new Map<string, SharedSchedule>();

  /** Calls `listener` at every time `expression` selects until the returned function is called. */
  subscribe(expression: string, listener: () => void): () => void {
    let shared = this.schedules.get(expression);
    if (!shared) {
      const listeners = new Set<() => void>();
      shared = {
        task: runOnSchedule(expression, `poll ${expression}`, () => listeners.forEach((fire) => fire())),
        listeners,
      };
      this.schedules.set(expression, shared);
    }
    const entry = shared;
    entry.listeners.add(listener);
    return () => {
      entry.listeners.delete(listener);
      if (entry.listeners.size > 0 || this.schedules.get(expression) !== entry) return;
      this.schedules.delete(expression);
      entry.task.stop();
    };
  }

  /** Distinct schedules with a task (for tests). */
  get size(): number {
    return this.schedules.size;
  }
}
