/** Retry delays: exponential with jitter, a server's hint honoured as a floor but never beyond an hour. */
import { pino } from 'pino';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MailError } from '../../../src/adapters/connection.js';
import type { ServerConfig } from '../../../src/plan/model.js';
import { backoffDelay, BACKOFF_CAP_MS, MAX_HINT_MS } from '../../../src/runtime/loops/backoff.js';
import { SupervisedLoop } from '../../../src/runtime/loops/loop.js';
import type { LoopRecorder } from '../../../src/runtime/loops/recorder.js';

const half = () => 0.5;

test('exponential up to the cap; a hint is a floor', () => {
  assert.is(backoffDelay(1, undefined, half), 750);
  assert.is(backoffDelay(3, undefined, half), 3000);
  assert.is(backoffDelay(30, undefined, half), 0.75 * BACKOFF_CAP_MS);
  assert.is(backoffDelay(1, 92_415, half), 92_415, 'Suggested Backoff Time: 92415 milliseconds');
  assert.is(backoffDelay(1, 20 * 60_000, half), 20 * 60_000, 'above the cap: the server asked for it');
});

test('a hint is clamped to an hour: a timer above 2^31 − 1 ms would fire at once', () => {
  for (const hint of [3_000_000 * 1000, 2 ** 31, 1e20, Infinity])
    assert.is(backoffDelay(1, hint, half), MAX_HINT_MS, `hint ${hint}`);
  assert.is(MAX_HINT_MS, 3_600_000);
  for (const hint of [NaN, -5, 0]) assert.is(backoffDelay(1, hint, half), 750, `hint ${hint}`);
});

/** A loop whose every session fails, throttled with a huge hint (as a 429 with `Retry-After: 3000000` would). */
class ThrottledLoop extends SupervisedLoop {
  sessions = 0;
  protected session(): Promise<void> {
    this.sessions += 1;
    return Promise.reject(new MailError('throttled', 'slow down', { retryAfterMs: 3_000_000 * 1000 }));
  }
}

test('a loop told to wait 3,000,000 s waits (an hour) instead of retrying at once', async () => {
  const recorder: LoopRecorder = {
    loopCreated: () => undefined,
    loopRestarted: () => undefined,
    pollFinished: () => undefined,
    messagesDelivered: () => undefined,
    messagesQuarantined: () => undefined,
    outboundMessage: () => undefined,
  };
  const config = { spec: { type: 'smtp' } } as unknown as ServerConfig;
  const loop = new ThrottledLoop('smtp/a', config, pino({ level: 'silent' }), recorder);
  loop.start();
  await new Promise((r) => setTimeout(r, 300));
  const { sessions } = loop;
  await loop.stop();
  assert.is(sessions, 1, 'one session, then the wait');
  assert.is(loop.status().lastError?.class, 'throttled');
});

test.run();
