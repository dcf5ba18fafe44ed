import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { PollClock } from '../../../src/runtime/loops/poll-clock.js';

const EVERY_SECOND = '* * * * * *';
const waitFor = async (done: () => boolean, ms = 5_000) => {
  for (const end = Date.now() + ms; !done();) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
};

test('loops on the same schedule share one task and all fire; the task ends with its last subscriber', async () => {
  const clock = new PollClock();
  const fired = { a: 0, b: 0, c: 0 };
  const offA = clock.subscribe(EVERY_SECOND, () => fired.a++);
  const offB = clock.subscribe(EVERY_SECOND, () => fired.b++);
  const offC = clock.subscribe('0 0 1 1 *', () => fired.c++);
  assert.is(clock.size, 2, 'one task per distinct expression');
  await waitFor(() => fired.a > 0 && fired.b > 0);
  offA();
  offA(); // twice is harmless
  const before = fired.a;
  await waitFor(() => fired.b > 1);
  assert.is(fired.a, before, 'an unsubscribed loop is not called');
  assert.is(clock.size, 2);
  offB();
  offC();
  assert.is(clock.size, 0, 'no task left running');
  const again = clock.subscribe(EVERY_SECOND, () => fired.c++);
  offB(); // a stale unsubscribe does not end the new task
  assert.is(clock.size, 1);
  again();
  assert.is(fired.c, 0);
});

test.run();
