/** Pure parts of inbound failure handling: quarantine bookkeeping, the bounded delivered ledger, webhook signing and
 * status classification (against a local HTTP server), and tolerant parsing of broken envelopes. */
import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import type { LookupAddress } from 'node:dns';
import type { AddressInfo, LookupFunction } from 'node:net';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CHECKPOINT_FORMAT_VERSION, type Checkpoint } from '../../../src/store/file/checkpoint.js';
import { DeliveredLedger } from '../../../src/store/file/ledger.js';
import { contentHash } from '../../../src/runtime/inbound/facts.js';
import { quarantineListing, recordQuarantine, releaseInCheckpoint } from '../../../src/store/quarantine.js';
import type { SinkItem } from '../../../src/runtime/inbound/sinks/directory.js';
import { displayUrl, signBody, webhookBody, WebhookSink } from '../../../src/runtime/inbound/sinks/webhook.js';

const checkpoint = (): Checkpoint => ({
  formatVersion: CHECKPOINT_FORMAT_VERSION,
  server: 'imap/support',
  identity: 'x',
  folder: 'INBOX',
  uidValidity: '7',
  lastUid: 10,
  pending: { 4: { attempts: 4, nextAttemptAt: 1 } },
  copyIntent: null,
  quarantined: {},
  updatedAt: '',
});

test('quarantine: recorded with its key, removed from the retry set, listed; release puts the UID back, marked as copied', () => {
  const cp = checkpoint();
  recordQuarantine(cp, 4, {
    key: 'support.7.4.abcd1234',
    reason: 'failed',
    detail: 'failed 5 times',
    at: 'now',
    messageId: '<m@x>',
    attempts: 5,
  });
  assert.equal(cp.pending, {});
  const [entry] = quarantineListing(cp);
  assert.equal(
    { key: entry!.key, server: entry!.server, uid: entry!.uid, uidValidity: entry!.uidValidity, reason: entry!.reason },
    { key: 'support.7.4.abcd1234', server: 'imap/support', uid: 4, uidValidity: '7', reason: 'failed' },
  );
  assert.not.ok(releaseInCheckpoint(cp, 'support.7.5.abcd1234'), 'unknown key');
  assert.ok(releaseInCheckpoint(cp, 'support.7.4.abcd1234'));
  assert.equal(cp.quarantined, {});
  assert.equal(cp.pending[4], { attempts: 0, nextAttemptAt: 0, copied: true });
  assert.not.ok(releaseInCheckpoint(cp, 'support.7.4.abcd1234'), 'released once');
});

