/** The checkpoint file: compact, the untried backfill stored as UID ranges, everything else as it was. */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  CHECKPOINT_FORMAT_VERSION,
  expandUidRanges,
  listCheckpoints,
  loadCheckpoint,
  saveCheckpoint,
  uidRanges,
  type Checkpoint,
} from '../../../src/store/file/checkpoint.js';

test('UID ranges: runs collapse, single UIDs stay, and expand back', () => {
  assert.is(uidRanges([1, 2, 3, 7, 9, 10]), '1:3,7,9:10');
  assert.is(uidRanges([]), '');
  assert.equal(expandUidRanges('1:3,7,9:10'), [1, 2, 3, 7, 9, 10]);
  assert.equal(expandUidRanges(''), []);
});

test('a backfill of 5,000 is stored as one range; retries, released and failed entries keep their details', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'mailctl-cp-'));
  try {
    const file = path.join(dir, 'inbound', 'imap_x.json');
    const pending: Checkpoint['pending'] = {};
    for (let uid = 1; uid <= 5000; uid++) pending[uid] = { attempts: 0, nextAttemptAt: 0 };
    pending[42] = { attempts: 2, nextAttemptAt: 99, lastError: 'disk' };
    pending[43] = { attempts: 0, nextAttemptAt: 0, copied: true };
    const cp: Checkpoint = {
      formatVersion: CHECKPOINT_FORMAT_VERSION,
      server: 'imap/x',
      identity: 'id',
      folder: 'INBOX',
      uidValidity: '7',
      lastUid: 5000,
      pending,
      copyIntent: null,
      quarantined: {},
      updatedAt: '',
    };
    await saveCheckpoint(file, cp);
    const text = await readFile(file, 'utf8');
    assert.ok(text.length < 600, `small: ${text.length} bytes`);
    assert.is(text.trim().split('\n').length, 1, 'compact');
    assert.is(JSON.parse(text).backlog, '1:41,44:5000');
    const loaded = await loadCheckpoint(file, 'id', 'INBOX');
    assert.equal(loaded!.pending, pending);
    assert.equal((await listCheckpoints(dir))[0]!.checkpoint.pending, pending);
    for (const uid of Object.keys(pending)) delete pending[uid];
    await saveCheckpoint(file, cp);
    assert.not.ok('backlog' in JSON.parse(await readFile(file, 'utf8')), 'no backlog once it is done');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test.run();
