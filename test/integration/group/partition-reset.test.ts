/** A replica cut off from PostgreSQL by a proxy that resets (partition.ts). */
import { test } from 'uvu';
import { partitionTest } from './partition.js';

test('a partition between one replica and PostgreSQL (reset): it stops, the others take over, it rejoins', () =>
  partitionTest('reset'));

test.run();
