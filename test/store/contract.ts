/**
 * The store contract: the promises every implementation of src/store/ports.ts keeps, as one suite that each store's
 * test file runs (`contractTests(name, harness)`). A "reopened" store is a new instance on the same location, as a
 * restarted daemon would open it: everything a resolved call wrote must be there.
 */
import { spawn } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  CHECKPOINT_FORMAT_VERSION,
  OUTBOX_FINISHED_KEPT,
  type Checkpoint,
  type MailboxRef,
  type OutboxEvent,
  type Store,
  type StoredOutboundMessage,
} from '../../src/store/ports.js';

export interface StoreHarness {
  /** A fresh, empty location; returns how to open a store on it (again and again). */
  fresh(): Promise<{ open: () => Promise<Store>; location: string }>;
  /** Whether the store holds queue rows (the PostgreSQL sink). */
  holdsQueueRows: boolean;
  /** `generated`: the store makes and keeps the API token; `given`: it needs one (and keeps only its hash). */
  token: 'generated' | 'given';
  /** The command line of a process that opens this location's store and takes its lock (see lock-child.ts). */
  lockChild(location: string): string[];
  cleanup(): Promise<void>;
}

const mailbox = (shortName: string, over: Partial<MailboxRef> = {}): MailboxRef => ({
  server: `imap/${shortName}`,
  type: 'imap',
  shortName,
  identity: `identity-of-${shortName}`,
  folder: 'INBOX',
  ...over,
});

const checkpoint = (ref: MailboxRef, over: Partial<Checkpoint> = {}): Checkpoint => ({
  formatVersion: CHECKPOINT_FORMAT_VERSION,
  server: ref.server,
  identity: ref.identity,
  folder: ref.folder,
  uidValidity: '1700000000',
  lastUid: 0,
  pending: {},
  copyIntent: null,
  quarantined: {},
  updatedAt: '',
  ...over,
});

const withoutTime = ({ updatedAt: _at, ...rest }: Checkpoint) => rest;

let seq = 0;
const message = (server = 'smtp/agent'): StoredOutboundMessage => {
  seq += 1;
  const id = `00000000-0000-4000-8000-${String(seq).padStart(12, '0')}`;
  return {
    id,
    messageId: `<${id}@example.com>`,
    server,
    from: 'agent@example.com',
    to: ['customer@example.org'],
    cc: [],
    bcc: [],
    subject: `subject ${seq}`,
    text: 'hello',
    kind: 'agent',
    attachments: [],
    createdAt: new Date().toISOString(),
  };
};

const event = (m: StoredOutboundMessage, name: OutboxEvent['event'], over: Partial<OutboxEvent> = {}): OutboxEvent => ({
  id: m.id,
  event: name,
  at: new Date().toISOString(),
  messageId: m.messageId,
  server: m.server,
  ...over,
});

const exitOf = (args: string[]): Promise<{ code: number | null; output: string }> =>
  new Promise((resolve) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    child.on('close', (code) => resolve({ code, output }));
  });

export const LOCK_CHILD = fileURLToPath(new URL('./lock-child.ts', import.meta.url));

/**
 * Starts one lock child per command line, lets them all take the lock at the same moment (a start file they wait for,
 * created once each said `ready`), each holding it `holdMs` if it gets it; resolves to their exit codes and output.
 */