test('ledger: remembers Message-ID + content hash, survives a reload, stays bounded, file is private', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'mailctl-ledger-'));
  try {
    const file = path.join(dir, 'inbound', 'imap_x.delivered');
    const ledger = new DeliveredLedger(file, 5);
    const h = (n: number) => contentHash(Buffer.from(`message ${n}`));
    await ledger.add([
      { messageId: '<1@x>', hash: h(1) },
      { messageId: null, hash: h(2) },
    ]);
    assert.ok(await ledger.has('<1@x>', h(1)));
    assert.ok(await ledger.has(null, h(2)));
    assert.not.ok(await ledger.has('<1@x>', h(2)), 'same Message-ID, other content: not the same message');
    assert.not.ok(await ledger.has('<other@x>', h(1)), 'same content, other Message-ID: not the same message');
    for (let n = 3; n <= 12; n++) await ledger.add([{ messageId: `<${n}@x>`, hash: h(n) }]);
    const lines = (await readFile(file, 'utf8')).trim().split('\n');
    assert.ok(lines.length < 10, `bounded: ${lines.length} lines`);
    const reloaded = new DeliveredLedger(file, 5);
    assert.ok(await reloaded.has('<12@x>', h(12)), 'the newest are kept');
    assert.not.ok(await reloaded.has('<1@x>', h(1)), 'the oldest are dropped');
    assert.is((await stat(file)).mode & 0o777, 0o600);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('webhook: signature is HMAC-SHA256 of the exact body; URL credentials and query never shown', () => {
  const body = '{"a":1}';
  assert.is(signBody(body, 's3cret'), `sha256=${createHmac('sha256', 's3cret').update(body).digest('hex')}`);
  assert.is(displayUrl('https://user:pw@hooks.example.com/in?token=abc#x'), 'https://hooks.example.com/in');
  const item = {
    key: 'k',
    queue: 'q',
    source: Buffer.from('Subject: x\r\n\r\nbody'),
    metadata: { subject: 'x' },
  } as unknown as SinkItem;
  const parsed = JSON.parse(webhookBody(item));
  assert.is(Buffer.from(parsed.source, 'base64').toString(), 'Subject: x\r\n\r\nbody');
  assert.is(parsed.subject, 'x');
});

test('webhook: 2xx ok, 4xx permanent (but 408/429), 5xx and 3xx transient, refused and timeouts mean the sink is down', async () => {
  const statuses: Record<string, number> = { ok: 204, bad: 422, gone: 410, slow429: 429, err: 503, moved: 301 };
  let seen: { key?: string; sig?: string; body: string }[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      seen.push({
        key: req.headers['idempotency-key'] as string,
        sig: req.headers['x-mailctl-signature'] as string,
        body,
      });
      const key = req.headers['idempotency-key'] as string;
      if (key === 'hang') return; // never answers
      res
        .writeHead(statuses[key] ?? 200, statuses[key] === 301 ? { location: 'http://127.0.0.1:1/elsewhere' } : {})
        .end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  const item = (key: string) =>
    ({ key, queue: 'q', source: Buffer.from('x'), metadata: { uid: 1 } }) as unknown as SinkItem;
  try {
    const sink = new WebhookSink(url, 'sec', { timeoutMs: 500 });
    const results = await sink.deliverBatch(['ok', 'bad', 'gone', 'slow429', 'err', 'moved', 'hang'].map(item));
    const summary = results.map((r) => (r.ok ? 'ok' : r.permanent ? 'permanent' : r.sinkDown ? 'down' : 'transient'));
    assert.equal(summary, ['ok', 'permanent', 'permanent', 'transient', 'transient', 'transient', 'down']);
    assert.is(seen.length, 7, 'the redirect was not followed');
    for (const s of seen) assert.is(s.sig, signBody(s.body, 'sec'));
    assert.ok(results.every((r) => r.ok || !r.error.message.includes('sec')));
    seen = [];
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    const [refused] = await sink.deliverBatch([item('ok')]);
    assert.ok(
      !refused!.ok && refused!.sinkDown === true && /unreachable/.test(refused!.error.message),
      JSON.stringify(refused),
    );
  } finally {
    server.closeAllConnections();
    server.close();
  }
});

test('webhook: a URL naming a link-local address is refused without connecting (the sink counts as down)', async () => {
  const item = { key: 'k', queue: 'q', source: Buffer.from('x'), metadata: { uid: 1 } } as unknown as SinkItem;
  for (const url of [
    'http://169.254.169.254/latest/meta-data/',
    'http://2852039166/hook', // the same address as one number
    'http://[::ffff:169.254.169.254]/hook',
    'https://[fe80::1]:8443/hook',
  ]) {
    const [result] = await new WebhookSink(url, 'sec', { timeoutMs: 2000 }).deliverBatch([item]);
    assert.ok(
      !result!.ok &&
        result!.sinkDown === true &&
        /refused: its host is a link-local address/.test(result!.error.message),
      `${url}: ${JSON.stringify(result)}`,
    );
  }
});

test('webhook: a name resolving to a link-local address is refused at each request, also after it first resolved well', async () => {
  let requests = 0;
  const server = createServer((req, res) => {
    requests++;
    req.resume();
    req.on('end', () => res.writeHead(204, { connection: 'close' }).end());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const answers: string[][] = [['127.0.0.1'], ['169.254.169.254'], ['127.0.0.1', 'fe80::1']];
  const asked: string[] = [];
  // a DNS server whose answer changes between requests (DNS rebinding), as a lookup function
  const lookup = ((hostname: string, _options: unknown, callback: (e: null, a: LookupAddress[]) => void) => {
    asked.push(hostname);
    const next = answers.shift() ?? ['127.0.0.1'];
    callback(
      null,
      next.map((address) => ({ address, family: address.includes(':') ? 6 : 4 })),
    );
  }) as unknown as LookupFunction;
  const sink = new WebhookSink(`http://hooks.example.internal:${port}/hook`, 'sec', { timeoutMs: 2000, lookup });
  const item = (key: string) =>
    ({ key, queue: 'q', source: Buffer.from('x'), metadata: { uid: 1 } }) as unknown as SinkItem;
  try {
    const results = [];
    for (const key of ['first', 'rebound', 'mixed']) results.push((await sink.deliverBatch([item(key)]))[0]!);
    assert.equal(
      results.map((r) => (r.ok ? 'ok' : r.error.message.replace(/^.*refused: /, ''))),
      [
        'ok',
        'its host is a link-local address (169.254.169.254), where cloud metadata services answer',
        'its host is a link-local address (fe80::1), where cloud metadata services answer',
      ],
    );
    assert.is(requests, 1, 'only the first request reached a server');
    assert.equal(asked, ['hooks.example.internal', 'hooks.example.internal', 'hooks.example.internal']);
  } finally {
    server.close();
  }
});

test.run();
