/**
 * Message keys and the `.json` fields, through a real daemon, Dovecot and SMTP server: every valid shortName works as
 * the name in keys (`@`, `+`; a 250-character one is shortened to `<first 48>~<8 hex of sha256>` in keys and file
 * names), `--in-reply-to` and `/v1/stored` take those keys, and control characters never reach a `.json` field while
 * the `.eml` keeps the exact source.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { flowYaml, imapYaml, smtpYaml } from '../harness/fixtures.js';
import { cli, eventually, type DaemonProcess } from '../harness/mailctl.js';
import { startMailStack, type MailStack } from '../harness/stack.js';

const HELP = 'help@example.com';
const LONG_USER = 'long@example.com';
const AT_PLUS = 'help@eu+1';
const LONG = `long-${'x'.repeat(245)}`;
const LONG_IN_KEYS = `${LONG.slice(0, 48)}~${createHash('sha256').update(LONG).digest('hex').slice(0, 8)}`;

let stack: MailStack;
let daemon: DaemonProcess;
let seq = 0;

test.before(async () => {
  stack = await startMailStack({ users: { [HELP]: 'help-pass', [LONG_USER]: 'long-pass' }, smtp: true });
  const { ws, dovecot, smtp } = stack;
  await ws.writeServer('flow.yaml', flowYaml());
  for (const [shortName, user] of [
    [AT_PLUS, HELP],
    [LONG, LONG_USER],
  ] as const) {
    const password = await stack.ref(user);
    const common = { shortName, user, password, name: `${user} ${shortName.length}` };
    await ws.writeServer(
      `imap-${user}.yaml`,
      imapYaml({
        ...common,
        port: dovecot.ports.imap,
        caFile: dovecot.caFile,
        storageFolder: 'ContactStorage',
        pollSchedule: '*/10 * * * * *',
      }),
    );
    await ws.writeServer(`smtp-${user}.yaml`, smtpYaml({ ...common, port: smtp.port, caFile: smtp.caFile }));
  }
  daemon = await stack.startDaemon(['--no-watch']);
  const applied = await cli(['apply', '--dir', ws.dir], ws.env);
  assert.is(applied.code, 0, applied.stdout + applied.stderr);
});

test.after(async () => {
  await stack?.stop();
});

const queues = () => path.join(stack.ws.stateDir, 'queues');

/** Delivers a message to `user` and waits for its `.json`: [queue, key, metadata]. */
async function deliverAndFind(user: string, headers: string[] = []): Promise<[string, string, any, string]> {
  const messageId = `<keys-${process.pid}-${++seq}@example.org>`;
  const raw = [
    'From: Customer <customer@example.org>',
    `To: ${user}`,
    `Message-ID: ${messageId}`,
    ...(headers.length ? headers : ['Subject: hello']),
    '',
    'body',
    '',
  ].join('\r\n');
  await stack.dovecot.deliver(user, raw);
  return eventually(
    async () => {
      for (const q of await readdir(queues()).catch(() => [] as string[]))
        for (const f of await readdir(path.join(queues(), q))) {
          if (!f.endsWith('.json')) continue;
          const meta = JSON.parse(await readFile(path.join(queues(), q, f), 'utf8'));
          if (meta.server === `imap/${user === HELP ? AT_PLUS : LONG}` && meta.uid === seqUid(user))
            return [q, f.slice(0, -5), meta, raw] as [string, string, any, string];
        }
      return null;
    },
    25_000,
    `the .json of ${messageId}`,
  );
}

/** Each user gets its messages in order: the n-th message delivered to a user has UID n. */
const delivered: Record<string, number> = {};
const seqUid = (user: string) => delivered[user] ?? 0;
async function deliverNext(user: string, headers?: string[]) {
  delivered[user] = seqUid(user) + 1;
  return deliverAndFind(user, headers);
}

async function replyTo(key: string): Promise<string> {
  const sent = await cli(
    ['send', '--in-reply-to', key, '--to', 'customer@example.org', '--subject', 'Re', '--text', 'answer', '--json'],
    stack.ws.env,
  );
  assert.is(sent.code, 0, sent.stdout + sent.stderr);
  return JSON.parse(sent.stdout).messageId as string;
}

test('a shortName with @ and +: its keys work with --in-reply-to and /v1/stored', async () => {
  const [, key, meta] = await deliverNext(HELP);
  assert.ok(key.startsWith(`${AT_PLUS}.`), key);
  const messageId = await replyTo(key);
  const got = await eventually(() => stack.smtp.messages.find((m) => m.messageId === messageId), 20_000, 'the reply');
  assert.is(got.user, HELP, 'sent as the account the original was sent to');
  assert.match(got.raw.toString(), `In-Reply-To: ${meta.messageId}`);
  for (const name of [AT_PLUS, encodeURIComponent(AT_PLUS)]) {
    const stored = await eventually(async () => {
      const r = await daemon.api('GET', `/v1/stored/${name}/${key}`);
      return r.status === 200 ? r : null;
    });
    assert.match(Buffer.from(stored.body.source, 'base64').toString(), meta.messageId);
  }
});

test('a 250-character shortName is shortened in keys and file names; the server runs and its keys work', async () => {
  const [, key, meta] = await deliverNext(LONG_USER);
  assert.ok(key.startsWith(`${LONG_IN_KEYS}.`), key);
  const files = await readdir(path.join(stack.ws.stateDir, 'inbound'));
  assert.ok(files.includes(`imap_${LONG_IN_KEYS}.json`), files.join(' '));
  const status = await daemon.api('GET', '/v1/status');
  const server = status.body.servers.find((s: { id: string }) => s.id === `imap/${LONG}`);
  assert.is(server.state, 'running');
  assert.is(server.lastError, null);
  const messageId = await replyTo(key);
  const got = await eventually(() => stack.smtp.messages.find((m) => m.messageId === messageId), 20_000, 'the reply');
  assert.is(got.user, LONG_USER);
  const stored = await eventually(async () => {
    const r = await daemon.api('GET', `/v1/stored/${LONG}/${key}`);
    return r.status === 200 ? r : null;
  });
  assert.match(Buffer.from(stored.body.source, 'base64').toString(), meta.messageId);
  const other = await daemon.api('GET', `/v1/stored/${AT_PLUS}/${key}`);
  assert.is(other.status, 400, 'the key names another server');
});

test('control characters decoded from a header never reach the .json; the .eml keeps the exact source', async () => {
  const subject = `=?utf-8?B?${Buffer.from('Invoice\r\nInjected: yes\u0007').toString('base64')}?=`;
  const [queue, key, meta, raw] = await deliverNext(HELP, [`Subject: ${subject}`]);
  assert.is(meta.subject, 'Invoice Injected: yes ');
  assert.is(queue, 'billing', 'routed on the subject without its control characters');
  const json = await readFile(path.join(queues(), queue, `${key}.json`), 'utf8');
  assert.not.ok(/[\u0000-\u0008\u000b-\u001f\u007f]|\\[rnt]|\\u00/.test(json.replace(/\n {0,4}/g, '')), json);
  const eml = await readFile(path.join(queues(), queue, `${key}.eml`), 'utf8');
  assert.ok(eml.endsWith(raw), 'the source as delivered (after the headers Dovecot adds)');
});

test.run();
