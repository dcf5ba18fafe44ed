/**
 * Inbound mail against a real Dovecot (messages delivered by LMTP) and a real daemon: queues (.eml + .json pairs),
 * storage folder, \Seen, routes, auto-replies, backfill modes, a message read by another client first, no re-delivery
 * after a restart, and IDLE: new mail processed within seconds by a loop whose poll schedule is not due.
 */
import { readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { type Dovecot } from '../harness/dovecot.js';
import { flowYaml, imapYaml } from '../harness/fixtures.js';
import { cli, eventually, type DaemonProcess, type Workspace } from '../harness/mailctl.js';
import { startMailStack, type MailStack } from '../harness/stack.js';

const SUPPORT = 'support@example.com';
const SALES = 'sales@example.com';
const ARCHIVE = 'archive@example.com';
const STORAGE = 'ContactStorage';

let stack: MailStack;
let dovecot: Dovecot;
let ws: Workspace;
let daemon: DaemonProcess;
let queues: string;
let seq = 0;

interface Meta {
  server: string;
  folder: string;
  uidValidity: string;
  uid: number;
  messageId: string | null;
  from: string[];
  to: string[];
  cc: string[];
  subject: string;
  date: string | null;
  queue: string;
  receivedAt: string;
  autoReply: boolean;
}

function mail(o: { subject: string; to?: string; cc?: string; headers?: string[]; body?: string }): {
  raw: string;
  id: string;
} {
  const id = `<inbound-${process.pid}-${++seq}@test.example>`;
  const raw = [
    'From: Customer <customer@example.org>',
    `To: ${o.to ?? SUPPORT}`,
    ...(o.cc ? [`Cc: ${o.cc}`] : []),
    `Subject: ${o.subject}`,
    `Message-ID: ${id}`,
    'Date: Fri, 27 Nov 2026 10:00:00 +0000',
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    ...(o.headers ?? []),
    '',
    o.body ?? `Body of ${o.subject}\r\nline two`,
    '',
  ].join('\r\n');
  return { raw, id };
}

/** Every file under the sink folder: queue → file names. */
async function sinkFiles(): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  for (const q of await readdir(queues, { withFileTypes: true }).catch(() => [])) {
    if (q.isDirectory()) out.set(q.name, (await readdir(path.join(queues, q.name))).sort());
  }
  return out;
}

/** The .json files whose messageId is `id`: [queue, key, metadata]. */
async function pairsOf(id: string): Promise<[string, string, Meta][]> {
  const found: [string, string, Meta][] = [];
  for (const [q, files] of await sinkFiles()) {
    for (const f of files.filter((f) => f.endsWith('.json'))) {
      const meta = JSON.parse(await readFile(path.join(queues, q, f), 'utf8')) as Meta;
      if (meta.messageId === id) found.push([q, f.slice(0, -'.json'.length), meta]);
    }
  }
  return found;
}

/** IDLE normally reports new mail within a second; the 10 s poll is the safety net the product relies on too. */
const POLL_EVERY_10_S = '*/10 * * * * *';
/** A schedule that does not fire during a test run: a loop on it learns of new mail only through IDLE. */
const ONCE_A_YEAR = '0 0 1 1 *';
const waitPair = (id: string, timeoutMs = 25_000) =>
  eventually(async () => ((await pairsOf(id)).length ? (await pairsOf(id))[0]! : null), timeoutMs, `pair of ${id}`);

const inFolder = async (user: string, folder: string, id: string) =>
  (await dovecot.listMessages(user, folder)).filter((m) => m.messageId === id);

/** Settled: in its queue, exactly one pair, in the storage folder once, and \Seen in the inbox. */
async function assertSettled(user: string, id: string, queue: string): Promise<Meta> {
  const [q, key, meta] = await waitPair(id);
  assert.is(q, queue, `${id} queue`);
  assert.is((await pairsOf(id)).length, 1, `${id}: exactly one .json`);
  const files = (await sinkFiles()).get(q)!;
  assert.ok(files.includes(`${key}.eml`), `${id}: .eml next to .json`);
  await eventually(
    async () => (await inFolder(user, 'INBOX', id))[0]?.flags.includes('\\Seen'),
    10_000,
    `${id} \\Seen`,
  );
  const stored = await eventually(
    async () => {
      const s = await inFolder(user, STORAGE, id);
      return s.length ? s : null;
    },
    10_000,
    `${id} in storage`,
  );
  assert.is(stored.length, 1, `${id}: once in the storage folder`);
  return meta;
}

const apply = (...args: string[]) => cli(['apply', '--dir', ws.dir, ...args], ws.env);

