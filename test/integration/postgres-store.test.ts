/**
 * The daemon on a PostgreSQL store, with faults of the database: `pg_ctl restart -m immediate` in the middle of a
 * 500-message stream into two mailboxes (one delivering to a directory, one into the store's queue table) loses
 * nothing and delivers nothing twice; a partition between the daemon and the database (a proxy that refuses
 * connections) makes `/readyz` fail and `status` say why, changes nothing about mail (no sink write, no COPY, no \Seen,
 * no accepted outbound mail) while it lasts, and everything resumes by itself once it heals; and no table ever holds a
 * secret or the API token (`pg_dump --data-only`).
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { customerMessage, flowYaml, imapYaml, postgresFlowYaml, smtpYaml } from '../harness/fixtures.js';
import { cli, eventually, type DaemonProcess } from '../harness/mailctl.js';
import { startMailStack, type MailStack } from '../harness/stack.js';
import { startTcpProxy, type TcpProxy } from '../harness/tcp-proxy.js';

const SUPPORT = 'support@example.com';
const SALES = 'sales@example.com';
const STORAGE = 'ContactStorage';
/** Canary passwords: none of them, in any encoding, may reach a table. */
const PASSWORDS: Record<string, string> = {
  [SUPPORT]: 'canary-support-7c1e9a3f5b',
  [SALES]: 'canary-sales-2d8b6e0a4c',
};
const COUNT = 500;
const POLL_EVERY_10_S = '*/10 * * * * *';

let stack: MailStack;
let daemon: DaemonProcess;
let queues: string;
let seq = 0;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function mail(to: string, tag: string): { id: string; raw: string } {
  const id = `<pg-${tag}-${++seq}@test.example>`;
  const subject = seq % 3 === 0 ? `Invoice ${seq}` : `Question ${seq}`;
  return { id, raw: customerMessage({ to, id, subject, body: `Message ${seq}` }) };
}

/** Message-IDs of the directory sink's `.json` files (with repeats). */
async function directoryIds(): Promise<string[]> {
  const ids: string[] = [];
  for (const q of await readdir(queues).catch(() => [] as string[]))
    for (const f of (await readdir(path.join(queues, q))).filter((n) => n.endsWith('.json')))
      ids.push((JSON.parse(await readFile(path.join(queues, q, f), 'utf8')) as { messageId: string }).messageId);
  return ids;
}

/** Message-IDs of the queue table's rows in `schema` (with repeats). */
async function rowIds(schema: string): Promise<string[]> {
  const rows = await stack.pg.admin(`SELECT message_id FROM ${schema}.inbound_messages`, stack.pg.database);
  return rows.map((r) => r.message_id as string);
}

/** How many times each of `ids` is in `list`, for the ones that are not there exactly once. */
const notOnce = (ids: readonly string[], list: readonly string[]) =>
  ids.map((id) => `${id} ×${list.filter((x) => x === id).length}`).filter((x) => !x.endsWith(' ×1'));

async function inboxUnseen(user: string, ids: Set<string>): Promise<number> {
  return (await stack.dovecot.listMessages(user)).filter(
    (m) => ids.has(m.messageId ?? '') && !m.flags.includes('\\Seen'),
  ).length;
}

test.before(async () => {
  stack = await startMailStack({
    users: { ...PASSWORDS },
    smtp: true,
    store: 'postgres',
  });
  queues = path.join(stack.ws.stateDir, 'queues');
  const { dovecot, smtp, ws } = stack;
  await ws.writeServer('flow-dir.yaml', flowYaml('main', 'queues'));
  await ws.writeServer('flow-pg.yaml', postgresFlowYaml('rows'));
  for (const [shortName, user, flow] of [
    ['support', SUPPORT, 'main'],
    ['sales', SALES, 'rows'],
  ] as const) {
    const password = await stack.ref(user);
    await ws.writeServer(
      `imap-${shortName}.yaml`,
      imapYaml({
        shortName,
        user,
        flow,
        port: dovecot.ports.imap,
        caFile: dovecot.caFile,
        password,
        storageFolder: STORAGE,
        pollSchedule: POLL_EVERY_10_S,
      }),
    );
  }
  await ws.writeServer(
    'smtp-support.yaml',
    smtpYaml({
      shortName: 'support',
      user: SUPPORT,
      port: smtp.port,
      caFile: smtp.caFile,
      password: await stack.ref(SUPPORT),
    }),
  );
  daemon = await stack.startDaemon(['--no-watch']);
  const r = await cli(['apply', '--dir', ws.dir], ws.env);
  assert.is(r.code, 0, r.stdout + r.stderr);
});

