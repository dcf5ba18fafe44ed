/** Text the daemon did not write is kept at most 1 KiB wherever it is stored or shown. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { capText, MAX_STORED_TEXT_BYTES } from '../../src/adapters/text.js';

test('short text is kept as it is; long text is cut to 1 KiB of UTF-8, ending in …', () => {
  assert.is(MAX_STORED_TEXT_BYTES, 1024);
  assert.is(capText('250 OK'), '250 OK');
  const exact = 'x'.repeat(1024);
  assert.is(capText(exact), exact, 'exactly 1 KiB');
  const cut = capText('y'.repeat(1_000_000));
  assert.is(Buffer.byteLength(cut), 1024);
  assert.ok(cut.endsWith('…'));
});

test('a character is never cut in two', () => {
  for (const text of ['ä'.repeat(2000), '😀'.repeat(1000), `a${'€'.repeat(1000)}`]) {
    const cut = capText(text);
    assert.ok(Buffer.byteLength(cut) <= 1024, text.slice(0, 5));
    assert.not.ok(cut.includes('\uFFFD'), 'no replacement character');
    assert.ok(text.startsWith(cut.slice(0, -1)), 'a prefix of the text');
  }
});

test.run();