// present before the first apply
const oldUnread = mail({ subject: 'Old unread invoice' });
const oldRead = mail({ subject: 'Old read message' });
const salesOld = mail({ subject: 'Sales old unread', to: SALES });
const archiveUnread = mail({ subject: 'Archive old unread', to: ARCHIVE });
const archiveRead = mail({ subject: 'Archive old read', to: ARCHIVE });

test.before(async () => {
  stack = await startMailStack({
    users: { [SUPPORT]: 'support-pass', [SALES]: 'sales-pass', [ARCHIVE]: 'archive-pass' },
  });
  ({ dovecot, ws } = stack);
  queues = path.join(ws.stateDir, 'queues');
  const supportRef = await stack.ref(SUPPORT);
  const salesRef = await stack.ref(SALES);
  const archiveRef = await stack.ref(ARCHIVE);
  await ws.writeServer(
    'flow.yaml',
    `${flowYaml().replace('routes:\n', 'routes:\n  - queue: blocked\n    when:\n      subject: "*blocked*"\n')}autoReplies:\n  queue: auto\n`,
  );
  await ws.writeServer(
    'imap-support.yaml',
    imapYaml({
      shortName: 'support',
      user: SUPPORT,
      port: dovecot.ports.imap,
      caFile: dovecot.caFile,
      password: supportRef,
      storageFolder: STORAGE,
      pollSchedule: POLL_EVERY_10_S,
    }),
  );
  await ws.writeServer(
    'imap-sales.yaml',
    imapYaml({
      shortName: 'sales',
      user: SALES,
      port: dovecot.ports.imap,
      caFile: dovecot.caFile,
      password: salesRef,
      storageFolder: STORAGE,
      pollSchedule: POLL_EVERY_10_S,
      extra: 'backfill: none',
    }),
  );
  await ws.writeServer(
    'imap-archive.yaml',
    imapYaml({
      shortName: 'archive',
      user: ARCHIVE,
      port: dovecot.ports.imap,
      caFile: dovecot.caFile,
      password: archiveRef,
      storageFolder: STORAGE,
      pollSchedule: ONCE_A_YEAR,
      extra: 'backfill: all',
    }),
  );
  await dovecot.deliver(SUPPORT, oldUnread.raw);
  await dovecot.deliver(SUPPORT, oldRead.raw);
  await dovecot.deliver(SALES, salesOld.raw);
  await dovecot.deliver(ARCHIVE, archiveUnread.raw);
  await dovecot.deliver(ARCHIVE, archiveRead.raw);
  for (const [user, id] of [
    [SUPPORT, oldRead.id],
    [ARCHIVE, archiveRead.id],
  ] as const) {
    const [read] = await inFolder(user, 'INBOX', id);
    await dovecot.doveadm(['flags', 'add', '-u', user, '\\Seen', 'mailbox', 'INBOX', 'uid', String(read!.uid)]);
  }
  daemon = await stack.startDaemon(['--no-watch']);
});

test.after(async () => {
  await stack?.stop();
});

test('apply starts the loops; backfill unseen delivers the unread mail present at first apply, not the read mail', async () => {
  const r = await apply();
  assert.is(r.code, 0, r.stdout + r.stderr);
  const meta = await assertSettled(SUPPORT, oldUnread.id, 'billing');
  assert.is(meta.autoReply, false);
  // the read message is left alone: not delivered, not copied
  await new Promise((res) => setTimeout(res, 1000));
  assert.is((await pairsOf(oldRead.id)).length, 0, 'read mail is not backfilled');
  assert.is((await inFolder(SUPPORT, STORAGE, oldRead.id)).length, 0);
});

test('backfill: all delivers the mail present at first apply, read or not', async () => {
  for (const m of [archiveUnread, archiveRead]) await assertSettled(ARCHIVE, m.id, 'general');
  assert.is((await pairsOf(archiveRead.id))[0]![2].server, 'imap/archive');
});

test('backfill: none skips the mail present at first apply and delivers what arrives later', async () => {
  // "later" = after the loop's first poll, which created the checkpoint
  const cpFile = path.join(ws.stateDir, 'inbound', 'imap_sales.json');
  const cp = await eventually(
    async () => JSON.parse(await readFile(cpFile, 'utf8')) as { lastUid: number; pending: object },
    15_000,
    'sales checkpoint',
  );
  assert.equal(cp.pending, {}, 'backfill none: nothing pending');
  const fresh = mail({ subject: 'Sales new', to: SALES });
  await dovecot.deliver(SALES, fresh.raw);
  try {
    await assertSettled(SALES, fresh.id, 'general');
  } catch (err) {
    console.log(
      daemon
        .output()
        .split('\n')
        .filter((l) => l.includes('sales'))
        .join('\n'),
    );
    throw err;
  }
  assert.is((await pairsOf(salesOld.id)).length, 0);
  assert.not.ok((await inFolder(SALES, 'INBOX', salesOld.id))[0]!.flags.includes('\\Seen'), 'old sales mail untouched');
});

