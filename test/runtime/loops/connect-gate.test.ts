/** The connect gate: loops connect in waves of at most `limit`, every one gets its turn, a stopped loop leaves the queue. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ConnectGate } from '../../../src/runtime/loops/connect-gate.js';
import type { BurstObserver } from '../../../src/runtime/loops/memory.js';

const tick = () => new Promise((r) => setTimeout(r, 1));

test('never more than the limit at once, and all of them run', async () => {
  const gate = new ConnectGate(3);
  const signal = new AbortController().signal;
  let active = 0;
  let peak = 0;
  const done: number[] = [];
  await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      gate.run(async () => {
        peak = Math.max(peak, ++active);
        await tick();
        active--;
        done.push(i);
      }, signal),
    ),
  );
  assert.is(peak, 3);
  assert.is(done.length, 20);
});

test('a failed connect frees its slot', async () => {
  const gate = new ConnectGate(1);
  const signal = new AbortController().signal;
  await gate
    .run(async () => {
      throw new Error('refused');
    }, signal)
    .catch(() => undefined);
  assert.is(await gate.run(async () => 'next', signal), 'next');
});

test('a loop stopped while waiting leaves the queue; the others keep their turn', async () => {
  const gate = new ConnectGate(1);
  const free = new AbortController().signal;
  let release!: () => void;
  const first = gate.run(() => new Promise<void>((r) => (release = r)), free);
  const stop = new AbortController();
  const waiting = gate.run(async () => 'ran', stop.signal);
  const third = gate.run(async () => 'third', free);
  stop.abort(new Error('stopped'));
  await waiting.then(
    () => assert.unreachable('ran after abort'),
    (err: Error) => assert.is(err.message, 'stopped'),
  );
  release();
  await first;
  assert.is(await third, 'third');
  await gate
    .run(async () => undefined, stop.signal)
    .then(
      () => assert.unreachable('already aborted'),
      () => undefined,
    );
});

test('the observer hears when a burst starts and how many connections it had when the gate is idle again', async () => {
  const events: string[] = [];
  const observer: BurstObserver = { busy: () => events.push('busy'), idle: (n) => events.push(`idle ${n}`) };
  const gate = new ConnectGate(2, observer);
  const signal = new AbortController().signal;
  await Promise.all(
    Array.from({ length: 5 }, (_, i) =>
      gate.run(async () => (i === 3 ? Promise.reject(new Error('refused')) : tick()), signal).catch(() => undefined),
    ),
  );
  await gate.run(tick, signal);
  assert.equal(events, ['busy', 'idle 5', 'busy', 'idle 1']);
});

test.run();
