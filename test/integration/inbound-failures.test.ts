/**
 * Inbound failure handling against a real Dovecot (messages by LMTP), a real daemon and a local webhook receiver:
 * the webhook sink (signature, Idempotency-Key, 5xx retried, 4xx quarantined), quarantine list/release, oversize
 * quarantined without download, broken MIME delivered raw, UIDVALIDITY change without re-delivery, and — driving the
 * processor directly with a test clock over a real IMAP connection — 5 failures → quarantine and the sink-down pause.
 */
import { createHmac } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ImapFlow } from 'imapflow';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { connectImap, Mailbox } from '../../src/adapters/imap.js';
import type { FlowSpec, ImapServerSpec } from '../../src/config/model.js';
import { checkpointFile } from '../../src/store/file/checkpoint.js';
import { InboundMailProcessor, SinkUnavailableError } from '../../src/runtime/inbound/processor.js';
import { FileInboundStore } from '../../src/store/file/inbound.js';
import type { PollStats } from '../../src/runtime/loops/imap-loop.js';
import { MAX_ATTEMPTS } from '../../src/runtime/inbound/decide.js';
import { type Dovecot } from '../harness/dovecot.js';
import { loudHook } from '../harness/expect.js';
import { WebhookReceiver as Receiver } from '../harness/webhook.js';
import { imapYaml } from '../harness/fixtures.js';
import { cli, eventually, type DaemonProcess, type Workspace } from '../harness/mailctl.js';
import { startMailStack, type MailStack } from '../harness/stack.js';

const HOOK = 'hook@example.com';
const DIR = 'dir@example.com';
const POISON = 'poison@example.com';
const DOWN = 'down@example.com';
const STORAGE = 'ContactStorage';
const SECRET = 'webhook-signing-secret-4f1c9a';
const POLL_EVERY_10_S = '*/10 * * * * *';

let stack: MailStack;
let dovecot: Dovecot;
let ws: Workspace;
let daemon: DaemonProcess;
let hook: Receiver;
let queues: string;
let seq = 0;

function mail(o: { subject: string; body?: string; headers?: string[] }): { raw: string; id: string } {
  const id = `<fail-${process.pid}-${++seq}@test.example>`;
  const raw = [
    'From: Customer <customer@example.org>',
    'To: support@example.com',
    `Subject: ${o.subject}`,
    `Message-ID: ${id}`,
    'Date: Fri, 27 Nov 2026 10:00:00 +0000',
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    ...(o.headers ?? []),
    '',
    o.body ?? `Body of ${o.subject}`,
    '',
  ].join('\r\n');
  return { raw, id };
}

const inFolder = async (user: string, folder: string, id: string) =>
  (await dovecot.listMessages(user, folder)).filter((m) => m.messageId === id);
const flagsOf = async (user: string, id: string) => (await inFolder(user, 'INBOX', id))[0]?.flags ?? [];
const quarantineList = async () => {
  const r = await cli(['quarantine', 'list', '--json'], ws.env);
  assert.is(r.code, 0, r.stderr);
  return (
    JSON.parse(r.stdout) as {
      quarantined: { key: string; server: string; reason: string; messageId: string | null; detail: string }[];
    }
  ).quarantined;
};

/** The .json metadata files of the directory sink whose messageId is `id`. */
async function pairsOf(id: string): Promise<{ queue: string; key: string; meta: Record<string, any> }[]> {
  const found = [];
  for (const q of await readdir(queues).catch(() => [] as string[])) {
    for (const f of (await readdir(path.join(queues, q)).catch(() => [] as string[])).filter((f) =>
      f.endsWith('.json'),
    )) {
      const meta = JSON.parse(await readFile(path.join(queues, q, f), 'utf8'));
      if (meta.messageId === id) found.push({ queue: q, key: f.slice(0, -5), meta });
    }
  }
  return found;
}

async function assertQuarantined(user: string, id: string, reason: string): Promise<string> {
  const entry = await eventually(
    async () => (await quarantineList()).find((q) => q.messageId === id),
    20_000,
    `${id} quarantined`,
  );
  assert.is(entry.reason, reason, entry.detail);
  const flags = await eventually(
    async () => {
      const f = await flagsOf(user, id);
      return f.includes('\\Flagged') ? f : null;
    },
    10_000,
    `${id} \\Flagged`,
  );
  assert.ok(flags.includes('\\Seen'), flags.join(' '));
  assert.is((await inFolder(user, STORAGE, id)).length, 1, 'quarantined message copied to the storage folder once');
  return entry.key;
}