test('new messages are routed to their queue as an exact .eml + .json pair, copied and \\Seen', async () => {
  const invoice = mail({ subject: 'Your Invoice 2026-11', cc: 'Other <other@example.com>' });
  const general = mail({ subject: 'Where is my parcel?' });
  await dovecot.deliver(SUPPORT, invoice.raw);
  await dovecot.deliver(SUPPORT, general.raw);
  const meta = await assertSettled(SUPPORT, invoice.id, 'billing');
  await assertSettled(SUPPORT, general.id, 'general');

  const [, key] = (await pairsOf(invoice.id))[0]!;
  assert.match(key, new RegExp(`^support\\.${meta.uidValidity}\\.${meta.uid}\\.[0-9a-f]{8}$`));
  assert.type(meta.uidValidity, 'string');
  assert.is(meta.server, 'imap/support');
  assert.is(meta.folder, 'INBOX');
  assert.is(meta.subject, 'Your Invoice 2026-11');
  assert.equal(meta.from, ['customer@example.org']);
  assert.equal(meta.to, [SUPPORT]);
  assert.equal(meta.cc, ['other@example.com']);
  assert.is(meta.queue, 'billing');
  assert.is(meta.date, '2026-11-27T10:00:00.000Z');
  assert.ok(!Number.isNaN(Date.parse(meta.receivedAt)));
  const eml = await readFile(path.join(queues, 'billing', `${key}.eml`), 'utf8');
  assert.ok(eml.endsWith(invoice.raw), 'the .eml is the message source (after the headers LMTP prepends)');
  const uid = (await inFolder(SUPPORT, 'INBOX', invoice.id))[0]!.uid;
  const virtualSize = Number(
    (
      await dovecot.doveadm([
        '-f',
        'tab',
        'fetch',
        '-u',
        SUPPORT,
        'size.virtual',
        'mailbox',
        'INBOX',
        'uid',
        String(uid),
      ])
    ).split('\n')[1],
  );
  assert.is(Buffer.byteLength(eml), virtualSize, 'exact source: same size as RFC822.SIZE on the server');
  for (const files of (await sinkFiles()).values())
    assert.not.ok(
      files.some((f) => f.startsWith('.')),
      'no temp files left',
    );
  const mode = (await stat(path.join(ws.stateDir, 'inbound', 'imap_support.json'))).mode & 0o777;
  assert.is(mode, 0o600, 'checkpoint is private');
});

test('auto-replies and bounces go where the flow says (autoReplies: queue auto), flagged', async () => {
  const ooo = mail({ subject: 'Out of office: invoice', headers: ['Auto-Submitted: auto-replied'] });
  const bounce = mail({ subject: 'Undelivered Mail Returned to Sender', headers: [], body: 'report' });
  const bounceRaw = bounce.raw.replace(
    'Content-Type: text/plain; charset=utf-8',
    'Content-Type: multipart/report; report-type=delivery-status;\r\n boundary="b1"',
  );
  await dovecot.deliver(SUPPORT, ooo.raw);
  await dovecot.deliver(SUPPORT, bounceRaw);
  const m1 = await assertSettled(SUPPORT, ooo.id, 'auto');
  const m2 = await assertSettled(SUPPORT, bounce.id, 'auto');
  assert.is(m1.autoReply, true);
  assert.is(m2.autoReply, true);
});

