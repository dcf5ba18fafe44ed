/**
 * The outbox does not grow with the mail it sent: 10,000 messages accepted, sent and finished through the outbox and
 * the file store leave the heap and the outbox folder where they were (the journal is compacted while running, and
 * only the newest finished messages are remembered for views; the daemon runs a full GC when a large backlog drained).
 * A full outbox refuses with 503 and Retry-After.
 */
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { pino } from 'pino';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { HttpError } from '../../../src/runtime/daemon/http.js';
import { Outbox } from '../../../src/runtime/outbound/outbox.js';
import { FileOutboxStore } from '../../../src/store/file/outbox.js';
import { OUTBOX_FINISHED_KEPT } from '../../../src/store/ports.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const N = 10_000;
const silent = pino({ level: 'silent' });
const request = (i: number) => ({
  from: 'agent@example.com',
  server: 'smtp/agent',
  to: [`customer${i}@example.org`],
  cc: [],
  bcc: [],
  subject: `message ${i}`,
  text: `hello ${i} ${'x'.repeat(400)}`,
  kind: 'agent' as const,
  attachments: [],
});

let dir: string;

test.before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'mailctl-outbox-growth-'));
});

test.after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Accepts, sends and finishes `n` messages, 500 at a time, as the send and copy stages would. */
async function sendThrough(outbox: Outbox, from: number, n: number): Promise<void> {
  for (let i = from; i < from + n; i += 500) {
    const messages = await Promise.all(
      Array.from({ length: Math.min(500, from + n - i) }, (_, k) => outbox.accept(request(i + k))),
    );
    const entries = messages.map((m) => outbox.get(m.id)!);
    for (const entry of entries) outbox.markSent(entry, `250 2.0.0 OK queued as ${entry.message.id}`);
    await outbox.finishMany(entries, 'done', { storedIn: { server: 'imap/agent', folder: 'Sent' } });
  }
}

const heapUsed = () => {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};

async function folderBytes(): Promise<number> {
  let total = 0;
  for (const name of await readdir(path.join(dir, 'outbox')))
    total += (await stat(path.join(dir, 'outbox', name))).size;
  return total;
}

test(`${N} messages sent: the heap and the outbox folder return to their size`, async () => {
  let drained = 0;
  const outbox = new Outbox(new FileOutboxStore(dir), silent, undefined, {
    busy: () => undefined,
    idle: (messages) => void (drained += messages),
  });
  await outbox.load();
  // warm up (code paths compiled, the views' window filled) and take the baseline
  await sendThrough(outbox, 0, OUTBOX_FINISHED_KEPT + 500);
  const heapBefore = heapUsed();
  const bytesBefore = await folderBytes();
  await sendThrough(outbox, 1_000_000, N);
  const heapAfter = heapUsed();
  const bytesAfter = await folderBytes();
  assert.is(outbox.size(), 0);
  assert.is(drained, OUTBOX_FINISHED_KEPT + 500 + N, 'each time it drained, told how many went through');
  assert.equal(
    (await readdir(path.join(dir, 'outbox'))).filter((f) => f.endsWith('.batch')),
    [],
    'every batch file removed',
  );
  // what 10,000 finished messages would take: far more than either margin
  assert.ok(heapAfter - heapBefore < 2 * 1024 * 1024, `heap ${heapBefore} → ${heapAfter}`);
  assert.ok(bytesAfter < 2 * Math.max(bytesBefore, 1024 * 1024), `outbox folder ${bytesBefore} → ${bytesAfter} bytes`);
  const newest = outbox.view((await outbox.accept(request(-1))).id);
  assert.is(newest?.state, 'queued');
  await outbox.close();

  // after a restart: the newest finished messages are still shown, the open one is there
  const again = new Outbox(new FileOutboxStore(dir), silent);
  await again.load();
  assert.is(again.size(), 1);
  assert.is(again.list().length, 1);
  await again.close();
});

test('a full outbox refuses with 503 and Retry-After, and accepts again once a message finished', async () => {
  const full = await mkdtemp(path.join(os.tmpdir(), 'mailctl-outbox-full-'));
  try {
    const outbox = new Outbox(new FileOutboxStore(full), silent, 3);
    await outbox.load();
    const accepted = await Promise.all([1, 2, 3].map((i) => outbox.accept(request(i))));
    const refused = await outbox.accept(request(4)).then(
      () => null,
      (err: unknown) => err,
    );
    assert.instance(refused, HttpError);
    assert.is((refused as HttpError).status, 503);
    assert.equal((refused as HttpError).headers, { 'retry-after': '60' });
    await outbox.finish(outbox.get(accepted[0]!.id)!, 'cancelled');
    assert.ok(await outbox.accept(request(5)));
    await outbox.close();
  } finally {
    await rm(full, { recursive: true, force: true });
  }
});

test.run();