test.before(
  loudHook(async () => {
    stack = await startMailStack({
      users: { [HOOK]: 'hook-pass', [DIR]: 'dir-pass', [POISON]: 'poison-pass', [DOWN]: 'down-pass' },
    });
    ({ dovecot, ws } = stack);
    hook = new Receiver();
    await hook.start();
    queues = path.join(ws.stateDir, 'queues');
    const secretRef = `\${file:${await ws.writeSecret('webhook-secret', SECRET)}}`;
    await ws.writeServer(
      'flows.yaml',
      [
        'kind: EmailFlow',
        'name: hooks',
        'routes:',
        '  - queue: support',
        'deliver:',
        '  webhook:',
        `    url: http://127.0.0.1:${hook.port}/inbound`,
        `    secret: "${secretRef}"`,
        '---',
        'kind: EmailFlow',
        'name: main',
        'routes:',
        '  - queue: general',
        'deliver:',
        '  directory: queues',
        '',
      ].join('\n'),
    );
    await ws.writeServer(
      'imap-hook.yaml',
      imapYaml({
        shortName: 'hook',
        user: HOOK,
        port: dovecot.ports.imap,
        caFile: dovecot.caFile,
        password: await stack.ref(HOOK),
        storageFolder: STORAGE,
        flow: 'hooks',
        pollSchedule: POLL_EVERY_10_S,
      }),
    );
    await ws.writeServer(
      'imap-dir.yaml',
      imapYaml({
        shortName: 'dir',
        user: DIR,
        port: dovecot.ports.imap,
        caFile: dovecot.caFile,
        password: await stack.ref(DIR),
        storageFolder: STORAGE,
        flow: 'main',
        pollSchedule: POLL_EVERY_10_S,
        extra: 'maxMessageSize: 100000',
      }),
    );
    daemon = await stack.startDaemon(['--no-watch']);
    const r = await cli(['apply', '--dir', ws.dir], ws.env);
    if (r.code !== 0) throw new Error(`apply failed: ${r.stdout}${r.stderr}`);
  }),
);

test.after(async () => {
  if (process.env.MAILCTL_SHOW_LOG === '1') console.log(daemon?.output());
  await hook?.stop();
  await stack?.stop();
});

test('webhook: signed JSON with the metadata, the source in base64 and an Idempotency-Key; then copied and \\Seen', async () => {
  const m = mail({ subject: 'Hello via webhook' });
  await dovecot.deliver(HOOK, m.raw);
  const [r] = await eventually(async () => (hook.of(m.id).length ? hook.of(m.id) : null), 20_000, 'webhook request');
  const expected = `sha256=${createHmac('sha256', SECRET).update(r!.raw).digest('hex')}`;
  assert.is(r!.headers['x-mailctl-signature'], expected, 'HMAC-SHA256 over the exact body');
  assert.match(String(r!.headers['idempotency-key']), /^hook\.\d+\.\d+\.[0-9a-f]{8}$/);
  assert.is(r!.headers['content-type'], 'application/json');
  const b = r!.body;
  assert.is(b.server, 'imap/hook');
  assert.is(b.queue, 'support');
  assert.is(b.subject, 'Hello via webhook');
  assert.equal(b.from, ['customer@example.org']);
  assert.type(b.uidValidity, 'string');
  assert.is(
    String(r!.headers['idempotency-key']),
    `hook.${b.uidValidity}.${b.uid}.${String(r!.headers['idempotency-key']).split('.')[3]}`,
  );
  assert.ok(Buffer.from(b.source, 'base64').toString('utf8').endsWith(m.raw), 'source is the exact message');
  await eventually(async () => (await flagsOf(HOOK, m.id)).includes('\\Seen'), 10_000, '\\Seen');
  assert.is((await inFolder(HOOK, STORAGE, m.id)).length, 1);
  assert.not.ok(daemon.output().includes(SECRET), 'the secret never appears in the output');
});

