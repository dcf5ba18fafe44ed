/** Memory given back after a burst of connections: one full GC, only after a large burst has been quiet for a while. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { EventLoopUtilization } from 'node:perf_hooks';
import v8 from 'node:v8';
import { BurstGarbageRelease, fullGc } from '../../../src/runtime/loops/memory.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `busyShares`: the event loop's utilization reported for each successive window (quiet once they run out). */
function counting(threshold: number, quietMs = 30, busyShares: number[] = []) {
  const runs: number[] = [];
  const shares = [...busyShares];
  const utilization = (since?: EventLoopUtilization) => ({
    idle: 0,
    active: 0,
    utilization: since ? (shares.shift() ?? 0) : 0,
  });
  const release = new BurstGarbageRelease({
    threshold,
    quietMs,
    collect: () => undefined,
    utilization,
    onReleased: ({ connections }) => runs.push(connections),
  });
  return { release, runs };
}

test('a large burst is followed by one collection once it has been quiet', async () => {
  const { release, runs } = counting(100);
  release.busy();
  release.idle(150);
  assert.equal(runs, []);
  await sleep(200);
  assert.equal(runs, [150]);
});

test('small bursts are left to V8 until together they make a large one', async () => {
  const { release, runs } = counting(100);
  for (let i = 0; i < 3; i++) {
    release.busy();
    release.idle(40);
    await sleep(120);
    assert.equal(runs, i < 2 ? [] : [120]);
  }
});

test('a new burst postpones the collection until it ends too', async () => {
  const { release, runs } = counting(100);
  release.busy();
  release.idle(100);
  await sleep(10);
  release.busy();
  await sleep(60);
  assert.equal(runs, [], 'not while connections are being opened');
  release.idle(5);
  await sleep(200);
  assert.equal(runs, [105]);
});

test('while the daemon stays busy after the burst (first polls), the collection waits for a quiet window', async () => {
  const { release, runs } = counting(100, 30, [0.9, 0.5]);
  release.busy();
  release.idle(200);
  await sleep(75);
  assert.equal(runs, [], 'two busy windows');
  await sleep(200);
  assert.equal(runs, [200]);
});

test('a daemon that never goes quiet gets the collection after five windows', async () => {
  const { release, runs } = counting(100, 20, [1, 1, 1, 1, 1, 1, 1]);
  release.busy();
  release.idle(100);
  await sleep(70);
  assert.equal(runs, []);
  await sleep(250);
  assert.equal(runs, [100]);
});

test('fullGc collects garbage that survived into the old generation, and gives its pages back (compacting)', async () => {
  const oldSpace = () => v8.getHeapSpaceStatistics().find((space) => space.space_name === 'old_space')!.space_size;
  // every 16th object stays alive: without compaction, nearly every page of the old generation would be kept
  const live: object[] = [];
  let garbage: object[] | null = Array.from({ length: 800_000 }, (_, n) => {
    const item = { n, s: `item ${n}` };
    if (n % 16 === 0) live.push(item);
    return item;
  });
  await sleep(50); // promoted by the scavenges of the allocation above
  const before = { used: process.memoryUsage().heapUsed, old: oldSpace() };
  assert.ok(garbage.length > 0);
  // eslint-disable-next-line no-useless-assignment -- dropping the only reference is what makes it garbage
  garbage = null;
  fullGc();
  const freed = before.used - process.memoryUsage().heapUsed;
  assert.ok(freed > 20 * 1048576, `freed ${Math.round(freed / 1048576)} MiB`);
  // measured: 55 → 7 MiB compacting, 55 → 41-46 MiB without
  assert.ok(
    oldSpace() < before.old / 3,
    `old generation ${Math.round(before.old / 1048576)} → ${Math.round(oldSpace() / 1048576)} MiB`,
  );
  assert.ok(live.length > 0);
});

test.run();
