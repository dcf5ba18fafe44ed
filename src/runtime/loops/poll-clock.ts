/**
 * The poll schedules of all IMAP loops: one node-cron task per distinct `pollSchedule`, shared by every loop that uses
 * it. A task costs ~4 KB (measured), and a thousand loops on the default schedule need one instead of a thousand. The
 * loops fire when they would with a task each: cron times are the same for everyone who uses an expression.
 */
import { schedule, type ScheduledTask } from 'node-cron';

interface SharedSchedule {
  task: ScheduledTask;
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
        task: schedule(expression, () => listeners.forEach((fire) => fire()), { name: `poll ${expression}` }),
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
      void entry.task.destroy();
    };
  }

  /** Distinct schedules with a task (for tests). */
  get size(): number {
    return this.schedules.size;
  }
}