test('webhook: 5xx is retried with the same Idempotency-Key until it is acknowledged', async () => {
  const m = mail({ subject: 'Flaky receiver' });
  let failures = 2;
  hook.answer = (b) => (b.messageId === m.id && failures-- > 0 ? 503 : 200);
  await dovecot.deliver(HOOK, m.raw);
  await eventually(async () => hook.of(m.id).some((r) => r.status === 200), 30_000, 'acknowledged after retries');
  const tries = hook.of(m.id);
  assert.equal(
    tries.map((t) => t.status),
    [503, 503, 200],
  );
  assert.is(new Set(tries.map((t) => t.headers['idempotency-key'])).size, 1, 'one key for every retry');
  await eventually(async () => (await flagsOf(HOOK, m.id)).includes('\\Seen'), 10_000, '\\Seen');
  assert.not.ok((await flagsOf(HOOK, m.id)).includes('\\Flagged'));
  assert.is((await inFolder(HOOK, STORAGE, m.id)).length, 1);
});

let rejectedKey = '';
test('webhook: 4xx quarantines the message (storage folder, \\Seen \\Flagged, listed, counted); release delivers it', async () => {
  const m = mail({ subject: 'Rejected by the receiver' });
  hook.answer = (b) => (b.messageId === m.id ? 422 : 200);
  await dovecot.deliver(HOOK, m.raw);
  rejectedKey = await assertQuarantined(HOOK, m.id, 'rejected');
  assert.is(hook.of(m.id).length, 1, 'a permanent failure is not retried');
  const status = JSON.parse((await cli(['status', '--json'], ws.env)).stdout) as {
    servers: { id: string; counters: Record<string, number> }[];
  };
  assert.ok((status.servers.find((s) => s.id === 'imap/hook')!.counters.quarantined ?? 0) >= 1, 'counted in status');
  const text = await cli(['quarantine', 'list'], ws.env);
  assert.ok(text.stdout.includes(rejectedKey) && text.stdout.includes('rejected'), text.stdout);

  hook.answer = () => 200;
  const r = await cli(['quarantine', 'release', rejectedKey], ws.env);
  assert.is(r.code, 0, r.stderr);
  await eventually(async () => hook.of(m.id).some((x) => x.status === 200), 15_000, 'released message delivered');
  assert.is(hook.of(m.id).at(-1)!.headers['idempotency-key'], rejectedKey, 'same key after the release');
  assert.not.ok(
    (await quarantineList()).some((q) => q.key === rejectedKey),
    'no longer listed',
  );
  await new Promise((res) => setTimeout(res, 1000));
  assert.is((await inFolder(HOOK, STORAGE, m.id)).length, 1, 'not copied a second time');
  const again = await cli(['quarantine', 'release', rejectedKey], ws.env);
  assert.is(again.code, 1);
  assert.match(again.stderr, /no quarantined message has the key/);
});

test('webhook down (connection refused): the loop pauses with backoff and counts no attempt against the messages', async () => {
  const port = hook.port;
  await hook.stop();
  const msgs = [
    mail({ subject: 'During outage 1' }),
    mail({ subject: 'During outage 2' }),
    mail({ subject: 'During outage 3' }),
  ];
  for (const m of msgs) await dovecot.deliver(HOOK, m.raw);
  const cpFile = path.join(ws.stateDir, 'inbound', 'imap_hook.json');
  await new Promise((res) => setTimeout(res, 7000));
  const cp = JSON.parse(await readFile(cpFile, 'utf8')) as {
    pending: Record<string, { attempts: number }>;
    quarantined: Record<string, unknown>;
  };
  const waiting = Object.values(cp.pending);
  assert.ok(waiting.length >= 1, 'messages wait in the retry set');
  for (const p of waiting) assert.is(p.attempts, 0, 'no per-message attempt burnt while the sink is down');
  assert.is(Object.keys(cp.quarantined).length, 0, 'nothing quarantined because of the outage');
  const status = JSON.parse((await cli(['status', '--json'], ws.env)).stdout) as {
    servers: { id: string; counters: Record<string, number> }[];
  };
  const paused = status.servers.find((s) => s.id === 'imap/hook')!.counters.sink_paused ?? 0;
  assert.ok(paused >= 1 && paused <= 6, `paused with backoff, not every poll: ${paused} pauses in 7 s`);
  for (const m of msgs) assert.not.ok((await flagsOf(HOOK, m.id)).includes('\\Seen'));
  await hook.start(port);
  for (const m of msgs)
    await eventually(
      async () => (await flagsOf(HOOK, m.id)).includes('\\Seen'),
      30_000,
      `${m.id} delivered after the outage`,
    );
  for (const m of msgs) assert.is(hook.of(m.id).length, 1, 'each delivered once');
});

