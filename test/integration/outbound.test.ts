/**
 * Outbound mail and stored mail against a real smtp-server and a real Dovecot, through a real daemon: From selection,
 * replies, template and system servers, header injection, 4xx retries, 5xx failures, attachments, sent copies,
 * cancel, the CLI, and stored-mail lookups before and after a short-name takeover.
 */
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { type Dovecot } from '../harness/dovecot.js';
import { flowYaml, imapYaml, smtpYaml } from '../harness/fixtures.js';
import { cli, eventually, type DaemonProcess, type Workspace } from '../harness/mailctl.js';
import { type SmtpTestServer } from '../harness/smtp.js';
import { startMailStack, type MailStack } from '../harness/stack.js';

const AGENT = 'agent@example.com';
const AGENT2 = 'agent2@example.com';
const SALES = 'sales@example.com';
const NOREPLY = 'noreply@example.com';
const SYSTEM = 'system@example.com';
const STORAGE = 'ContactStorage';
const PASS = {
  [AGENT]: 'agent-CANARY-7f3e',
  [AGENT2]: 'agent2-CANARY-91aa',
  [NOREPLY]: 'noreply-CANARY-c0de',
  [SYSTEM]: 'system-CANARY-5eed',
};

let stack: MailStack;
let dovecot: Dovecot;
let smtp: SmtpTestServer;
let ws: Workspace;
let daemon: DaemonProcess;
const refs: Record<string, string> = {};

const apply = () => cli(['apply', '--dir', ws.dir], ws.env);
const post = (body: unknown) => daemon.api('POST', '/v1/outbound', body);
const stateOf = (id: string) => daemon.api('GET', `/v1/outbound/${id}`).then((r) => r.body);
const received = (messageId: string) => smtp.messages.filter((m) => m.messageId === messageId);
const waitState = (id: string, state: string, ms = 20_000) =>
  eventually(async () => ((await stateOf(id)).state === state ? stateOf(id) : null), ms, `${id} ${state}`);
/** Sent and the sent copy made (or known not to be needed). */
const waitDone = (id: string) =>
  eventually(
    async () => {
      const s = await stateOf(id);
      return s.state === 'sent' && s.copy !== 'pending' ? s : null;
    },
    20_000,
    `${id} done`,
  );
const inStorage = async (user: string, messageId: string) =>
  (await dovecot.listMessages(user, STORAGE)).filter((m) => m.messageId === messageId);

async function writeServers(o: { templateEnabled?: boolean; agentImapUser?: string } = {}): Promise<void> {
  const imapUser = o.agentImapUser ?? AGENT;
  await ws.writeServer('flow.yaml', flowYaml());
  await ws.writeServer(
    'imap-agent.yaml',
    imapYaml({
      shortName: 'agent',
      user: imapUser,
      port: dovecot.ports.imap,
      caFile: dovecot.caFile,
      password: refs[imapUser]!,
      storageFolder: STORAGE,
      pollSchedule: '*/10 * * * * *',
    }),
  );
  await ws.writeServer(
    'smtp-agent.yaml',
    smtpYaml({
      shortName: 'agent',
      user: AGENT,
      port: smtp.port,
      caFile: smtp.caFile,
      password: refs[AGENT]!,
      extra: `additionalFromAddresses:\n  - ${SALES}`,
    }),
  );
  await ws.writeServer(
    'smtp-templates.yaml',
    smtpYaml({
      shortName: 'templates',
      user: NOREPLY,
      port: smtp.port,
      caFile: smtp.caFile,
      password: refs[NOREPLY]!,
      enabled: o.templateEnabled ?? true,
      extra: 'role: template',
    }),
  );
}

test.before(async () => {
  try {
    await setup();
  } catch (err) {
    console.error(err);
    throw err;
  }
});

async function setup(): Promise<void> {
  stack = await startMailStack({
    users: { [AGENT]: PASS[AGENT], [AGENT2]: PASS[AGENT2] },
    folders: { [AGENT]: [STORAGE], [AGENT2]: [STORAGE] },
    smtp: { users: PASS },
  });
  ({ dovecot, smtp, ws } = stack);
  for (const [user, pass] of Object.entries(PASS)) refs[user] = `\${file:${await ws.writeSecret(user, pass)}}`;
  await writeServers();
  const systemFile = path.join(ws.root, 'system-smtp.yaml');
  await writeFile(
    systemFile,
    smtpYaml({ shortName: 'system', user: SYSTEM, port: smtp.port, caFile: smtp.caFile, password: refs[SYSTEM]! }),
  );
  daemon = await stack.startDaemon(['--no-watch', '--system-smtp', systemFile]);
  const r = await apply();
  assert.is(r.code, 0, r.stdout + r.stderr);
}

