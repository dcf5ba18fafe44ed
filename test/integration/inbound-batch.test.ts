/**
 * The inbound processor's round trips, in-process against a real Dovecot: per batch one metadata FETCH (never the
 * header: it is parsed from the source), one source FETCH, one COPY and one STORE, the next batch read while the
 * current one is written; the checkpoint is compact JSON. Crash recovery of a copy intent asks the storage folder with
 * one SEARCH for the whole batch and copies only what is not there yet; a message without a Message-ID is recognised by
 * its size and content hash above the storage folder's UIDNEXT recorded with the intent.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ImapFlow } from 'imapflow';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { FlowSpec, ImapServerSpec } from '../../src/config/model.js';
import { checkpointFile, loadCheckpoint, saveCheckpoint } from '../../src/store/file/checkpoint.js';
import { InboundMailProcessor } from '../../src/runtime/inbound/processor.js';
import { Mailbox } from '../../src/adapters/imap.js';
import { FileInboundStore } from '../../src/store/file/inbound.js';
import { identityHash } from '../../src/runtime/inbound/sinks/directory.js';
import { startDovecot, type Dovecot } from '../harness/dovecot.js';

const USER = 'batch@example.com';
const STORAGE = 'ContactStorage';
const BATCH = 20;

let dovecot: Dovecot;
let stateDir: string;
let client: ImapFlow;
let seq = 0;
const calls: { name: string; args: unknown[] }[] = [];

const spec = (): ImapServerSpec =>
  ({
    type: 'imap',
    name: 'Batch',
    shortName: 'batch',
    host: '127.0.0.1',
    port: dovecot.ports.imap,
    tls: false,
    auth: { type: 'basic', user: USER, password: 'x' },
    folder: 'INBOX',
    storageFolder: STORAGE,
    flow: 'main',
    pollSchedule: '0 * * * *',
    backfill: 'unseen',
    maxMessageSize: 1024 * 1024,
    disableCompression: false,
  }) as unknown as ImapServerSpec;
const flow = {
  name: 'main',
  routes: [{ queue: 'general' }],
  autoReplies: 'deliver',
  deliver: { directory: 'queues' },
} as unknown as FlowSpec;

function mail(withId = true): { raw: string; id: string } {
  const id = `<batch-${process.pid}-${++seq}@test.example>`;
  const raw = [
    'From: c@example.org',
    `To: ${USER}`,
    `Subject: message ${seq}`,
    ...(withId ? [`Message-ID: ${id}`] : []),
    '',
    `Body ${seq}`,
    '',
  ].join('\r\n');
  return { raw, id };
}

const poll = (processor: InboundMailProcessor) =>
  processor.poll(new Mailbox(client), { spec: spec(), flow }, new AbortController().signal);
const called = (name: string) => calls.filter((c) => c.name === name);
const storageIds = async () => (await dovecot.listMessages(USER, STORAGE)).map((m) => m.messageId);

test.before(async () => {
  dovecot = await startDovecot({ users: { [USER]: 'pw' } });
  await dovecot.createFolder(USER, STORAGE);
  stateDir = await mkdtemp(path.join(tmpdir(), 'mailctl-batch-'));
  client = new ImapFlow({
    host: '127.0.0.1',
    port: dovecot.ports.imap,
    secure: false,
    doSTARTTLS: true,
    tls: { ca: await readFile(dovecot.caFile, 'utf8') },
    auth: { user: USER, pass: 'pw' },
    logger: false,
    disableAutoIdle: true,
  });
  client.on('error', () => undefined);
  await client.connect();
  await client.mailboxOpen('INBOX');
  for (const name of ['fetchAll', 'messageCopy', 'messageFlagsAdd', 'search'] as const) {
    const original = (client[name] as (...a: unknown[]) => Promise<unknown>).bind(client);
    (client as unknown as Record<string, unknown>)[name] = (...args: unknown[]) => (
      calls.push({ name, args }),
      original(...args)
    );
  }
});

test.after(async () => {
  await client?.logout().catch(() => undefined);
  await dovecot?.stop();
  await rm(stateDir, { recursive: true, force: true });
});

test('a backfill in batches: one metadata FETCH without the header, one source FETCH, one COPY, one STORE per batch; compact checkpoint', async () => {
  for (let i = 0; i < 2 * BATCH + 5; i++) await dovecot.deliver(USER, mail().raw);
  const processor = new InboundMailProcessor({
    store: new FileInboundStore(stateDir),
    stateDir,
    sinkRoots: [stateDir],
    batchSize: BATCH,
  });
  calls.length = 0;
  const stats = await poll(processor);
  assert.is(stats?.delivered, 2 * BATCH + 5);
  const fetches = called('fetchAll').map((c) => c.args[1] as Record<string, unknown>);
  assert.is(fetches.length, 2 * 3, 'two FETCH commands per batch');
  assert.ok(
    fetches.every((q) => !q.headers),
    'the header is never fetched on its own',
  );
  assert.is(fetches.filter((q) => q.source).length, 3, 'each source fetched once');
  assert.is(called('messageCopy').length, 3);
  assert.is(called('messageFlagsAdd').length, 3);
  assert.is((await storageIds()).length, 2 * BATCH + 5);
  const text = await readFile(checkpointFile(stateDir, 'imap', 'batch'), 'utf8');
  assert.is(text.trim().split('\n').length, 1, 'one line of JSON');
  const cp = JSON.parse(text);
  assert.equal([cp.copyIntent, cp.pending], [null, {}]);
});

test('recovery of a copy intent: one SEARCH for the batch, only the missing messages copied; without a Message-ID copied again', async () => {
  const processor = new InboundMailProcessor({
    store: new FileInboundStore(stateDir),
    stateDir,
    sinkRoots: [stateDir],
    batchSize: BATCH,
  });
  await poll(processor); // nothing new: the checkpoint is at the top
  const file = checkpointFile(stateDir, 'imap', 'batch');
  const done = (await dovecot.listMessages(USER, 'INBOX')).slice(-2); // already copied by the first test
  const fresh = [mail(), mail(), mail(false)];
  for (const m of fresh) await dovecot.deliver(USER, m.raw);
  const inbox = await dovecot.listMessages(USER, 'INBOX');
  const newUids = inbox.slice(-3).map((m) => m.uid);
  // as a crash right after the intent was recorded leaves it: two of the batch already copied, three not yet
  const cp = (await loadCheckpoint(file, identityHash({ host: '127.0.0.1', user: USER, folder: 'INBOX' }), 'INBOX'))!;
  const uids = [...done.map((m) => m.uid), ...newUids];
  const messageIds = Object.fromEntries([
    ...done.map((m) => [m.uid, m.messageId]),
    [newUids[0], fresh[0]!.id],
    [newUids[1], fresh[1]!.id],
    [newUids[2], null],
  ]);
  cp.copyIntent = { storageFolder: STORAGE, uids, messageIds, advanceTo: Math.max(...newUids), seen: uids, flag: [] };
  await saveCheckpoint(file, cp);
  const before = await storageIds();
  calls.length = 0;
  await poll(processor);
  assert.is(
    called('search').filter((c) => JSON.stringify(c.args[0]).includes('message-id')).length,
    1,
    'one SEARCH for the whole intent',
  );
  const copied = called('messageCopy').map((c) => String(c.args[0]));
  assert.equal(copied, [newUids.join(',')], 'only the messages not in the storage folder yet');
  const after = await storageIds();
  assert.is(after.length, before.length + 3);
  for (const m of done)
    assert.is(after.filter((id) => id === m.messageId).length, 1, `${m.messageId} stays once in storage`);
  const seen = await dovecot.listMessages(USER, 'INBOX');
  assert.ok(seen.every((m) => m.flags.includes('\\Seen')));
  const settled = JSON.parse(await readFile(file, 'utf8'));
  assert.is(settled.copyIntent, null);
  assert.is(settled.lastUid, Math.max(...newUids));
});

test('a message without a Message-ID whose COPY reached the server before a crash is recognised by size and content hash: one copy', async () => {
  const processor = new InboundMailProcessor({
    store: new FileInboundStore(stateDir),
    stateDir,
    sinkRoots: [stateDir],
    batchSize: BATCH,
  });
  await poll(processor); // settle what the tests before left
  const anonymous = [mail(false), mail(false)]; // two of them with different bodies, plus one with an id
  const named = mail();
  for (const m of [...anonymous, named]) await dovecot.deliver(USER, m.raw);
  const storageBefore = await dovecot.listMessages(USER, STORAGE);
  await client.noop(); // the daemon's client learns of new mail through IDLE; this one has IDLE off
  // the COPY reaches the server, then the process dies before it hears back (the error stands in for the crash)
  const copy = client.messageCopy.bind(client);
  client.messageCopy = async (...args: Parameters<ImapFlow['messageCopy']>) => {
    await copy(...args);
    throw new Error('crashed after COPY');
  };
  try {
    await poll(processor).then(
      () => assert.unreachable('the poll should fail'),
      (err: Error) => assert.match(err.message, 'crashed after COPY'),
    );
  } finally {
    client.messageCopy = copy;
  }
  const intent = JSON.parse(await readFile(checkpointFile(stateDir, 'imap', 'batch'), 'utf8')).copyIntent;
  assert.is(
    Object.keys(intent.withoutMessageId).length,
    2,
    'the intent fingerprints the two messages without a Message-ID',
  );
  assert.ok(intent.storageUidNext > 0);
  calls.length = 0;
  await poll(
    new InboundMailProcessor({
      store: new FileInboundStore(stateDir),
      stateDir,
      sinkRoots: [stateDir],
      batchSize: BATCH,
    }),
  ); // a restarted daemon recovers the intent
  assert.equal(called('messageCopy'), [], 'nothing copied again');
  const storageAfter = await dovecot.listMessages(USER, STORAGE);
  assert.is(storageAfter.length, storageBefore.length + 3, 'each of the three exactly once in the storage folder');
  assert.ok((await dovecot.listMessages(USER, 'INBOX')).every((m) => m.flags.includes('\\Seen')));
  assert.is(JSON.parse(await readFile(checkpointFile(stateDir, 'imap', 'batch'), 'utf8')).copyIntent, null);
});

test.run();