test('oversize: quarantined from RFC822.SIZE, copied and flagged, listed', async () => {
  const big = mail({ subject: 'Huge attachment', body: 'x'.repeat(76).concat('\r\n').repeat(2000) });
  await dovecot.deliver(DIR, big.raw);
  await assertQuarantined(DIR, big.id, 'oversize');
  assert.is((await pairsOf(big.id)).length, 0, 'not delivered');
});

test('broken MIME (garbage headers, bad boundaries, raw 8-bit) is delivered raw with unparsable fields empty', async () => {
  const id = `<broken-${process.pid}@test.example>`;
  const raw = Buffer.concat([
    Buffer.from(`From: <<<not an address\r\nTo: ;;;,,,@\r\nSubject: caf`),
    Buffer.from([0xe9, 0xff, 0xfe]),
    Buffer.from(
      `\r\nMessage-ID: ${id}\r\nDate: not a date at all\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\r\n: no name\r\nthis line has no colon\r\n\r\n--wrong\r\nContent-Type: text/plain; charset=x-unknown-charset\r\n\r\n`,
    ),
    Buffer.from([0x80, 0x81, 0xc3, 0x28, 0x41]),
    Buffer.from('\r\n--never-closed\r\n'),
  ]);
  await dovecot.deliver(DIR, raw);
  const [pair] = await eventually(
    async () => {
      const p = await pairsOf(id);
      return p.length ? p : null;
    },
    20_000,
    'broken message delivered',
  );
  const eml = await readFile(path.join(queues, pair!.queue, `${pair!.key}.eml`));
  assert.ok(eml.subarray(eml.length - raw.length).equals(raw), 'the raw source, byte for byte');
  assert.is(pair!.meta.date, null);
  assert.equal([pair!.meta.from, pair!.meta.to], [[], []], 'no address in "<<<not an address" or ";;;,,,@"');
  await eventually(async () => (await flagsOf(DIR, id)).includes('\\Seen'), 10_000, '\\Seen');
  const status = JSON.parse((await cli(['status', '--json'], ws.env)).stdout) as {
    servers: { id: string; state: string }[];
  };
  assert.is(status.servers.find((s) => s.id === 'imap/dir')!.state, 'running');
});

test('UIDVALIDITY change (mailbox recreated): old mail is not delivered or copied twice, new mail is, and it is logged', async () => {
  const before = [mail({ subject: 'Before the migration 1' }), mail({ subject: 'Before the migration 2' })];
  for (const m of before) await dovecot.deliver(DIR, m.raw);
  for (const m of before)
    await eventually(async () => (await flagsOf(DIR, m.id)).includes('\\Seen'), 20_000, `${m.id} settled`);
  // "recreate" INBOX the way a migration does: empty it, new UIDVALIDITY, the same messages appended again
  const client = new ImapFlow({
    host: 'localhost',
    port: dovecot.ports.imap,
    secure: false,
    doSTARTTLS: true,
    tls: { ca: dovecot.caPem },
    auth: { user: DIR, pass: 'dir-pass' },
    logger: false,
  });
  await client.connect();
  await client.mailboxOpen('INBOX');
  const sources: Buffer[] = [];
  for (const msg of await client.fetchAll('1:*', { source: true }))
    if (before.some((m) => msg.source!.includes(m.id))) sources.push(msg.source!);
  await client.logout();
  assert.is(sources.length, 2);
  await dovecot.doveadm(['expunge', '-u', DIR, 'mailbox', 'INBOX', 'all']);
  const old = /uidvalidity=(\d+)/.exec(
    await dovecot.doveadm(['mailbox', 'status', '-u', DIR, 'uidvalidity', 'INBOX']),
  )![1]!;
  await dovecot.doveadm(['mailbox', 'update', '-u', DIR, '--uid-validity', String(Number(old) + 1000), 'INBOX']);
  const again = new ImapFlow({
    host: 'localhost',
    port: dovecot.ports.imap,
    secure: false,
    doSTARTTLS: true,
    tls: { ca: dovecot.caPem },
    auth: { user: DIR, pass: 'dir-pass' },
    logger: false,
  });
  await again.connect();
  for (const s of sources) await again.append('INBOX', s, []); // unseen in the new mailbox, like a migration without flags
  await again.logout();
  const after = mail({ subject: 'After the migration' });
  await dovecot.deliver(DIR, after.raw);

  await eventually(async () => (await pairsOf(after.id)).length === 1, 30_000, 'new mail delivered in the new epoch');
  assert.ok(daemon.output().includes('uidvalidity-changed'), 'uidvalidity-changed logged');
  await eventually(
    async () => (await Promise.all(before.map((m) => flagsOf(DIR, m.id)))).every((f) => f.includes('\\Seen')),
    10_000,
    'old mail marked \\Seen',
  );
  for (const m of before) {
    assert.is((await pairsOf(m.id)).length, 1, `${m.id} not delivered twice`);
    assert.is((await inFolder(DIR, STORAGE, m.id)).length, 1, `${m.id} not copied twice`);
  }
  assert.is((await pairsOf(after.id))[0]!.meta.uidValidity, String(Number(old) + 1000));
  assert.is((await inFolder(DIR, STORAGE, after.id)).length, 1);
});