export async function lockTogether(
  commands: string[][],
  startFile: string,
  holdMs: number,
): Promise<{ code: number | null; output: string }[]> {
  let ready = 0;
  let allReady: () => void = () => undefined;
  const readyAll = new Promise<void>((resolve) => (allReady = resolve));
  const exits = commands.map(
    (args) =>
      new Promise<{ code: number | null; output: string }>((resolve) => {
        const child = spawn(process.execPath, [...args, startFile, String(holdMs)], {
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let output = '';
        child.stdout.on('data', (d) => {
          output += d;
          if (String(d).includes('ready') && ++ready === commands.length) allReady();
        });
        child.stderr.on('data', (d) => (output += d));
        child.on('close', (code) => {
          if (!output.includes('ready') && ++ready === commands.length) allReady();
          resolve({ code, output });
        });
      }),
  );
  await readyAll;
  await writeFile(startFile, '');
  return Promise.all(exits);
}

export function contractTests(name: string, harness: StoreHarness): void {
  const t = suite(`store contract: ${name}`);
  t.after(() => harness.cleanup());

  /** Runs `fn` with a fresh location, closing every store it opened. */
  const withFresh = async <T>(fn: (open: () => Promise<Store>, location: string) => Promise<T>): Promise<T> => {
    const { open, location } = await harness.fresh();
    const opened: Store[] = [];
    try {
      return await fn(async () => {
        const store = await open();
        opened.push(store);
        return store;
      }, location);
    } finally {
      for (const s of opened) await s.outbox.close().catch(() => undefined);
      for (const s of opened) await s.close();
    }
  };
  const withStore = (fn: (open: () => Promise<Store>, location: string) => Promise<void>) => withFresh(fn);

  t('applied: nothing at first; a write is read back whole after a reopen; a later write replaces it', () =>
    withStore(async (open) => {
      const first = await open();
      assert.is(await first.applied.read(), null);
      const record = {
        appliedAt: '2026-12-01T10:00:00.000Z',
        revision: 'abc',
        desiredDigest: 'd1',
        state: {
          servers: {},
          bindings: { '${env:X}': [{ host: 'h', port: 993, tls: true, allowPlaintext: false, boundBy: 'imap/a' }] },
          revision: 'abc',
        },
      };
      await first.applied.write(record);
      assert.equal(await (await open()).applied.read(), record);
      await first.applied.write({ ...record, desiredDigest: 'd2', revision: null });
      assert.equal((await (await open()).applied.read())?.desiredDigest, 'd2');
    }),
  );

  t('apply log: entries are appended and read back in order after a reopen', () =>
    withStore(async (open) => {
      const store = await open();
      const entry = (n: number) => ({
        time: `2026-12-01T10:00:0${n}.000Z`,
        trigger: 'cli',
        revision: null,
        planDigest: `p${n}`,
        result: 'applied',
        servers: { 'imap/a': 'create' },
      });
      for (const n of [1, 2, 3]) await store.applied.appendLog(entry(n));
      assert.equal(await (await open()).applied.recentLog(2), [entry(2), entry(3)]);
    }),
  );

  t('inbound: a committed checkpoint is loaded back; another identity or folder is not this mailbox', () =>
    withStore(async (open) => {
      const a = mailbox('a');
      const store = await open();
      assert.is(await store.inbound.load(a), null);
      const cp = checkpoint(a, {
        lastUid: 42,
        pending: { 7: { attempts: 2, nextAttemptAt: 123, lastError: 'disk' }, 8: { attempts: 0, nextAttemptAt: 0 } },
        copyIntent: { storageFolder: 'S', uids: [40, 41], messageIds: { 40: '<a@x>', 41: null }, advanceTo: 42 },
        recheckBelow: 50,
      });
      await store.inbound.commit(a, { checkpoint: cp });
      const loaded = await (await open()).inbound.load(a);
      assert.ok(loaded);
      assert.equal(withoutTime(loaded), withoutTime(cp));
      assert.is(await store.inbound.load({ ...a, identity: 'another' }), null, 'another identity');
      assert.is(await store.inbound.load({ ...a, folder: 'Other' }), null, 'another folder');
      assert.is(await store.inbound.load(mailbox('b')), null, 'another mailbox');
    }),
  );

  t('inbound: ledger entries committed with a batch are known after a reopen, per mailbox', () =>
    withStore(async (open) => {
      const a = mailbox('a');
      const store = await open();
      const entries = [
        { messageId: '<1@x>', hash: 'h1' },
        { messageId: null, hash: 'h2' },
      ];
      await store.inbound.commit(a, {
        checkpoint: checkpoint(a, { lastUid: 2, recheckBelow: 10 }),
        delivered: entries,
      });
      const again = await open();
      assert.ok(await again.inbound.wasDelivered(a, entries[0]!));
      assert.ok(await again.inbound.wasDelivered(a, entries[1]!));
      assert.not.ok(
        await again.inbound.wasDelivered(a, { messageId: '<1@x>', hash: 'other' }),
        'same id, other content',
      );
      assert.not.ok(await again.inbound.wasDelivered(mailbox('b'), entries[0]!), 'another mailbox');
    }),
  );

  t('inbound: quarantine is listed across mailboxes and by server; release puts the UID back, once', () =>
    withStore(async (open) => {
      const store = await open();
      const entry = (key: string) => ({
        key,
        reason: 'failed' as const,
        detail: 'x',
        at: 'now',
        messageId: '<q@x>',
        attempts: 5,
      });
      const a = mailbox('a');
      const b = mailbox('b');
      await store.inbound.commit(a, {
        checkpoint: checkpoint(a, { lastUid: 9, quarantined: { 4: entry('a.1.4.00000000') } }),
      });
      await store.inbound.commit(b, {
        checkpoint: checkpoint(b, { lastUid: 9, quarantined: { 5: entry('b.1.5.00000000') } }),
      });
      assert.equal((await store.inbound.listQuarantine()).map((q) => q.key).sort(), [
        'a.1.4.00000000',
        'b.1.5.00000000',
      ]);
      const [onlyB] = await store.inbound.listQuarantine('imap/b');
      assert.equal(
        { key: onlyB?.key, server: onlyB?.server, uid: onlyB?.uid, reason: onlyB?.reason, attempts: onlyB?.attempts },
        { key: 'b.1.5.00000000', server: 'imap/b', uid: 5, reason: 'failed', attempts: 5 },
      );
      assert.is(await store.inbound.release('nope.1.1.00000000'), null);
      assert.is(await store.inbound.release('a.1.4.00000000'), 'imap/a');
      assert.is(await store.inbound.release('a.1.4.00000000'), null, 'released once');
      const after = await (await open()).inbound.load(a);
      assert.equal(after?.quarantined, {});
      assert.equal(after?.pending[4], { attempts: 0, nextAttemptAt: 0, copied: true });
    }),
  );

  t('inbound: queue rows are kept with the checkpoint, or refused by a store that keeps none', () =>
    withStore(async (open) => {
      const store = await open();
      const a = mailbox('a');
      const row = {
        table: 'inbound_messages',
        key: 'a.1.3.00000000',
        queue: 'support',
        server: 'imap/a',
        folder: 'INBOX',
        uidValidity: '1',
        uid: 3,
        messageId: '<row@x>',
        from: ['c@example.org'],
        to: ['a@example.com'],
        cc: [],
        subject: 'Hello',
        date: null,
        autoReply: false,
        receivedAt: new Date().toISOString(),
        source: Buffer.from('Subject: Hello\r\n\r\nbody\r\n'),
      };
      const refusal = (p: Promise<unknown>) =>
        p.then(
          () => null,
          (err: Error) => err,
        );
      const prepared = await refusal(store.inbound.prepareQueue('inbound_messages'));
      const commit = store.inbound.commit(a, { checkpoint: checkpoint(a, { lastUid: 3 }), rows: [row] });
      if (!harness.holdsQueueRows) {
        assert.ok(prepared, 'a store that keeps no queue rows refuses a queue table');
        assert.ok(await refusal(commit), 'and refuses rows');
        assert.is(await store.inbound.load(a), null, 'nothing of a refused commit is written');
        return;
      }
      assert.is(prepared, null);
      await store.inbound.prepareQueue('inbound_messages'); // again: nothing changes
      await commit;
      const again = await open();
      assert.is(await again.inbound.messageIdOf('a.1.3.00000000'), '<row@x>');
      assert.is(await again.inbound.messageIdOf('a.1.4.00000000'), null, 'a key without a row');
      assert.equal((await again.inbound.load(a))?.lastUid, 3, 'the checkpoint committed with the row');
    }),
  );

  t('outbox: accepted messages are loaded open after a reopen, oldest first, with their last progress', () =>
    withStore(async (open) => {
      const store = await open();
      await store.outbox.load(Date.now());
      const [m1, m2, m3] = [message(), message(), message('smtp/other')];
      await store.outbox.accept([m1, m2]);
      await store.outbox.accept([m3]);
      await store.outbox.record([
        event(m1, 'deferred', { attempts: 2, nextAttemptAt: '2030-01-01T00:00:00.000Z', reason: '451 later' }),
      ]);
      await store.outbox.record([event(m2, 'sent', { reply: '250 ok' })]);
      await store.outbox.close();
      const again = await open();
      const snapshot = await again.outbox.load(Date.now());
      assert.equal(
        snapshot.open.map((o) => o.message),
        [m1, m2, m3],
      );
      assert.equal(
        snapshot.open.map((o) => o.last?.event ?? null),
        ['deferred', 'sent', null],
      );
      assert.equal(
        {
          attempts: snapshot.open[0]!.last?.attempts,
          next: snapshot.open[0]!.last?.nextAttemptAt,
          reason: snapshot.open[0]!.last?.reason,
        },
        { attempts: 2, next: '2030-01-01T00:00:00.000Z', reason: '451 later' },
      );
      assert.equal(snapshot.damaged, []);
    }),
  );

  t('outbox: a finished message is never loaded open again; a late progress record does not reopen it', () =>
    withStore(async (open) => {
      const store = await open();
      await store.outbox.load(Date.now());
      const [done, failed, cancelled, open1] = [message(), message(), message(), message()];
      await store.outbox.accept([done, failed, cancelled, open1]);
      await store.outbox.record([
        event(done, 'done', { reply: '250 ok', storedIn: { server: 'imap/agent', folder: 'Sent' } }),
        event(failed, 'failed', { reason: '550 no such user' }),
        event(cancelled, 'cancelled'),
      ]);
      await store.outbox.record([event(done, 'sent', { reply: '250 ok' })]);
      await store.outbox.close();
      const snapshot = await (await open()).outbox.load(Date.now());
      assert.equal(
        snapshot.open.map((o) => o.message.id),
        [open1.id],
      );
      const finished = new Map(snapshot.finished.map((f) => [f.id, f]));
      assert.is(finished.get(done.id)?.event, 'done');
      assert.equal(finished.get(done.id)?.storedIn, { server: 'imap/agent', folder: 'Sent' });
      assert.is(finished.get(failed.id)?.reason, '550 no such user');
      assert.is(finished.get(cancelled.id)?.event, 'cancelled');
    }),
  );

  t('outbox: finished records older than a week are forgotten at load; open ones never are', () =>
    withStore(async (open) => {
      const store = await open();
      await store.outbox.load(Date.now());
      const [old, waiting] = [message(), message()];
      await store.outbox.accept([old]);
      await store.outbox.accept([waiting]);
      await store.outbox.record([event(old, 'done', { at: '2026-01-01T00:00:00.000Z' })]);
      await store.outbox.record([event(waiting, 'deferred', { at: '2026-01-01T00:00:00.000Z', attempts: 1 })]);
      await store.outbox.close();
      const snapshot = await (await open()).outbox.load(Date.parse('2026-03-01T00:00:00Z'));
      assert.equal(snapshot.finished, []);
      assert.equal(
        snapshot.open.map((o) => o.message.id),
        [waiting.id],
      );
    }),
  );

  t(`outbox: of the finished messages, the newest ${OUTBOX_FINISHED_KEPT} are kept`, () =>
    withStore(async (open) => {
      const store = await open();
      await store.outbox.load(Date.now());
      const messages = Array.from({ length: OUTBOX_FINISHED_KEPT + 10 }, () => message());
      await store.outbox.accept(messages);
      const start = Date.now() - 60_000;
      await store.outbox.record(
        messages.map((m, i) => event(m, 'done', { at: new Date(start + i * 10).toISOString() })),
      );
      await store.outbox.close();
      const snapshot = await (await open()).outbox.load(Date.now());
      assert.is(snapshot.finished.length, OUTBOX_FINISHED_KEPT);
      const kept = new Set(snapshot.finished.map((f) => f.id));
      assert.ok(kept.has(messages.at(-1)!.id), 'the newest is kept');
      assert.not.ok(kept.has(messages[9]!.id), 'the oldest are forgotten');
      assert.equal(snapshot.open, []);
    }),
  );

  t('kept credentials: put, get after a reopen, remove; exclusive runs one holder at a time', () =>
    withStore(async (open) => {
      const store = await open();
      const id = 'oauth2/0123456789ab';
      assert.is(await store.credentials.get(id), null);
      const kept = {
        id,
        ciphertext: 'Y2lwaGVy',
        nonce: 'bm9uY2U=',
        tag: 'dGFn',
        source: 'rotation',
        boundTo: { tokenUrl: 'https://login.example.com/token' },
        updatedAt: '2026-12-01T10:00:00.000Z',
      };
      await store.credentials.put(kept);
      assert.equal(await (await open()).credentials.get(id), kept);
      await store.credentials.remove(id);
      assert.is(await store.credentials.get(id), null);

      const events: string[] = [];
      const hold = (name: string) =>
        store.credentials.exclusive(id, async () => {
          events.push(`${name} in`);
          await new Promise((r) => setTimeout(r, 30));
          events.push(`${name} out`);
        });
      await Promise.all([hold('a'), hold('b')]);
      assert.equal(events, ['a in', 'a out', 'b in', 'b out']);
    }),
  );

  t(
    'token: a given token is used; without one, a store creates and keeps one, or refuses when it needs one given',
    () =>
      withStore(async (open) => {
        const given = 'given-token-0123456789abcdefghijklmnop';
        assert.is(await (await open()).token.establish(given), given);
        if (harness.token === 'given') {
          const refused = await (await open()).token.establish(undefined).then(
            () => null,
            (err: Error) => err,
          );
          assert.match(refused?.message ?? '', '--token-file');
          return;
        }
        const other = await withFresh(async (openOther) => {
          const first = await (await openOther()).token.establish(undefined);
          assert.ok(first.length >= 32);
          assert.is(await (await openOther()).token.establish(undefined), first, 'kept');
          return first;
        });
        assert.is.not(other, given);
      }),
  );

  t('lock: while one process holds the store, another refuses to start (naming the holder); after release it may', () =>
    withStore(async (open, location) => {
      const store = await open();
      const lock = await store.lock();
      const refused = await exitOf(harness.lockChild(location));
      assert.is(refused.code, 3, refused.output);
      assert.match(refused.output, new RegExp(`pid ${process.pid}`));
      await lock.release();
      const taken = await exitOf(harness.lockChild(location));
      assert.is(taken.code, 0, taken.output);
    }),
  );

  t('lock: two processes starting together: exactly one takes the store, the other is refused naming it', () =>
    withStore(async (open, location) => {
      await (await open()).close(); // the location exists
      const startFile = path.join(tmpdir(), `mailctl-lock-start-${process.pid}-${Date.now()}`);
      const results = await lockTogether([harness.lockChild(location), harness.lockChild(location)], startFile, 2_000);
      await rm(startFile, { force: true });
      assert.equal(results.map((r) => r.code).sort(), [0, 3], results.map((r) => r.output).join('\n'));
      assert.match(results.find((r) => r.code === 3)!.output, 'already uses');
    }),
  );

  t.run();
}
