/**
 * Getting ready for a takeover (takeover.ts): a member silent past its due renewal is noticed once, a member heard
 * from in time never is; sessions are opened for exactly the wanted IMAP servers, handed over only with the
 * configuration they were opened with, and every one not handed over is closed, also one that was still opening.
 */
import pino from 'pino';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { ServerConfig } from '../../../src/plan/model.js';
import type { OpenedImap } from '../../../src/runtime/loops/imap-loop.js';
import { isOverdue, OVERDUE_MARGIN_MS, PreparedSessions, SilenceWatch } from '../../../src/runtime/group/takeover.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** A TTL whose third is 100 ms: a member is overdue 100 ms + the margin after its last heartbeat. */
const TTL_S = 0.3;
const DUE_MS = 100 + OVERDUE_MARGIN_MS;

test('overdue: silent for longer than a third of its TTL and the margin', () => {
  assert.not.ok(isOverdue({ id: 'b', silentS: 5, ttlS: 15 }), 'its renewal is due just now');
  assert.not.ok(isOverdue({ id: 'b', silentS: 5.9, ttlS: 15 }), 'a slow heartbeat is within the margin');
  assert.ok(isOverdue({ id: 'b', silentS: 6.1, ttlS: 15 }));
});

test('a member heard from in time is never overdue; one that falls silent is noticed once', async () => {
  let noticed = 0;
  const watch = new SilenceWatch(() => noticed++);
  try {
    watch.saw([
      { id: 'b', silentS: 0, ttlS: TTL_S },
      { id: 'c', silentS: 0, ttlS: TTL_S },
    ]);
    for (let i = 0; i < 4; i++) {
      await sleep(DUE_MS / 2);
      watch.heard('b');
      watch.heard('c');
    }
    assert.is(noticed, 0, 'both spoke within every interval');
    // c falls silent, b goes on speaking
    for (let waited = 0; waited < 2 * DUE_MS; waited += DUE_MS / 4) {
      watch.heard('b');
      await sleep(DUE_MS / 4);
    }
    assert.is(noticed, 1, 'the silent one noticed, once: not again until a heartbeat says more');
  } finally {
    watch.stop();
  }
});

test('a member already overdue at a heartbeat, or gone from it, sets no timer', async () => {
  let noticed = 0;
  const watch = new SilenceWatch(() => noticed++);
  watch.saw([
    { id: 'b', silentS: 2, ttlS: TTL_S },
    { id: 'c', silentS: 0, ttlS: TTL_S },
  ]);
  watch.saw([{ id: 'b', silentS: 2, ttlS: TTL_S }]); // c left the group
  watch.heard('c'); // an announcement of a member no heartbeat listed is not armed
  await sleep(DUE_MS + 300);
  assert.is(noticed, 0);
  watch.stop();
});

/** openFor for the sessions' bookkeeping: it opens when told to, and records what is closed. */
function fakeSupervisor() {
  const pending = new Map<string, { resolve: (o: OpenedImap) => void; reject: (e: Error) => void }>();
  const closed: string[] = [];
  const aborted: string[] = [];
  const opened = (id: string) =>
    ({ client: { usable: true, disconnect: async () => void closed.push(id) } }) as unknown as OpenedImap;
  return {
    pending,
    closed,
    aborted,
    openFor: (id: string, _config: unknown, signal: AbortSignal) => {
      signal.addEventListener('abort', () => aborted.push(id));
      return new Promise<OpenedImap>((resolve, reject) => pending.set(id, { resolve, reject }));
    },
    finish(id: string) {
      pending.get(id)!.resolve(opened(id));
      pending.delete(id);
    },
    fail(id: string) {
      pending.get(id)!.reject(new Error('login failed'));
      pending.delete(id);
    },
  };
}

const imap = (user: string): ServerConfig =>
  ({ spec: { type: 'imap', host: 'localhost', auth: { user } } }) as unknown as ServerConfig;