// ---- the processor driven directly: a real IMAP connection, a test clock ----

const counts = (s: PollStats | void) => ({
  delivered: s?.delivered,
  quarantined: s?.quarantined,
  duplicates: s?.duplicates,
});
const flowSpec = (deliver: FlowSpec['deliver']): FlowSpec => ({
  name: 'direct',
  routes: [{ queue: 'blocked', when: { subject: '*blocked*' } }, { queue: 'general' }],
  autoReplies: 'deliver',
  deliver,
});
const spec = (user: string, shortName: string, maxMessageSize = 41_943_040): ImapServerSpec => ({
  type: 'imap',
  name: shortName,
  shortName,
  host: 'localhost',
  port: dovecot.ports.imap,
  tls: false,
  allowPlaintext: false,
  auth: { type: 'basic', user, password: 'unused' },
  role: 'agent',
  enabled: true,
  folder: 'INBOX',
  storageFolder: STORAGE,
  disableCompression: true,
  pollSchedule: '* * * * *',
  backfill: 'all',
  maxMessageSize,
});

async function direct(user: string, pass: string) {
  const client = await connectImap(
    {
      host: 'localhost',
      port: dovecot.ports.imap,
      tls: false,
      allowPlaintext: false,
      caPem: dovecot.caPem,
      disableCompression: true,
      auth: { user, pass },
    },
    { disableAutoIdle: true },
  );
  await client.mailboxOpen('INBOX');
  return client;
}

test(`a message that fails ${MAX_ATTEMPTS} times for its own sake is quarantined; the others flow; oversize is never downloaded`, async () => {
  const stateDir = await mkdtemp(path.join(tmpdir(), 'mailctl-direct-'));
  let clock = Date.now();
  const processor = new InboundMailProcessor({
    store: new FileInboundStore(stateDir),
    stateDir,
    sinkRoots: [stateDir],
    now: () => clock,
  });
  const sinkDir = path.join(stateDir, 'sink');
  const config = { spec: spec(POISON, 'poison', 50_000), flow: flowSpec({ directory: sinkDir }) };
  const poison = mail({ subject: 'This is blocked' });
  const good = mail({ subject: 'Fine' });
  const big = mail({ subject: 'Too big', body: 'y'.repeat(76).concat('\r\n').repeat(5000) }); // ~390 KB
  for (const m of [poison, good, big]) await dovecot.deliver(POISON, m.raw);
  await mkdir(sinkDir, { recursive: true });
  await writeFile(path.join(sinkDir, 'blocked'), 'a file where the queue folder should be');
  const client = await direct(POISON, 'poison-pass');
  try {
    const signal = new AbortController().signal;
    client.stats(true);
    const first = await processor.poll(new Mailbox(client), config, signal);
    assert.ok(
      client.stats().received < 100_000,
      `the oversize body was not downloaded (${client.stats().received} bytes read)`,
    );
    assert.equal(counts(first), { delivered: 1, quarantined: 1, duplicates: 0 });
    const cpFile = checkpointFile(stateDir, 'imap', 'poison');
    for (let attempt = 2; attempt <= MAX_ATTEMPTS; attempt++) {
      const early = await processor.poll(new Mailbox(client), config, signal);
      assert.equal(counts(early), { delivered: 0, quarantined: 0, duplicates: 0 }, 'not retried before its backoff');
      clock += 5 * 60_000;
      await processor.poll(new Mailbox(client), config, signal);
      const cp = JSON.parse(await readFile(cpFile, 'utf8'));
      if (attempt < MAX_ATTEMPTS)
        assert.is(Object.values(cp.pending as Record<string, { attempts: number }>)[0]!.attempts, attempt);
    }
    const cp = JSON.parse(await readFile(cpFile, 'utf8'));
    assert.equal(cp.pending, {});
    const reasons = Object.values(cp.quarantined as Record<string, { reason: string; attempts?: number }>)
      .map((q) => q.reason)
      .sort();
    assert.equal(reasons, ['failed', 'oversize']);
    for (const m of [poison, big]) {
      const flags = await flagsOf(POISON, m.id);
      assert.ok(flags.includes('\\Seen') && flags.includes('\\Flagged'), `${m.id}: ${flags.join(' ')}`);
      assert.is((await inFolder(POISON, STORAGE, m.id)).length, 1);
    }
    assert.ok((await flagsOf(POISON, good.id)).includes('\\Seen'));
    assert.not.ok((await flagsOf(POISON, good.id)).includes('\\Flagged'));
    const listed = await processor.listQuarantine('imap/poison');
    assert.is(listed.length, 2);
  } finally {
    await client.logout();
    await rm(stateDir, { recursive: true, force: true });
  }
});