test.after(async () => {
  await stack?.stop();
});

test('From selection: the user, an additional address in any case; an unknown address is 422 naming the configured ones', async () => {
  const a = await post({ from: AGENT, to: 'customer@example.org', subject: 'as user', text: 'hello' });
  assert.is(a.status, 202, JSON.stringify(a.body));
  assert.is(a.body.server, 'smtp/agent');
  const b = await post({ from: 'Sales@EXAMPLE.com', to: ['customer@example.org'], subject: 'as alias', text: 'hello' });
  assert.is(b.status, 202, JSON.stringify(b.body));
  assert.is(b.body.server, 'smtp/agent');
  for (const r of [a, b]) {
    await waitDone(r.body.id);
    const [got] = received(r.body.messageId);
    assert.ok(got, 'received by the SMTP server');
    assert.is(got.user, AGENT, 'sent through the account that owns the address');
  }
  assert.is(
    received(b.body.messageId)[0]!.envelope.mailFrom?.toLowerCase(),
    SALES,
    'sent as the address that was asked for',
  );
  const unknown = await post({ from: 'nobody@example.com', to: 'customer@example.org', text: 'x' });
  assert.is(unknown.status, 422);
  assert.match(unknown.body.error, /nobody@example\.com/);
  assert.match(unknown.body.error, /agent@example\.com/);
  assert.match(unknown.body.error, /sales@example\.com/);
  const none = await post({ to: 'customer@example.org', text: 'x' });
  assert.is(none.status, 422);
  assert.match(none.body.error, /needs "from"/);
});

test('sent copy: exactly one, \\Seen, in the storage folder of the IMAP server with the same user', async () => {
  const r = await post({ from: AGENT, to: 'customer@example.org', subject: 'copy me', text: 'hello copy' });
  const done = await waitDone(r.body.id);
  assert.equal(done.storedIn, { server: 'imap/agent', folder: STORAGE });
  assert.match(done.reply, /^250/);
  const copies = await inStorage(AGENT, r.body.messageId);
  assert.is(copies.length, 1);
  assert.ok(copies[0]!.flags.includes('\\Seen'));
});

test('a reply goes out from the account the original was sent to, with In-Reply-To', async () => {
  const original = `<original-${process.pid}@example.org>`;
  await dovecot.deliver(
    AGENT,
    [
      'From: Customer <customer@example.org>',
      `To: ${AGENT}`,
      'Subject: need help',
      `Message-ID: ${original}`,
      '',
      'help me',
      '',
    ].join('\r\n'),
  );
  const key = await eventually(
    async () => {
      for (const q of await readdir(path.join(ws.stateDir, 'queues')).catch(() => [] as string[])) {
        for (const f of await readdir(path.join(ws.stateDir, 'queues', q))) {
          if (
            f.endsWith('.json') &&
            JSON.parse(await readFile(path.join(ws.stateDir, 'queues', q, f), 'utf8')).messageId === original
          )
            return f.slice(0, -5);
        }
      }
      return null;
    },
    25_000,
    'inbound key',
  );
  const r = await post({ to: 'customer@example.org', subject: 'Re: need help', text: 'here you go', inReplyTo: key });
  assert.is(r.status, 202, JSON.stringify(r.body));
  assert.is(r.body.from, AGENT);
  await waitDone(r.body.id);
  const [got] = received(r.body.messageId);
  assert.is(got!.user, AGENT);
  assert.match(got!.raw.toString(), new RegExp(`In-Reply-To: ${original}`));
  // stored mail: the inbound key and the outbound id, from the server that owns the short name
  const inbound = await daemon.api('GET', `/v1/stored/agent/${key}`);
  assert.is(inbound.status, 200, JSON.stringify(inbound.body));
  assert.match(Buffer.from(inbound.body.source, 'base64').toString(), /help me/);
  const outbound = await daemon.api('GET', `/v1/stored/agent/${r.body.id}`);
  assert.is(outbound.status, 200);
  assert.match(Buffer.from(outbound.body.source, 'base64').toString(), /here you go/);
  const unknownServer = await post({ to: 'customer@example.org', text: 'x', inReplyTo: 'nosuch.1.2.0a1b2c3d' });
  assert.is(unknownServer.status, 422);
});