test('a message whose delivery fails stays unseen, does not block the next ones, and is retried later', async () => {
  // a regular file where the queue folder should be: delivery to "blocked" fails (root ignores permissions)
  await writeFile(path.join(queues, 'blocked'), 'not a folder');
  const stuck = mail({ subject: 'This one is blocked' });
  const next = mail({ subject: 'Right behind it' });
  await dovecot.deliver(SUPPORT, stuck.raw);
  await dovecot.deliver(SUPPORT, next.raw);
  await assertSettled(SUPPORT, next.id, 'general');
  const cpFile = path.join(ws.stateDir, 'inbound', 'imap_support.json');
  const uid = (await inFolder(SUPPORT, 'INBOX', stuck.id))[0]!.uid;
  const cp = await eventually(
    async () => {
      const c = JSON.parse(await readFile(cpFile, 'utf8'));
      return c.pending[uid] ? c : null;
    },
    10_000,
    'retry recorded',
  );
  assert.ok(cp.pending[uid].attempts >= 1);
  assert.ok(cp.lastUid >= uid, 'the watermark moved on past the failed message');
  assert.not.ok(
    (await inFolder(SUPPORT, 'INBOX', stuck.id))[0]!.flags.includes('\\Seen'),
    'failed message stays unseen',
  );
  assert.is((await inFolder(SUPPORT, STORAGE, stuck.id)).length, 0, 'and is not copied');
  // the sink recovers; the retry (backoff ≈ 2 s) runs on a later poll, here woken by new mail
  await rm(path.join(queues, 'blocked'));
  await new Promise((res) => setTimeout(res, 2500));
  const wake = mail({ subject: 'Wake up' });
  await dovecot.deliver(SUPPORT, wake.raw);
  await assertSettled(SUPPORT, wake.id, 'general');
  await assertSettled(SUPPORT, stuck.id, 'blocked');
  const after = JSON.parse(await readFile(cpFile, 'utf8'));
  assert.is(after.pending[uid], undefined, 'retry entry cleared');
});

test('a message marked \\Seen by another client before the poll is still processed; a restart re-delivers nothing', async () => {
  const before = await sinkFiles();
  const stopped = await daemon.stop();
  assert.is(stopped.code, 0);
  const readFirst = mail({ subject: 'Read by an agent in webmail first' });
  await dovecot.deliver(SUPPORT, readFirst.raw);
  const [m] = await inFolder(SUPPORT, 'INBOX', readFirst.id);
  await dovecot.doveadm(['flags', 'add', '-u', SUPPORT, '\\Seen', 'mailbox', 'INBOX', 'uid', String(m!.uid)]);
  daemon = await stack.startDaemon(['--no-watch']);
  await assertSettled(SUPPORT, readFirst.id, 'general');
  const [, newKey] = (await pairsOf(readFirst.id))[0]!;
  await new Promise((res) => setTimeout(res, 1500));
  const after = await sinkFiles();
  for (const [q, files] of before) {
    assert.equal(
      after.get(q)!.filter((f) => !f.startsWith(`${newKey}.`)),
      files,
      `queue ${q}: nothing re-delivered after the restart`,
    );
  }
  assert.equal(after.get('general')!.length, before.get('general')!.length + 2, 'only the new pair was added');
  for (const msg of await dovecot.listMessages(SUPPORT, STORAGE)) {
    assert.is((await inFolder(SUPPORT, STORAGE, msg.messageId!)).length, 1, `${msg.messageId} once in storage`);
  }
});

test('other flags are kept: \\Seen is added, never replacing', async () => {
  const stopped = await daemon.stop();
  assert.is(stopped.code, 0);
  const flagged = mail({ subject: 'Flagged by someone' });
  await dovecot.deliver(SUPPORT, flagged.raw);
  const [m] = await inFolder(SUPPORT, 'INBOX', flagged.id);
  await dovecot.doveadm(['flags', 'add', '-u', SUPPORT, '\\Flagged', 'mailbox', 'INBOX', 'uid', String(m!.uid)]);
  daemon = await stack.startDaemon(['--no-watch']);
  await assertSettled(SUPPORT, flagged.id, 'general');
  const flags = (await inFolder(SUPPORT, 'INBOX', flagged.id))[0]!.flags;
  assert.ok(flags.includes('\\Flagged') && flags.includes('\\Seen'), flags.join(' '));
});

test('IDLE: mail delivered while the loop idles is processed at once, with no scheduled poll due (yearly schedule)', async () => {
  await new Promise((res) => setTimeout(res, 1500)); // let the loop settle into IDLE
  const ms: number[] = [];
  for (let i = 0; i < 3; i++) {
    const m = mail({ subject: `Latency ${i}`, to: ARCHIVE });
    const t0 = Date.now();
    await dovecot.deliver(ARCHIVE, m.raw);
    await assertSettled(ARCHIVE, m.id, 'general');
    ms.push(Date.now() - t0);
    await new Promise((res) => setTimeout(res, 300));
  }
  console.log(`  LMTP → settled in its queue, \\Seen and stored (ms): ${ms.join(', ')}`);
  for (const v of ms) assert.ok(v < 10_000);
});

test('status shows the loop running after all of it', async () => {
  const s = JSON.parse((await cli(['status', '--json'], ws.env)).stdout) as {
    servers: { id: string; state: string; lastError: unknown }[];
  };
  const support = s.servers.find((x) => x.id === 'imap/support');
  assert.is(support?.state, 'running', JSON.stringify(support));
});

test.run();