test('webhook answering 5xx for everything: one batch, then one probe per backoff step; no attempts burnt; then all delivered', async () => {
  const stateDir = await mkdtemp(path.join(tmpdir(), 'mailctl-direct-'));
  let clock = Date.now();
  const secretFile = path.join(ws.secretsDir, 'down-secret');
  await writeFile(secretFile, SECRET, { mode: 0o600 });
  const { SecretResolver } = await import('../../src/connect/secrets.js');
  const processor = new InboundMailProcessor({
    store: new FileInboundStore(stateDir),
    stateDir,
    sinkRoots: [stateDir],
    now: () => clock,
    resolver: new SecretResolver({ secretsDir: ws.secretsDir, envPrefix: 'MAILCTL_', caDirs: [], env: {} }),
  });
  const down = new Receiver();
  await down.start();
  down.answer = () => 503;
  const config = {
    spec: spec(DOWN, 'down'),
    flow: flowSpec({ webhook: { url: `http://127.0.0.1:${down.port}/x`, secret: `\${file:${secretFile}}` } }),
  };
  const msgs = [1, 2, 3, 4].map((i) => mail({ subject: `Outage ${i}` }));
  for (const m of msgs) await dovecot.deliver(DOWN, m.raw);
  const client = await direct(DOWN, 'down-pass');
  const signal = new AbortController().signal;
  try {
    let pauses = 0;
    for (let round = 0; round < 8; round++) {
      try {
        await processor.poll(new Mailbox(client), config, signal);
      } catch (err) {
        assert.instance(err, SinkUnavailableError);
        pauses++;
      }
      const during = down.received.length;
      await processor.poll(new Mailbox(client), config, signal).catch(() => undefined); // still paused: nothing sent
      assert.is(down.received.length, during, 'no request while paused');
      clock += 10 * 60_000;
    }
    assert.is(pauses, 8);
    assert.is(down.received.length, msgs.length + 7, 'the first batch, then a single probe per round');
    const cp = JSON.parse(await readFile(checkpointFile(stateDir, 'imap', 'down'), 'utf8'));
    for (const p of Object.values(cp.pending as Record<string, { attempts: number }>)) assert.is(p.attempts, 0);
    assert.equal(cp.quarantined, {}, `more than ${MAX_ATTEMPTS} rounds, nothing quarantined`);
    down.answer = () => 200;
    const stats = await processor.poll(new Mailbox(client), config, signal);
    assert.equal(counts(stats), { delivered: 4, quarantined: 0, duplicates: 0 });
    for (const m of msgs) assert.ok((await flagsOf(DOWN, m.id)).includes('\\Seen'));
    assert.is(down.received.filter((r) => r.status === 200).length, msgs.length, 'each acknowledged once');
  } finally {
    await client.logout();
    await down.stop();
    await rm(stateDir, { recursive: true, force: true });
  }
});

test.run();