test('template: the role: template server; without one, the --system-smtp server', async () => {
  const t = await post({ kind: 'template', to: 'customer@example.org', subject: 'Your password', text: 'reset link' });
  assert.is(t.status, 202, JSON.stringify(t.body));
  assert.is(t.body.server, 'smtp/templates');
  await waitDone(t.body.id);
  assert.is(received(t.body.messageId)[0]!.user, NOREPLY);
  assert.is((await stateOf(t.body.id)).copy, 'none', 'no IMAP server logs in as noreply');
  await writeServers({ templateEnabled: false });
  assert.is((await apply()).code, 0);
  const s = await post({ kind: 'template', to: 'customer@example.org', subject: 'Your password', text: 'reset link' });
  assert.is(s.status, 202, JSON.stringify(s.body));
  assert.is(s.body.server, 'system:smtp/system');
  await waitDone(s.body.id);
  assert.is(received(s.body.messageId)[0]!.user, SYSTEM);
});

test('header injection is refused before anything is queued or sent', async () => {
  const before = smtp.messages.length;
  const attempts: Record<string, unknown>[] = [
    { from: AGENT, to: 'customer@example.org', subject: 'hi\r\nBcc: victim@example.net', text: 'x' },
    { from: AGENT, to: 'customer@example.org', subject: 'hi\nX-Injected: 1', text: 'x' },
    { from: `${AGENT}\r\nRCPT TO:<victim@example.net>`, to: 'customer@example.org', text: 'x' },
    { from: AGENT, to: 'customer@example.org\r\nRCPT TO:<victim@example.net>', text: 'x' },
    { from: AGENT, to: 'customer@example.org', cc: ['a@example.org\u2028Bcc: v@example.net'], text: 'x' },
    { from: AGENT, to: 'customer@example.org', subject: 'nul\u0000byte', text: 'x' },
    { from: AGENT, to: 'Victim <v@example.net>, customer@example.org', text: 'x' },
    {
      from: AGENT,
      to: 'customer@example.org',
      text: 'x',
      attachments: [{ name: 'a.txt\r\nX-Evil: 1', contentType: 'text/plain', content: 'aGk=' }],
    },
    {
      from: AGENT,
      to: 'customer@example.org',
      text: 'x',
      attachments: [{ name: 'a.txt', contentType: 'text/plain\r\nX-Evil: 1', content: 'aGk=' }],
    },
    { from: AGENT, to: 'customer@example.org', text: 'x', inReplyTo: 'agent.1.2.0a1b2c3d\r\nX-Evil: 1' },
    { from: AGENT, to: 'customer@example.org', text: 'x', headers: { 'X-Evil': '1' } },
  ];
  for (const body of attempts) {
    const r = await post(body);
    assert.is(r.status, 400, `${JSON.stringify(body)} → ${r.status} ${JSON.stringify(r.body)}`);
  }
  const list = await daemon.api('GET', '/v1/outbound');
  assert.is(list.body.outbox.length, 0);
  await new Promise((r) => setTimeout(r, 300));
  assert.is(smtp.messages.length, before, 'nothing was sent');
  assert.ok(
    !smtp.messages.some(
      (m) => /X-Evil|X-Injected|victim/i.test(m.raw.toString()) || m.envelope.rcptTo.some((a) => /victim/.test(a)),
    ),
  );
});

test('4xx is retried with backoff, then sent once; 5xx fails with the server reply', async () => {
  smtp.failNext(2, 451, '4.3.0 try again later');
  const r = await post({ from: AGENT, to: 'customer@example.org', subject: 'retry me', text: 'x' });
  const done = await waitDone(r.body.id);
  assert.is(received(r.body.messageId).length, 1);
  assert.ok(done.reply.startsWith('250'));
  smtp.failNext(1, 550, '5.1.1 mailbox unavailable');
  const f = await post({ from: AGENT, to: 'gone@example.org', subject: 'fail me', text: 'x' });
  const failed = await waitState(f.body.id, 'failed');
  assert.match(failed.reason, /550/);
  assert.match(failed.reason, /mailbox unavailable/);
  assert.is(received(f.body.messageId).length, 0);
  assert.is((await inStorage(AGENT, f.body.messageId)).length, 0, 'no sent copy of a failed message');
});

