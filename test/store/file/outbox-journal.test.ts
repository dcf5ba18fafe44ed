/**
 * The outbox journal on a full disk (a tiny tmpfs): an append cut short leaves no torn line for the retried record to
 * be glued onto, so a message recorded as finished is never loaded as open again (it would be sent twice).
 */
import { appendFile, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Journal } from '../../../src/store/file/journal.js';
import { FileOutboxStore } from '../../../src/store/file/outbox.js';
import type { OutboxEvent, StoredOutboundMessage } from '../../../src/store/ports.js';
import { mountTmpfs, type Tmpfs } from '../../harness/tmpfs.js';

const PAGE = 4096;
let root: string;
let disk: Tmpfs;

test.before(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'mailctl-journal-'));
  disk = await mountTmpfs(path.join(root, 'state'), 64 * 1024);
});

test.after(async () => {
  await disk?.unmount();
  await rm(root, { recursive: true, force: true });
});

const message = (n: number): StoredOutboundMessage => {
  const id = `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
  return {
    id,
    messageId: `<${id}@example.com>`,
    server: 'smtp/agent',
    from: 'agent@example.com',
    to: ['customer@example.org'],
    cc: [],
    bcc: [],
    subject: `subject ${n}`,
    text: 'hello',
    kind: 'agent',
    attachments: [],
    createdAt: new Date().toISOString(),
  };
};
const event = (m: StoredOutboundMessage, name: OutboxEvent['event'], over: Partial<OutboxEvent> = {}) => ({
  id: m.id,
  event: name,
  at: new Date().toISOString(),
  messageId: m.messageId,
  server: m.server,
  ...over,
});

test('a final record whose append was cut short by a full disk, then retried, keeps the message finished', async () => {
  const journal = path.join(disk.dir, 'outbox', 'journal.jsonl');
  const store = new FileOutboxStore(disk.dir);
  await store.load(Date.now());
  const [sent, waiting] = [message(1), message(2)];
  await store.accept([sent, waiting]); // one batch file: it stays while `waiting` is open
  // the journal ends 40 bytes before a page boundary: the next record fits only partly once the disk is full
  const reason = 'x'.repeat(PAGE - 40 - JSON.stringify(event(waiting, 'deferred', { reason: '' })).length - 1);
  await store.record([event(waiting, 'deferred', { reason })]);
  assert.is((await stat(journal)).size, PAGE - 40);
  await disk.fill();
  const done = event(sent, 'done', { reply: '250 ok', storedIn: null });
  const refused = await store.record([done]).then(
    () => null,
    (err: NodeJS.ErrnoException) => err,
  );
  assert.is(refused?.code, 'ENOSPC');
  await disk.free();
  await store.record([done]); // the outbox records it again
  await store.close();
  const lines = (await readFile(journal, 'utf8')).split('\n').filter(Boolean);
  assert.equal(
    lines.map((l) => (JSON.parse(l) as OutboxEvent).event),
    ['deferred', 'done'],
    'no torn line',
  );
  const snapshot = await new FileOutboxStore(disk.dir).load(Date.now());
  assert.equal(
    snapshot.open.map((o) => o.message.id),
    [waiting.id],
    'the finished message is not open again',
  );
});

test('a journal that ends in a torn line (a crash) gets the next record on a line of its own', async () => {
  const store = new FileOutboxStore(disk.dir);
  await store.load(Date.now());
  const m = message(3);
  await store.accept([m]);
  await store.close();
  const journal = path.join(disk.dir, 'outbox', 'journal.jsonl');
  await appendFile(journal, '{"id":"torn","ev'); // a crash in the middle of an append
  const j = new Journal<OutboxEvent>(journal);
  await j.open();
  await j.append(event(m, 'done'));
  await j.close();
  const snapshot = await new FileOutboxStore(disk.dir).load(Date.now());
  assert.not.ok(
    snapshot.open.some((o) => o.message.id === m.id),
    'the record after the torn line was read',
  );
});

test.run();