const smtp: ServerConfig = {
  spec: { type: 'smtp', host: 'localhost', auth: { user: 's' } },
} as unknown as ServerConfig;
const settle = () => sleep(5);

test('sessions are opened for the wanted IMAP servers and handed over only with the same configuration', async () => {
  const supervisor = fakeSupervisor();
  const sessions = new PreparedSessions({ supervisor, log: pino({ level: 'silent' }) });
  const a = imap('a');
  const b = imap('b');
  sessions.keep(
    new Map([
      ['imap/a', a],
      ['imap/b', b],
      ['smtp/s', smtp],
    ]),
  );
  assert.equal([...supervisor.pending.keys()], ['imap/a', 'imap/b'], 'an SMTP server has no session to prepare');
  sessions.keep(
    new Map([
      ['imap/a', a],
      ['imap/b', b],
    ]),
  );
  assert.is(supervisor.pending.size, 2, 'a session being opened is not opened twice');
  supervisor.finish('imap/a');
  supervisor.finish('imap/b');
  await settle();
  assert.ok(sessions.take('imap/a', a), 'handed over');
  assert.is(sessions.take('imap/a', a), undefined, 'once');
  assert.is(sessions.take('imap/b', imap('b')), undefined, 'not with another configuration');
  await settle();
  assert.equal(supervisor.closed, ['imap/b'], 'the useless one is closed, the handed-over one is not');
  assert.is(sessions.size, 0);
});

test('a session no longer wanted is closed, also one still opening (once it opens); a failed one is not retried', async () => {
  const supervisor = fakeSupervisor();
  const sessions = new PreparedSessions({ supervisor, log: pino({ level: 'silent' }) });
  const [a, b, c] = [imap('a'), imap('b'), imap('c')];
  sessions.keep(
    new Map([
      ['imap/a', a],
      ['imap/b', b],
      ['imap/c', c],
    ]),
  );
  supervisor.finish('imap/a');
  supervisor.fail('imap/c');
  await settle();
  assert.is(sessions.size, 3);
  sessions.keep(
    new Map([
      ['imap/a', a],
      ['imap/b', b],
      ['imap/c', c],
    ]),
  );
  assert.is(supervisor.pending.size, 1, 'a failed one is not tried again while wanted (its loop will open its own)');
  sessions.keep(new Map()); // the silent member spoke again
  assert.equal(supervisor.aborted.sort(), ['imap/a', 'imap/b', 'imap/c']);
  await settle();
  assert.equal(supervisor.closed, ['imap/a']);
  supervisor.finish('imap/b');
  await settle();
  assert.equal(supervisor.closed, ['imap/a', 'imap/b'], 'closed as soon as it opened');
  assert.is(sessions.take('imap/b', b), undefined);
  sessions.keep(new Map([['imap/a', a]]));
  sessions.dropAll();
  supervisor.finish('imap/a');
  await settle();
  assert.equal(supervisor.closed, ['imap/a', 'imap/b', 'imap/a']);
});

test("a session apply's verification opened is kept when wanted (handed to its loop), else closed", async () => {
  const supervisor = fakeSupervisor();
  const sessions = new PreparedSessions({ supervisor, log: pino({ level: 'silent' }) });
  const [a, b] = [imap('a'), imap('b')];
  const verified = (id: string) =>
    ({ client: { usable: true, disconnect: async () => void supervisor.closed.push(id) } }) as unknown as OpenedImap;
  sessions.adopt('imap/a', a, verified('imap/a'));
  sessions.adopt('imap/b', b, verified('imap/b'));
  sessions.keep(new Map([['imap/a', a]])); // this replica owns a; b belongs to another
  assert.is(supervisor.pending.size, 0, 'nothing opened again');
  await settle();
  assert.equal(supervisor.closed, ['imap/b']);
  assert.ok(sessions.take('imap/a', a));
});

test.run();
