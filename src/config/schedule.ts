/**
 * Everything about cron expressions in one place (the only module that uses node-cron): checking a `pollSchedule`,
 * how often it fires, and running something at the times it selects.
 */
import { createTask, schedule, validateDetailed } from 'node-cron';

/** Polling more often than this only adds load on the mail server; IDLE already reports new mail at once. */
export const MIN_POLL_INTERVAL_SECONDS = 10;

export type ScheduleProblem = { code: 'poll-schedule-invalid' | 'poll-schedule-too-frequent'; message: string };

/** The second-of-minute values a 6-field expression's first field selects (undefined for 5 fields or macros). */
function secondsSelected(expression: string): number[] | undefined {
  const fields = expression.trim().split(/\s+/);
  if (fields.length !== 6) return undefined;
  const selected = new Set<number>();
  for (const token of fields[0]!.split(',')) {
    const [range = '*', stepText] = token.split('/');
    const step = stepText === undefined ? 1 : Number(stepText);
    const [from, upTo] = range === '*' ? [0, 59] : (range.split('-').map(Number) as [number, number | undefined]);
    const to = upTo ?? (stepText === undefined ? from : 59);
    for (let s = from; s <= to; s += step) selected.add(s);
  }
  return [...selected].sort((a, b) => a - b);
}

/** Smallest gap in seconds between two firings, as far as the seconds field decides it. */
export function shortestIntervalSeconds(expression: string): number {
  const seconds = secondsSelected(expression);
  if (!seconds || seconds.length <= 1) return 60;
  let gap = 60 - seconds.at(-1)! + seconds[0]!;
  for (let i = 1; i < seconds.length; i++) gap = Math.min(gap, seconds[i]! - seconds[i - 1]!);
  return gap;
}

/** Folders repeat a handful of schedules thousands of times; node-cron's validation is the costly part. */
const checked = new Map<string, ScheduleProblem | null>();
const CACHE_LIMIT = 1000;

export function checkPollSchedule(expression: string): ScheduleProblem | null {
  const cached = checked.get(expression);
  if (cached !== undefined) return cached;
  const problem = checkUncached(expression);
  if (checked.size >= CACHE_LIMIT) checked.clear();
  checked.set(expression, problem);
  return problem;
}

function checkUncached(expression: string): ScheduleProblem | null {
  const result = validateDetailed(expression);
  if (!result.valid) {
    const reasons = (result.errors ?? [])
      .map((e: { message?: string } | string) => (typeof e === 'string' ? e : e.message))
      .filter(Boolean);
    const why = reasons.length ? `: ${reasons.join('; ')}` : '';
    return {
      code: 'poll-schedule-invalid',
      message: `pollSchedule "${expression}" is not a valid cron expression${why} (5 fields, or 6 with seconds first)`,
    };
  }
  const interval = shortestIntervalSeconds(expression);
  if (interval < MIN_POLL_INTERVAL_SECONDS) {
    return {
      code: 'poll-schedule-too-frequent',
      message:
        `pollSchedule "${expression}" fires every ${interval} s; ` +
        `polls may be at most every ${MIN_POLL_INTERVAL_SECONDS} s (new mail is also noticed at once through IDLE)`,
    };
  }
  return null;
}

/** Runs of the schedule looked at: the largest gap among them is the interval (`0 9 * * 1-5` → 3 days). */
const RUNS_SAMPLED = 12;

const intervals = new Map<string, number | null>();

/** The longest gap between the next runs of a cron expression, in ms; null if node-cron cannot parse it. */
export function pollIntervalMs(expression: string): number | null {
  if (intervals.has(expression)) return intervals.get(expression)!;
  let interval: number | null = null;
  try {
    const task = createTask(expression, () => undefined);
    const runs = task.getNextRuns(RUNS_SAMPLED).map((d) => d.getTime());
    void task.destroy();
    for (let i = 1; i < runs.length; i++) interval = Math.max(interval ?? 0, runs[i]! - runs[i - 1]!);
  } catch {
    interval = null;
  }
  intervals.set(expression, interval);
  return interval;
}

/** Calls `fire` at every time `expression` selects, until `stop()`. */
export function runOnSchedule(expression: string, name: string, fire: () => void): { stop(): void } {
  const task = schedule(expression, fire, { name });
  return { stop: () => void task.destroy() };
}
