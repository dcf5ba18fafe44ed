/** A replica cut off from PostgreSQL by a proxy that stops forwarding without closing (partition.ts). */
import { test } from 'uvu';
import { partitionTest } from './partition.js';

test('a partition between one replica and PostgreSQL (blackhole): it stops, the others take over, it rejoins', () =>
  partitionTest('blackhole'));

test.run();
