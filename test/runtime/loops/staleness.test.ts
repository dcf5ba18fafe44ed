/** The staleness watchdog: interval from the cron expression, one log line going stale and one recovering. */
import { pino } from 'pino';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { pollIntervalMs } from '../../../src/config/schedule.js';
import { StalenessWatchdog } from '../../../src/runtime/loops/staleness.js';

test('the poll interval is the longest gap between the next runs', () => {
  assert.is(pollIntervalMs('* * * * * *'), 1000);
  assert.is(pollIntervalMs('*/30 * * * * *'), 30_000);
  assert.is(pollIntervalMs('*/5 * * * *'), 5 * 60_000);
  assert.is(pollIntervalMs('0 9 * * 1-5'), 3 * 86_400_000, 'Friday to Monday');
  assert.is(pollIntervalMs('not a cron'), null);
});

test('stale after 3× the interval, one line each way, never repeated', () => {
  const lines: { level: number; msg: string; server: string }[] = [];
  const log = pino({ level: 'info' }, { write: (l: string) => void lines.push(JSON.parse(l)) });
  let now = Date.parse('2026-01-01T00:00:00Z');
  const dog = new StalenessWatchdog(log, () => now);
  const at = (ms: number) => new Date(ms).toISOString();
  const server = (lastSuccess: string | null) => [{ id: 'imap/a', pollSchedule: '*/30 * * * * *', lastSuccess }];

  dog.check(server(null)); // first seen now; never succeeded
  now += 89_000;
  dog.check(server(null));
  assert.is(dog.staleIds.size, 0, 'not yet: 89 s < 90 s');
  now += 2_000;
  for (let i = 0; i < 5; i++) dog.check(server(null));
  assert.ok(dog.staleIds.has('imap/a'));
  const success = now;
  now += 1_000;
  dog.check(server(at(success)));
  dog.check(server(at(success)));
  assert.is(dog.staleIds.size, 0);
  now = success + 91_000;
  dog.check(server(at(success)));
  assert.equal(
    lines.map((l) => [l.level, l.server]),
    [
      [40, 'imap/a'],
      [30, 'imap/a'],
      [40, 'imap/a'],
    ],
  );
  assert.match(lines[0]!.msg, /imap\/a is stale/);
  assert.match(lines[1]!.msg, /imap\/a recovered/);

  dog.check([]); // removed from the config: forgotten, silently
  assert.is(dog.staleIds.size, 0);
  assert.is(lines.length, 3);
});

test.run();
