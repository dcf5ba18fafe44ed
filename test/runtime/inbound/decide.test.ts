/** decideBatch without a server: what a delivered batch means for the checkpoint, the copy intent and the outcome. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { decideBatch, MAX_ATTEMPTS, retryDelayMs, settle, type Delivery } from '../../../src/runtime/inbound/decide.js';
import { CHECKPOINT_FORMAT_VERSION, type Checkpoint } from '../../../src/store/ports.js';

const NOW = Date.parse('2026-12-01T10:00:00Z');

const checkpoint = (over: Partial<Checkpoint> = {}): Checkpoint => ({
  formatVersion: CHECKPOINT_FORMAT_VERSION,
  server: 'imap/support',
  identity: 'id',
  folder: 'INBOX',
  uidValidity: '7',
  lastUid: 10,
  pending: {},
  copyIntent: null,
  quarantined: {},
  updatedAt: '',
  ...over,
});

const delivery = (over: Partial<Delivery> & { uids: number[] }): Delivery => ({
  present: new Set(over.uids),
  delivered: [],
  duplicates: [],
  quarantine: [],
  failed: new Map(),
  messageIds: {},
  ledgerEntries: [],
  ...over,
});

const decide = (cp: Checkpoint, d: Delivery, extra: { maxFresh?: number; sinkWasDown?: boolean } = {}) =>
  decideBatch({
    checkpoint: cp,
    delivery: d,
    storageFolder: 'Storage',
    maxFresh: extra.maxFresh ?? Math.max(...d.uids),
    sinkWasDown: extra.sinkWasDown ?? false,
    now: NOW,
    keyOf: (uid) => `support.7.${uid}.abcd1234`,
  });

const failure = (error = 'disk said no', sinkDown = false) => ({ error, sinkDown, messageId: null });

interface Row {
  name: string;
  cp: Checkpoint;
  d: Delivery;
  sinkWasDown?: boolean;
  maxFresh?: number;
  expect: {
    intent: { uids: number[]; seen: number[]; flag: number[]; advanceTo: number } | null;
    lastUid: number;
    pending: Record<string, { attempts: number; nextAttemptAt: number } | undefined>;
    quarantined: number[];
    sinkDown: boolean;
  };
}

const rows: Row[] = [
  {
    name: 'all delivered: copied and \\Seen, the watermark moves to the top of the batch',
    cp: checkpoint(),
    d: delivery({ uids: [11, 12], delivered: [11, 12] }),
    expect: {
      intent: { uids: [11, 12], seen: [11, 12], flag: [], advanceTo: 12 },
      lastUid: 10,
      pending: {},
      quarantined: [],
      sinkDown: false,
    },
  },
  {
    name: 'one failure among deliveries: retried with backoff, the rest goes on',
    cp: checkpoint(),
    d: delivery({ uids: [11, 12], delivered: [11], failed: new Map([[12, failure()]]) }),
    expect: {
      intent: { uids: [11], seen: [11], flag: [], advanceTo: 12 },
      lastUid: 10,
      pending: { 12: { attempts: 1, nextAttemptAt: NOW + retryDelayMs(1) } },
      quarantined: [],
      sinkDown: false,
    },
  },
  {
    name: `the ${MAX_ATTEMPTS}th failure quarantines: copied once, \\Seen \\Flagged, out of the retry set`,
    cp: checkpoint({ pending: { 7: { attempts: MAX_ATTEMPTS - 1, nextAttemptAt: 0 } } }),
    d: delivery({ uids: [7, 11], delivered: [11], failed: new Map([[7, failure()]]) }),
    expect: {
      intent: { uids: [7, 11], seen: [11], flag: [7], advanceTo: 11 },
      lastUid: 10,
      pending: {},
      quarantined: [7],
      sinkDown: false,
    },
  },
  {
    name: 'every message failed because of the sink: no attempt counted, nothing on the server',
    cp: checkpoint({ pending: { 7: { attempts: 2, nextAttemptAt: 0 } } }),
    d: delivery({
      uids: [7, 11],
      failed: new Map([
        [7, failure('ENOSPC', true)],
        [11, failure('ENOSPC', true)],
      ]),
    }),
    expect: {
      intent: null,
      lastUid: 11,
      pending: { 7: { attempts: 2, nextAttemptAt: 0 }, 11: { attempts: 0, nextAttemptAt: 0 } },
      quarantined: [],
      sinkDown: true,
    },
  },
  {
    name: 'a single failure after the sink was down is the sink again (a probe)',
    cp: checkpoint(),
    d: delivery({ uids: [11], failed: new Map([[11, failure('refused')]]) }),
    sinkWasDown: true,
    maxFresh: 11,
    expect: {
      intent: null,
      lastUid: 11,
      pending: { 11: { attempts: 0, nextAttemptAt: 0 } },
      quarantined: [],
      sinkDown: true,
    },
  },
  {
    name: 'a permanent refusal quarantines at once and is never the sink being down',
    cp: checkpoint(),
    d: delivery({
      uids: [11, 12],
      quarantine: [{ uid: 11, messageId: '<a@x>', reason: 'rejected', detail: 'HTTP 422' }],
      failed: new Map([[12, failure('HTTP 503')]]),
    }),
    expect: {
      intent: { uids: [11], seen: [], flag: [11], advanceTo: 12 },
      lastUid: 10,
      pending: { 12: { attempts: 1, nextAttemptAt: NOW + retryDelayMs(1) } },
      quarantined: [11],
      sinkDown: false,
    },
  },
  {
    name: 'a released message is delivered without being copied again',
    cp: checkpoint({ pending: { 5: { attempts: 0, nextAttemptAt: 0, copied: true } } }),
    d: delivery({ uids: [5], delivered: [5] }),
    maxFresh: 10,
    expect: {
      intent: { uids: [], seen: [5], flag: [], advanceTo: 10 },
      lastUid: 10,
      pending: { 5: { attempts: 0, nextAttemptAt: 0 } },
      quarantined: [],
      sinkDown: false,
    },
  },
  {
    name: 'duplicates after a recreated mailbox: only \\Seen, never copied',
    cp: checkpoint({ lastUid: 0, recheckBelow: 5 }),
    d: delivery({ uids: [1, 2], duplicates: [1], delivered: [2] }),
    expect: {
      intent: { uids: [2], seen: [1, 2], flag: [], advanceTo: 2 },
      lastUid: 0,
      pending: {},
      quarantined: [],
      sinkDown: false,
    },
  },
  {
    name: 'a pending message expunged by another client leaves the retry set',
    cp: checkpoint({ pending: { 3: { attempts: 1, nextAttemptAt: 0 } } }),
    d: delivery({ uids: [3, 11], present: new Set([11]), delivered: [11] }),
    expect: {
      intent: { uids: [11], seen: [11], flag: [], advanceTo: 11 },
      lastUid: 10,
      pending: {},
      quarantined: [],
      sinkDown: false,
    },
  },
  {
    name: 'the watermark never passes messages not yet looked at (maxFresh below the batch)',
    cp: checkpoint(),
    d: delivery({ uids: [11, 12], delivered: [11, 12] }),
    maxFresh: 11,
    expect: {
      intent: { uids: [11, 12], seen: [11, 12], flag: [], advanceTo: 11 },
      lastUid: 10,
      pending: {},
      quarantined: [],
      sinkDown: false,
    },
  },
];

for (const row of rows) {
  test(row.name, () => {
    const before = structuredClone(row.cp);
    const decision = decide(row.cp, row.d, {
      ...(row.maxFresh !== undefined && { maxFresh: row.maxFresh }),
      ...(row.sinkWasDown !== undefined && { sinkWasDown: row.sinkWasDown }),
    });
    assert.equal(row.cp, before, 'the input checkpoint is not changed');
    const intent = decision.intent && {
      uids: decision.intent.uids,
      seen: decision.intent.seen,
      flag: decision.intent.flag,
      advanceTo: decision.intent.advanceTo,
    };
    assert.equal(intent, row.expect.intent);
    assert.equal(decision.checkpoint.copyIntent, decision.intent, 'the checkpoint records exactly the intent');
    assert.is(decision.checkpoint.lastUid, row.expect.lastUid);
    const pending = Object.fromEntries(
      Object.entries(decision.checkpoint.pending).map(([uid, p]) => [
        uid,
        { attempts: p.attempts, nextAttemptAt: p.nextAttemptAt },
      ]),
    );
    assert.equal(pending, row.expect.pending);
    assert.equal(Object.keys(decision.checkpoint.quarantined).map(Number), row.expect.quarantined);
    assert.is(decision.outcome.sinkDown !== null, row.expect.sinkDown);
  });
}

test('a quarantine record carries the key, reason, detail, Message-ID and attempts', () => {
  const cp = checkpoint({ pending: { 7: { attempts: MAX_ATTEMPTS - 1, nextAttemptAt: 0 } } });
  const d = delivery({ uids: [7], failed: new Map([[7, { error: 'HTTP 500', sinkDown: false, messageId: '<p@x>' }]]) });
  const { checkpoint: after, notes } = decide(cp, d);
  assert.equal(after.quarantined[7], {
    key: 'support.7.7.abcd1234',
    reason: 'failed',
    detail: `failed ${MAX_ATTEMPTS} times; last error: HTTP 500`,
    at: new Date(NOW).toISOString(),
    messageId: '<p@x>',
    attempts: MAX_ATTEMPTS,
  });
  assert.equal(notes, [
    {
      kind: 'quarantined',
      uid: 7,
      key: 'support.7.7.abcd1234',
      reason: 'failed',
      detail: after.quarantined[7]!.detail,
    },
  ]);
});

test('settle: the intent carried out clears it, advances the watermark and empties the retries it covered', () => {
  const cp = checkpoint({ pending: { 11: { attempts: 1, nextAttemptAt: 0 }, 20: { attempts: 1, nextAttemptAt: 0 } } });
  const { checkpoint: after } = decide(cp, delivery({ uids: [11, 12], delivered: [11, 12] }));
  settle(after, after.copyIntent!);
  assert.is(after.copyIntent, null);
  assert.is(after.lastUid, 12);
  assert.equal(Object.keys(after.pending), ['20']);
});

test('a previous intent still in flight is a programming error', () => {
  const cp = checkpoint({ copyIntent: { storageFolder: 'S', uids: [1], messageIds: {}, advanceTo: 1 } });
  assert.throws(() => decide(cp, delivery({ uids: [11], delivered: [11] })), /still in flight/);
});

test('retry backoff doubles from 2 s and stops at 5 minutes', () => {
  assert.equal([1, 2, 3, 8, 9, 30].map(retryDelayMs), [2000, 4000, 8000, 256_000, 300_000, 300_000]);
});

test.run();