test('observability: send outcomes in loop counters and /metrics; outbox and the system send loop in mailctl status', async () => {
  const metric = async (line: RegExp) =>
    Number(line.exec(await fetch(`${daemon.url}/metrics`).then((r) => r.text()))?.[1] ?? 0);
  const sent = /^mailctl_messages_sent_total\{server="smtp\/agent"\} (\d+)$/m;
  const temporary = /^mailctl_messages_send_failed_total\{server="smtp\/agent",kind="temporary"\} (\d+)$/m;
  const permanent = /^mailctl_messages_send_failed_total\{server="smtp\/agent",kind="permanent"\} (\d+)$/m;
  const counters = async () =>
    ((await daemon.api('GET', '/v1/status')).body.servers.find((s: { id: string }) => s.id === 'smtp/agent')
      ?.counters ?? {}) as Record<string, number>;
  const [sent0, temporary0, permanent0, before] = [
    await metric(sent),
    await metric(temporary),
    await metric(permanent),
    await counters(),
  ];
  smtp.failNext(1, 451, '4.3.0 try again later');
  await waitDone((await post({ from: AGENT, to: 'customer@example.org', subject: 'counted', text: 'x' })).body.id);
  smtp.failNext(1, 554, '5.7.1 rejected');
  await waitState(
    (await post({ from: AGENT, to: 'customer@example.org', subject: 'refused', text: 'x' })).body.id,
    'failed',
  );
  assert.is(await metric(sent), sent0 + 1);
  assert.is(await metric(temporary), temporary0 + 1);
  assert.is(await metric(permanent), permanent0 + 1);
  const after = await counters();
  assert.equal(
    {
      sent: after.messages_sent! - (before.messages_sent ?? 0),
      deferred: after.messages_deferred! - (before.messages_deferred ?? 0),
      failed: after.messages_failed! - (before.messages_failed ?? 0),
    },
    { sent: 1, deferred: 1, failed: 1 },
  );
  const metricsText = await fetch(`${daemon.url}/metrics`).then((r) => r.text());
  assert.match(metricsText, /^mailctl_outbox_messages\{state="queued"\} 0$/m);
  const status = await daemon.api('GET', '/v1/status');
  assert.equal(status.body.outbox, { queued: 0, sending: 0, copying: 0, damagedFiles: 0 });
  assert.is(status.body.systemSendLoop.id, 'system:smtp/system');
  assert.is(status.body.systemSendLoop.state, 'running');
  const text = await cli(['status'], { ...ws.env, NO_COLOR: '1' });
  assert.is(text.code, 0, text.stdout + text.stderr);
  assert.match(text.stdout, /^system:smtp\/system\s+running\s+system send loop/m);
  assert.match(text.stdout, /^outbox: 0 queued, 0 sending, 0 waiting for their sent copy$/m);
  assert.match(text.stdout, /messages_sent \d+/);
});

test('attachments arrive base64-encoded with their name and type; Bcc is in the envelope, not the headers', async () => {
  const content = Buffer.from('%PDF-1.4 attachment body ✓').toString('base64');
  const r = await post({
    from: AGENT,
    to: 'customer@example.org',
    bcc: ['hidden@example.org'],
    subject: 'with file',
    html: '<p>see file</p>',
    attachments: [{ name: 'invoice.pdf', contentType: 'application/pdf', content }],
  });
  assert.is(r.status, 202, JSON.stringify(r.body));
  await waitDone(r.body.id);
  const [got] = received(r.body.messageId);
  const raw = got!.raw.toString();
  assert.match(raw, /Content-Type: application\/pdf; name=invoice\.pdf/);
  assert.match(raw, /filename=invoice\.pdf/);
  assert.ok(raw.replace(/\r\n/g, '').includes(content), 'the content, base64');
  assert.ok(got!.envelope.rcptTo.includes('hidden@example.org'));
  assert.not.match(raw, /hidden@example\.org/);
});