test.after(async () => {
  await stack?.stop();
});

test(`pg_ctl restart -m immediate in the middle of ${COUNT} messages: each once in its queue and its storage folder, all \\Seen`, async () => {
  // outbound mail too, so the outbox has rows when the database goes down
  for (let i = 0; i < 20; i++) {
    const a = await daemon.api('POST', '/v1/outbound', {
      from: SUPPORT,
      to: 'customer@example.org',
      subject: `reply ${i}`,
      text: 'hi',
    });
    assert.is(a.status, 202, JSON.stringify(a.body));
  }
  const sent = { support: [] as string[], sales: [] as string[] };
  let readyFailures = 0;
  let watching = true;
  const watcher = (async () => {
    while (watching) {
      const r = await fetch(`${daemon.url}/readyz`).catch(() => null);
      if (r?.status === 503) readyFailures++;
      await sleep(50);
    }
  })();
  let restarted = false;
  for (let i = 0; i < COUNT; i++) {
    const box = i % 2 ? 'sales' : 'support';
    const m = mail(box === 'sales' ? SALES : SUPPORT, 'restart');
    await stack.dovecot.deliver(box === 'sales' ? SALES : SUPPORT, m.raw);
    sent[box].push(m.id);
    if (i === COUNT / 2) {
      await stack.pg.restart({ mode: 'immediate' });
      restarted = true;
    }
  }
  assert.ok(restarted);
  await eventually(
    async () => {
      const dir = await directoryIds();
      const rows = await rowIds('mailctl');
      return dir.length >= sent.support.length && rows.length >= sent.sales.length;
    },
    60_000,
    'every message in its queue',
  );
  await eventually(
    async () =>
      (await inboxUnseen(SUPPORT, new Set(sent.support))) === 0 &&
      (await inboxUnseen(SALES, new Set(sent.sales))) === 0,
    30_000,
    'every message \\Seen',
  );
  watching = false;
  await watcher;
  assert.equal(notOnce(sent.support, await directoryIds()), [], 'directory sink: each message exactly once');
  assert.equal(notOnce(sent.sales, await rowIds('mailctl')), [], 'postgres sink: each message exactly once');
  for (const [user, ids] of [
    [SUPPORT, sent.support],
    [SALES, sent.sales],
  ] as const) {
    const stored = (await stack.dovecot.listMessages(user, STORAGE)).map((m) => m.messageId ?? '');
    assert.equal(notOnce(ids, stored), [], `${user}: each message once in the storage folder`);
  }
  assert.ok(readyFailures > 0, '/readyz failed while the database was restarting');
  assert.is((await fetch(`${daemon.url}/readyz`)).status, 200, 'and is ready again');
  await eventually(async () => stack.smtp.messages.length >= 20, 30_000, 'the outbound mail sent');
  console.log(`  /readyz answered 503 ${readyFailures} times (every 50 ms) around the restart`);
});

test('a row holds no control character (PostgreSQL text takes no NUL): the subject cleaned as for the .json', async () => {
  const id = '<pg-hostile@test.example>';
  const raw = [
    'From: c@example.org',
    `To: ${SALES}`,
    'Subject: =?utf-8?q?Hello=0D=0AInjected:_yes=00!?=',
    `Message-ID: ${id}`,
    '',
    'body',
    '',
  ].join('\r\n');
  await stack.dovecot.deliver(SALES, raw);
  const rows = await eventually(
    async () => {
      const found = await stack.pg.admin(
        `SELECT subject, source FROM mailctl.inbound_messages WHERE message_id = '${id}'`,
        stack.pg.database,
      );
      return found.length ? found : null;
    },
    20_000,
    'the row',
  );
  assert.is(rows[0]!.subject, 'Hello Injected: yes !');
  assert.ok(
    (rows[0]!.source as Buffer).includes(Buffer.from('=?utf-8?q?Hello=0D=0AInjected:_yes=00!?=')),
    'the exact source',
  );
});

