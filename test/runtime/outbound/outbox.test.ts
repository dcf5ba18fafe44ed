/** The durable outbox on its own (a temp state folder): what survives a restart, and what a damaged file becomes. */
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Outbox } from '../../../src/runtime/outbound/outbox.js';
import { FileOutboxStore } from '../../../src/store/file/outbox.js';

const silent = pino({ level: 'silent' });
const request = (subject: string) => ({
  from: 'agent@example.com',
  server: 'smtp/agent',
  to: ['customer@example.org'],
  cc: [],
  bcc: [],
  subject,
  text: 'hello',
  kind: 'agent' as const,
  attachments: [],
});

async function withStateDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'mailctl-outbox-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function reopened(dir: string): Promise<Outbox> {
  const outbox = new Outbox(new FileOutboxStore(dir), silent);
  await outbox.load();
  return outbox;
}

test('a deferred message keeps its attempts, next try and last error across a restart', () =>
  withStateDir(async (dir) => {
    const first = await reopened(dir);
    const message = await first.accept(request('retry me'));
    const entry = first.get(message.id)!;
    entry.attempts = 3;
    entry.nextAttemptAt = Date.parse('2030-01-01T00:00:00Z');
    entry.lastError = '451 4.3.0 try again later';
    first.markDeferred(entry);
    await first.close();

    const second = await reopened(dir);
    const again = second.get(message.id)!;
    assert.is(again.state, 'queued');
    assert.is(again.attempts, 3);
    assert.is(new Date(again.nextAttemptAt).toISOString(), '2030-01-01T00:00:00.000Z');
    assert.is(again.lastError, '451 4.3.0 try again later');
    assert.equal(second.summary(), { queued: 1, sending: 0, copying: 0, damagedFiles: 0 });
    await second.close();
  }));

test('deferred, then sent, then done: finished after a restart, never queued again; the journal is compacted', () =>
  withStateDir(async (dir) => {
    const first = await reopened(dir);
    const message = await first.accept(request('deliver me'));
    const entry = first.get(message.id)!;
    entry.attempts = 1;
    entry.nextAttemptAt = Date.now();
    first.markDeferred(entry);
    first.markSent(entry, '250 OK');
    assert.equal(first.summary(), { queued: 0, sending: 0, copying: 1, damagedFiles: 0 });
    await first.finish(entry, 'done', { storedIn: null });
    await first.close();

    const second = await reopened(dir);
    assert.is(second.size(), 0);
    assert.is(second.view(message.id)?.state, 'sent');
    assert.is(second.view(message.id)?.copy, 'none');
    assert.equal(
      (await readdir(path.join(dir, 'outbox'))).filter((f) => f.endsWith('.batch')),
      [],
      'the batch file is gone once all in it is finished',
    );
    await second.close();
    // compacted: the deferred, sent and done records of the message became its last one
    const journal = async () =>
      (await readFile(path.join(dir, 'outbox', 'journal.jsonl'), 'utf8'))
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { id: string; event: string });
    assert.equal(
      (await journal()).map((r) => [r.id, r.event]),
      [[message.id, 'done']],
    );
    // and a finished record is dropped once it is older than a week
    const weekLater = new Outbox(new FileOutboxStore(dir), silent);
    await weekLater.load(Date.now() + 8 * 24 * 3600_000);
    await weekLater.close();
    assert.equal(await journal(), []);
  }));

test("a server's reply and a failure reason are stored at most 1 KiB", () =>
  withStateDir(async (dir) => {
    const outbox = await reopened(dir);
    const a = outbox.get((await outbox.accept(request('long reply'))).id)!;
    const b = outbox.get((await outbox.accept(request('long reason'))).id)!;
    outbox.markSent(a, `250 ${'r'.repeat(100_000)}`);
    await outbox.finish(a, 'done', { storedIn: null });
    await outbox.finish(b, 'failed', { reason: `550 ${'n'.repeat(100_000)}` });
    await outbox.close();
    for (const line of (await readFile(path.join(dir, 'outbox', 'journal.jsonl'), 'utf8'))
      .split('\n')
      .filter(Boolean)) {
      const { reply = '', reason = '' } = JSON.parse(line) as { reply?: string; reason?: string };
      assert.ok(Buffer.byteLength(reply) <= 1024 && Buffer.byteLength(reason) <= 1024, line.slice(0, 80));
    }
    assert.is(outbox.view(a.message.id)?.reply?.length, 1024 - 2, '1021 bytes and …');
  }));

test('a batch file cut short is set aside in quarantine/ and counted, never sent', () =>
  withStateDir(async (dir) => {
    const first = await reopened(dir);
    await first.accept(request('kept'));
    await first.close();
    await writeFile(path.join(dir, 'outbox', 'zz-cut.batch'), 'MAILCTL-OUTBOX 1 999\n{"formatVersion":1,"mess');

    const second = await reopened(dir);
    assert.is(second.size(), 1);
    assert.equal(second.summary(), { queued: 1, sending: 0, copying: 0, damagedFiles: 1 });
    assert.is((await readdir(path.join(dir, 'outbox', 'quarantine'))).length, 1);
    await second.close();
  }));

test.run();