test('cancel (CLI): a message waiting for a retry is cancelled and never sent; mailctl send queues', async () => {
  smtp.failNext(50, 451, '4.3.0 try again later');
  const sent = await cli(
    [
      'send',
      '--state-dir',
      ws.stateDir,
      '--from',
      AGENT,
      '--to',
      'customer@example.org',
      '--subject',
      'cancel me',
      '--text',
      'x',
      '--format',
      'json',
    ],
    ws.env,
  );
  assert.is(sent.code, 0, sent.stderr);
  const { id, messageId } = JSON.parse(sent.stdout);
  const waiting = await eventually(
    async () => {
      const v = await stateOf(id);
      return v.attempts >= 1 && v.state === 'queued' ? v : null;
    },
    10_000,
    'first failed attempt',
  );
  const list = await cli(['outbox', 'list', '--state-dir', ws.stateDir], ws.env);
  assert.match(list.stdout, new RegExp(id));
  const cancelled = await eventually(
    async () => {
      const c = await cli(['outbox', 'cancel', id, '--state-dir', ws.stateDir], ws.env);
      return c.code === 0 ? c : null;
    },
    10_000,
    'cancel',
  );
  assert.match(cancelled.stdout, /cancelled/);
  smtp.failNext(0, 451, '');
  assert.is((await stateOf(id)).state, 'cancelled');
  assert.is((await cli(['outbox', 'cancel', id, '--state-dir', ws.stateDir], ws.env)).code, 1, 'cancelled twice');
  // past the retry it was waiting for (and then some): a sender that ignored the cancel would have sent it by now
  const retryAt = waiting.nextAttemptAt ? Date.parse(waiting.nextAttemptAt) : Date.now();
  await new Promise((r) => setTimeout(r, Math.max(retryAt - Date.now(), 0) + 1500));
  assert.is(received(messageId).length, 0);
  const refused = await cli(
    ['send', '--state-dir', ws.stateDir, '--from', 'nobody@example.com', '--to', 'c@example.org', '--text', 'x'],
    ws.env,
  );
  assert.is(refused.code, 1);
  assert.match(refused.stderr, /configured From addresses/);
});

test('stored mail after a short-name takeover is served from the server that owns the name now', async () => {
  const r = await post({ from: AGENT, to: 'customer@example.org', subject: 'before takeover', text: 'old mail' });
  await waitDone(r.body.id);
  const before = await daemon.api('GET', `/v1/stored/agent/${r.body.id}`);
  assert.is(before.status, 200);
  // the mailbox migrates to agent2; agent2's server takes over the short name "agent"
  const source = Buffer.from(before.body.source, 'base64');
  await dovecot.deliver(AGENT2, source);
  await dovecot.doveadm(['move', '-u', AGENT2, STORAGE, 'mailbox', 'INBOX', 'all']);
  await dovecot.doveadm(['expunge', '-u', AGENT, 'mailbox', STORAGE, 'all']);
  await writeServers({ templateEnabled: false, agentImapUser: AGENT2 });
  const applied = await apply();
  assert.is(applied.code, 0, applied.stdout + applied.stderr);
  const after = await eventually(
    async () => {
      const a = await daemon.api('GET', `/v1/stored/agent/${r.body.id}`);
      return a.status === 200 ? a : null;
    },
    10_000,
    'lookup after takeover',
  );
  const served = Buffer.from(after.body.source, 'base64').toString();
  assert.ok(served.includes(source.toString()), 'the migrated message');
  assert.match(served, /Delivered-To: agent2@example\.com/, "from the new owner's storage folder");
  assert.is(after.body.server, 'imap/agent');
  const state = await daemon.api('GET', '/v1/state');
  assert.is(state.body.state.servers['imap/agent'].config.spec.auth.user, AGENT2);
  const missing = await daemon.api('GET', '/v1/stored/agent/00000000-0000-0000-0000-000000000000');
  assert.is(missing.status, 404);
  assert.is((await daemon.api('GET', '/v1/stored/nosuch/x')).status, 404);
  assert.is(
    (await daemon.api('GET', `/v1/stored/agent/${r.body.id}`, undefined, null)).status,
    401,
    'the token is required',
  );
});

test('no secret in the daemon output or the outbox files', async () => {
  const files = await readdir(path.join(ws.stateDir, 'outbox'));
  const text =
    daemon.output() +
    (
      await Promise.all(
        files
          .filter((f) => f.endsWith('.jsonl') || f.endsWith('.msg') || f.endsWith('.batch'))
          .map((f) => readFile(path.join(ws.stateDir, 'outbox', f), 'utf8')),
      )
    ).join('');
  for (const secret of Object.values(PASS)) assert.not.ok(text.includes(secret), 'secret leaked');
});

test.run();