test('a partition from the database: not ready, status says why, nothing about mail changes; then it resumes by itself', async () => {
  await daemon.stop();
  let proxy: TcpProxy | null = await startTcpProxy({ host: stack.pg.host, port: stack.pg.port });
  try {
    // another schema through the proxy: the same folder, its own state
    const url = `postgres://mailctl@127.0.0.1:${proxy.port}/mailctl`;
    daemon = await stack.startDaemon(['--no-watch', '--store', url, '--store-schema', 'parted']);
    const r = await cli(['apply', '--dir', stack.ws.dir], stack.ws.env);
    assert.is(r.code, 0, r.stdout + r.stderr);
    const before = mail(SALES, 'before');
    await stack.dovecot.deliver(SALES, before.raw);
    await eventually(async () => (await rowIds('parted')).includes(before.id), 20_000, 'the store works');

    proxy.reset();
    const status = await eventually(
      async () => {
        const s = await daemon.api('GET', '/v1/status');
        return s.body.store.available === false ? s.body : null;
      },
      20_000,
      'the daemon to notice',
    );
    assert.is(status.store.kind, 'postgres');
    assert.match(status.store.location, `postgres://mailctl@127.0.0.1:${proxy.port}/mailctl (schema parted)`);
    assert.match(status.store.problem.reason, /ECONNRESET|ECONNREFUSED|terminated|connect/);
    const ready = await fetch(`${daemon.url}/readyz?verbose`);
    assert.is(ready.status, 503);
    assert.match(await ready.text(), '[-]store failed');
    const page = (await (await fetch(`${daemon.url}/status.json`)).json()) as { store: unknown };
    assert.equal(page.store, { kind: 'postgres', available: false }, 'the status page says it too');
    const text = await cli(['status'], stack.ws.env);
    assert.match(text.stdout, 'unavailable');
    assert.match(text.stdout, 'no mail is fetched, copied, flagged or sent until it answers again');
    assert.is((await cli(['status', '--check'], stack.ws.env)).code, 1);
    const refused = await fetch(`${daemon.url}/v1/outbound`, {
      method: 'POST',
      headers: { authorization: `Bearer ${daemon.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ from: SUPPORT, to: 'customer@example.org', subject: 'during', text: 'x' }),
    });
    assert.is(refused.status, 503, 'outbound mail is not accepted while it cannot be stored');
    assert.ok(refused.headers.get('retry-after'));

    const during = [mail(SUPPORT, 'during'), mail(SALES, 'during'), mail(SALES, 'during')];
    const dirBefore = (await directoryIds()).length;
    const storedBefore = (await stack.dovecot.listMessages(SALES, STORAGE)).length;
    for (const m of during) await stack.dovecot.deliver(m.raw.includes(`To: ${SALES}`) ? SALES : SUPPORT, m.raw);
    await sleep(3000); // IDLE has told the loops; they wait for the store
    const ids = new Set(during.map((m) => m.id));
    assert.is(await inboxUnseen(SUPPORT, ids), 1, 'not \\Seen');
    assert.is(await inboxUnseen(SALES, ids), 2, 'not \\Seen');
    assert.is((await directoryIds()).length, dirBefore, 'no sink write');
    assert.is((await stack.dovecot.listMessages(SALES, STORAGE)).length, storedBefore, 'no COPY');

    proxy.heal();
    await eventually(
      async () => (await inboxUnseen(SUPPORT, ids)) === 0 && (await inboxUnseen(SALES, ids)) === 0,
      30_000,
      'resumed by itself',
    );
    assert.equal(notOnce([during[0]!.id], await directoryIds()), []);
    assert.equal(notOnce([during[1]!.id, during[2]!.id], await rowIds('parted')), []);
    assert.is((await fetch(`${daemon.url}/readyz`)).status, 200);
    assert.is((await daemon.api('GET', '/v1/status')).body.store.available, true);
    await daemon.stop();
    await proxy.close();
    proxy = null;
  } finally {
    await proxy?.close();
  }
});

test('no table holds a secret, the API token or the credentials key, in any encoding (pg_dump --data-only)', async () => {
  const dump = await stack.pg.dumpDataOnly();
  const token = (await readFile(path.join(stack.ws.root, 'api-token-given'), 'utf8')).trim();
  const key = (await readFile(path.join(stack.ws.root, 'credentials-key-given'), 'utf8')).trim();
  const forms = (secret: string, user: string) => [
    secret,
    Buffer.from(secret).toString('base64'),
    encodeURIComponent(secret),
    Buffer.from(`\0${user}\0${secret}`).toString('base64'),
  ];
  assert.ok(dump.includes('inbound_messages') && dump.includes('Message'), 'the dump has the queue rows');
  const found = [...Object.entries(PASSWORDS).flatMap(([user, pw]) => forms(pw, user)), token, key].filter((f) =>
    dump.includes(f),
  );
  assert.equal(found, []);
});

test.run();
