import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BATCH_SIZE, batchSizeAt } from '../../../src/runtime/inbound/processor.js';

test('a poll starts with a small batch and doubles up to the batch size, then stays there', () => {
  assert.equal(
    [0, 1, 2, 3, 4].map((i) => batchSizeAt(i, BATCH_SIZE)),
    [25, 50, 100, 100, 100],
  );
  assert.equal(
    [0, 1, 2].map((i) => batchSizeAt(i, 20)),
    [20, 20, 20],
    'never above a smaller configured size',
  );
  assert.is(batchSizeAt(10_000, 500), 500, 'no overflow in a long poll');
});

test.run();
