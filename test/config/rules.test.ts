// Every rule code of the loader (rules.ts, load.ts, schema.ts, parse.ts, files.ts, sinks.ts) has a failing fixture asserting
// code, line and column; passing fixtures show what is accepted and which defaults are applied.
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadConfig, loadSystemSmtp } from '../../src/config/load.js';
import type { ImapServerSpec, SmtpServerSpec } from '../../src/config/model.js';
import { storeFindings } from '../../src/config/sinks.js';
import {
  coveredCodes,
  expectClean,
  expectDiagnostic,
  expectNoCode,
  expectOnly,
  flow,
  imap,
  load,
  mailbox,
  showDiagnostics,
  smtp,
} from './helpers.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const F = 'servers.d/support.yaml';

// ---------------------------------------------------------------------------------------------------------------
// Passing fixtures
// ---------------------------------------------------------------------------------------------------------------

test('a valid multi-file folder with both kinds and multi-document files has no diagnostics', () => {
  const r = load({ 'support.yaml': mailbox('support'), 'sales.yaml': mailbox('sales') });
  expectClean(r);
  assert.is(r.fileCount, 2);
  assert.equal(r.servers.map((s) => s.id).sort(), ['imap/sales', 'imap/support', 'smtp/sales', 'smtp/support']);
  assert.equal(r.flows.map((f) => f.id).sort(), ['flow/sales', 'flow/support']);
  const supportSmtp = r.servers.find((s) => s.id === 'smtp/support')!;
  assert.is(supportSmtp.source.file, F);
  assert.equal(supportSmtp.source.position, { line: 12, column: 1 }, 'second document starts after the first ---');
  assert.equal(r.flows.find((f) => f.id === 'flow/support')!.source.position, { line: 22, column: 1 });
});

test('defaults are applied: ports 993/465 with TLS, 143/587 without, folders, schedule, role, flags', () => {
  const tls = load({ 'a.yaml': mailbox('support') });
  expectClean(tls);
  const i = tls.servers.find((s) => s.id === 'imap/support')!.spec as ImapServerSpec;
  const o = tls.servers.find((s) => s.id === 'smtp/support')!.spec as SmtpServerSpec;
  assert.is(i.port, 993);
  assert.is(o.port, 465);
  assert.is(i.tls, true);
  assert.is(i.allowPlaintext, false);
  assert.is(i.folder, 'INBOX');
  assert.is(i.storageFolder, 'ContactStorage');
  assert.is(i.pollSchedule, '* * * * *');
  assert.is(i.backfill, 'unseen');
  assert.is(i.maxMessageSize, 41_943_040);
  assert.is(i.disableCompression, false);
  assert.is(i.role, 'agent');
  assert.is(i.enabled, true);
  assert.equal(o.additionalFromAddresses, []);
  assert.is(o.role, 'agent');
  assert.is(tls.flows[0]!.spec.autoReplies, 'deliver');

  const plain = load({ 'a.yaml': mailbox('support', ['tls: false'], ['tls: false']) });
  expectClean(plain);
  assert.is(plain.servers.find((s) => s.id === 'imap/support')!.spec.port, 143);
  assert.is(plain.servers.find((s) => s.id === 'smtp/support')!.spec.port, 587);

  const explicit = load({ 'a.yaml': mailbox('support', ['port: 10993']) });
  assert.is(explicit.servers.find((s) => s.id === 'imap/support')!.spec.port, 10993);
});

test('apiVersion mailctl/v1 is accepted; a full flow with globs, header matcher and webhook sink is valid', () => {
  const flowText = [
    'apiVersion: mailctl/v1',
    'kind: EmailFlow',
    'name: support',
    'routes:',
    '  - queue: vip',
    '    when:',
    '      from: ["*@bigcustomer.example", ceo@partner.example]',
    '      header: {name: X-Priority, value: "1*"}',
    '  - queue: billing',
    '    when: {to: billing@example.com, subject: "*invoice*"}',
    '  - queue: general',
    'autoReplies: {queue: auto-replies}',
    'deliver:',
    '  webhook:',
    '    url: https://hooks.example.com/mail',
    '    secret: "${env:MAILCTL_SECRET_HOOK}"',
    '',
  ].join('\n');
  const r = load({ 'a.yaml': `apiVersion: mailctl/v1\n${imap()}---\n${smtp()}`, 'f.yaml': flowText });
  expectClean(r);
  assert.equal(r.flows[0]!.spec.autoReplies, { queue: 'auto-replies' });
});

test('oauth2: a refresh-token grant or only an accessToken are both valid', () => {
  const grant = smtp({ extra: [] }).replace(
    '  type: basic\n  user: support@example.com\n  password: "${env:MAILCTL_SECRET_PW}"\n',
    '  type: oauth2\n  user: support@example.com\n  oauth2:\n    tokenUrl: https://login.example.com/token\n    clientId: mailctl\n    clientSecret: "${env:CS}"\n    refreshToken: "${file:/run/secrets/rt}"\n    scope: mail\nreauthenticateOnSave: true\n',
  );
  const access = smtp({ shortName: 'other', user: 'other@example.com' }).replace(
    '  type: basic\n  user: other@example.com\n  password: "${env:MAILCTL_SECRET_PW}"\n',
    '  type: oauth2\n  user: other@example.com\n  oauth2:\n    accessToken: "${env:AT}"\n',
  );
  const r = load({ 'a.yaml': grant, 'b.yaml': access });
  expectClean(r);
  assert.is(r.servers.length, 2);
});

test('a disabled imap server needs no flow; a disabled duplicate template/from address is allowed', () => {
  const r = load({
    'a.yaml': mailbox('support'),
    'b.yaml': [imap({ shortName: 'old', flow: null, extra: ['enabled: false'] }), smtp({ shortName: 'old' })].join(
      '---\n',
    ),
    'c.yaml': [
      smtp({ shortName: 'noreply', extra: ['role: template'] }),
      smtp({ shortName: 'noreply2', user: 'noreply@example.com', extra: ['role: template', 'enabled: false'] }),
    ].join('---\n'),
  });
  expectClean(r);
});

test('poll schedules: every 10 s, 5-field and macros pass', () => {
  for (const schedule of ['*/10 * * * * *', '0,30 * * * * *', '*/5 * * * *', '@hourly', '15 * * * * *']) {
    const r = load({ 'a.yaml': mailbox('support', [`pollSchedule: "${schedule}"`]) });
    assert.is(r.diagnostics.length, 0, `${schedule}:\n${showDiagnostics(r.diagnostics)}`);
  }
});

test('CRLF line endings and a UTF-8 BOM are fine', () => {
  const r = load({ 'crlf.yaml': mailbox('support').replace(/\n/g, '\r\n'), 'bom.yaml': `\ufeff${mailbox('sales')}` });
  expectClean(r);
  assert.equal(r.servers.find((s) => s.id === 'smtp/support')!.source.position, { line: 12, column: 1 });
});

// ---------------------------------------------------------------------------------------------------------------
// Cross-file rules (rules.ts)
// ---------------------------------------------------------------------------------------------------------------

test('duplicate-identity: both places are named', () => {
  const r = load({ 'a.yaml': mailbox('support'), 'b.yaml': imap({ name: 'Other inbox' }) });
  expectDiagnostic(r, {
    code: 'duplicate-identity',
    file: 'servers.d/b.yaml',
    line: 4,
    column: 12,
    resource: 'imap/support',
    message: ['imap/support', 'servers.d/a.yaml:1:1', 'here'],
  });
  assert.not.ok(r.valid);
});

test('duplicate-name: two servers of one type with the same name', () => {
  const r = load({
    'a.yaml': mailbox('support'),
    'b.yaml': mailbox('sales').replace('name: Inbox sales', 'name: Inbox support'),
  });
  expectOnly(r, {
    code: 'duplicate-name',
    file: 'servers.d/b.yaml',
    line: 3,
    column: 7,
    resource: 'imap/sales',
    message: ['"Inbox support"', 'imap/support'],
  });
  // Same name, other type: fine.
  expectClean(load({ 'a.yaml': mailbox('support').replace('name: Outbox support', 'name: Inbox support') }));
});

test('duplicate-flow: the second definition is pointed at', () => {
  const r = load({ 'a.yaml': mailbox('support'), 'b.yaml': flow('support') });
  expectOnly(r, {
    code: 'duplicate-flow',
    file: 'servers.d/b.yaml',
    line: 2,
    column: 7,
    message: ['"support"', 'servers.d/a.yaml:22:1'],
  });
});

test('storage-folder-equals-folder (also INBOX case-insensitively, also with the default folder)', () => {
  const r = load({ 'support.yaml': mailbox('support', ['folder: INBOX', 'storageFolder: INBOX']) });
  const d = expectOnly(r, {
    code: 'storage-folder-equals-folder',
    file: F,
    line: 12,
    column: 16,
    resource: 'imap/support',
  });
  assert.is(d.message, 'storageFolder must differ from folder (both "INBOX")');
  expectOnly(load({ 'support.yaml': mailbox('support', ['storageFolder: inbox']) }), {
    code: 'storage-folder-equals-folder',
    line: 11,
    column: 16,
  });
  expectOnly(load({ 'support.yaml': mailbox('support', ['folder: Support', 'storageFolder: Support']) }), {
    code: 'storage-folder-equals-folder',
    line: 12,
    column: 16,
  });
  // Other folders are case-sensitive on IMAP servers.
  expectClean(load({ 'support.yaml': mailbox('support', ['folder: Support', 'storageFolder: support']) }));
});

test('flow-required: an enabled imap server without a flow', () => {
  const r = load({ 'support.yaml': [imap({ flow: null }), smtp(), flow('support')].join('---\n') });
  expectDiagnostic(r, {
    code: 'flow-required',
    file: F,
    line: 1,
    column: 1,
    resource: 'imap/support',
    message: ['flow:'],
  });
});

test('flow-not-found: points at the flow: line and lists the flows there are', () => {
  const r = load({ 'support.yaml': [imap({ flow: 'suport' }), smtp(), flow('support')].join('---\n') });
  expectDiagnostic(r, { code: 'flow-not-found', file: F, line: 10, column: 7, message: ['"suport"', 'support'] });
  const none = load({ 'support.yaml': [imap(), smtp()].join('---\n') });
  expectOnly(none, { code: 'flow-not-found', line: 10, column: 7, message: ['no EmailFlow'] });
});

test('multiple-template-servers: the second enabled template server', () => {
  const r = load({
    'a.yaml': mailbox('support'),
    'noreply.yaml': [
      smtp({ shortName: 'noreply', extra: ['role: template'] }),
      smtp({ shortName: 'mailer', extra: ['role: template'] }),
    ].join('---\n'),
  });
  expectOnly(r, {
    code: 'multiple-template-servers',
    file: 'servers.d/noreply.yaml',
    line: 21,
    column: 7,
    resource: 'smtp/mailer',
    message: ['smtp/noreply'],
  });
});

test('from-address-conflict: an address claimed by two enabled smtp servers (case-insensitive)', () => {
  const r = load({
    'a.yaml': mailbox('support'),
    'b.yaml': smtp({ shortName: 'helpdesk', user: 'Support@Example.COM' }),
  });
  expectOnly(r, {
    code: 'from-address-conflict',
    file: 'servers.d/b.yaml',
    line: 8,
    column: 9,
    resource: 'smtp/helpdesk',
    message: ['Support@Example.COM', 'smtp/support'],
  });
  const extra = load({
    'a.yaml': mailbox('support'),
    'b.yaml': smtp({
      shortName: 'helpdesk',
      extra: ['additionalFromAddresses:', '  - help@example.com', '  - SUPPORT@example.com'],
    }),
  });
  expectDiagnostic(extra, { code: 'from-address-conflict', file: 'servers.d/b.yaml', line: 12, column: 5 });
  // The same address twice on one server is not a conflict.
  expectClean(load({ 'a.yaml': mailbox('support', [], ['additionalFromAddresses: [support@example.com]']) }));
});

test('smtp-no-from-address: a user that is not an address and no additional From addresses', () => {
  const r = load({ 'a.yaml': mailbox('support'), 'relay.yaml': smtp({ shortName: 'relay', user: 'apikey' }) });
  expectOnly(r, {
    code: 'smtp-no-from-address',
    file: 'servers.d/relay.yaml',
    line: 8,
    column: 9,
    message: ['"apikey"'],
  });
  expectClean(
    load({
      'a.yaml': mailbox('support'),
      'relay.yaml': smtp({
        shortName: 'relay',
        user: 'apikey',
        extra: ['additionalFromAddresses: [news@example.com]'],
      }),
    }),
  );
});

test('duplicate-mailbox-poller: two enabled imap servers on the same host + user + folder', () => {
  const copy = imap({ shortName: 'support-copy', user: 'support@example.com', extra: ['folder: inbox'] });
  const r = load({ 'a.yaml': mailbox('support'), 'b.yaml': copy });
  expectOnly(r, {
    code: 'duplicate-mailbox-poller',
    file: 'servers.d/b.yaml',
    line: 11,
    column: 9,
    resource: 'imap/support-copy',
    message: ['imap/support', 'support@example.com'],
  });
  // Host compared case-insensitively; with the default folder the server's document is pointed at.
  const hostCase = load({
    'a.yaml': mailbox('support'),
    'b.yaml': imap({ shortName: 'support-copy', user: 'support@example.com', host: 'IMAP.example.com' }),
  });
  expectOnly(hostCase, { code: 'duplicate-mailbox-poller', file: 'servers.d/b.yaml', line: 1, column: 1 });
  // Another folder, or disabled: fine.
  expectClean(
    load({
      'a.yaml': mailbox('support'),
      'b.yaml': imap({ shortName: 'support-copy', user: 'support@example.com', extra: ['folder: Archive'] }),
    }),
  );
  expectClean(
    load({
      'a.yaml': mailbox('support'),
      'b.yaml': imap({ shortName: 'support-copy', user: 'support@example.com', extra: ['enabled: false'] }),
    }),
  );
});

test('default-route: exactly one route without when, last', () => {
  const early = flow('support').replace(
    'routes:\n  - queue: general\n',
    'routes:\n  - queue: general\n  - queue: billing\n    when: {subject: "*invoice*"}\n',
  );
  const r = load({ 'a.yaml': [imap(), smtp()].join('---\n'), 'f.yaml': early });
  expectDiagnostic(r, {
    code: 'default-route',
    file: 'servers.d/f.yaml',
    line: 4,
    column: 5,
    message: ['only the last route'],
  });
  expectDiagnostic(r, {
    code: 'default-route',
    file: 'servers.d/f.yaml',
    line: 5,
    column: 5,
    message: ['last route must have no "when"'],
  });
  assert.is(r.diagnostics.length, 2);
});

test('invalid-sink: a directory with .. segments; both sinks; no sink', () => {
  const dots = load({
    'a.yaml': [imap(), smtp()].join('---\n'),
    'f.yaml': flow('support').replace('directory: inbound/support', 'directory: inbound/../../etc'),
  });
  expectOnly(dots, { code: 'invalid-sink', file: 'servers.d/f.yaml', line: 6, column: 14, message: ['..'] });
  const both = load({
    'f.yaml': flow('support', ['  webhook: {url: "https://hooks.example.com/x", secret: "${env:S}"}']),
  });
  expectOnly(both, {
    code: 'invalid-sink',
    line: 6,
    column: 3,
    resource: 'flow/support',
    message: ['exactly one sink'],
  });
  const none = load({ 'f.yaml': flow('support').replace('deliver:\n  directory: inbound/support\n', 'deliver: {}\n') });
  expectOnly(none, { code: 'invalid-sink', line: 5, column: 10 });
});

test('the postgres sink: accepted with its default table spelled out; a table name of the store itself is refused', () => {
  const pgFlow = (extra: string) =>
    flow('support').replace('deliver:\n  directory: inbound/support\n', `deliver:\n  postgres: ${extra}\n`);
  const plain = load({ 'a.yaml': [imap(), smtp()].join('---\n'), 'f.yaml': pgFlow('{}') });
  expectClean(plain);
  assert.equal(plain.flows[0]!.spec.deliver, { postgres: { table: 'inbound_messages' } });
  const named = load({ 'a.yaml': [imap(), smtp()].join('---\n'), 'f.yaml': pgFlow('{ table: support_mail }') });
  expectClean(named);
  assert.equal(named.flows[0]!.spec.deliver, { postgres: { table: 'support_mail' } });
  const reserved = load({ 'a.yaml': [imap(), smtp()].join('---\n'), 'f.yaml': pgFlow('{ table: checkpoints }') });
  expectOnly(reserved, {
    code: 'reserved-table',
    file: 'servers.d/f.yaml',
    line: 6,
    column: 22,
    message: ['"checkpoints" is one of the store\'s own tables'],
  });
  const badName = load({ 'a.yaml': [imap(), smtp()].join('---\n'), 'f.yaml': pgFlow('{ table: Inbound-Mail }') });
  expectOnly(badName, { code: 'invalid-value', file: 'servers.d/f.yaml', line: 6, column: 22 });

  // what the running store can deliver: plan and the daemon ask storeFindings with the store's kind
  assert.equal(storeFindings(plain.flows, 'postgres'), []);
  const onFile = { diagnostics: storeFindings(plain.flows, 'file') };
  expectOnly(onFile, {
    code: 'sink-needs-postgres-store',
    file: 'servers.d/f.yaml',
    line: 6,
    column: 3,
    resource: 'flow/support',
    message: ['"support" delivers into PostgreSQL', '--store postgres://'],
  });
  assert.equal(storeFindings(load({ 'a.yaml': mailbox('support') }).flows, 'file'), [], 'other sinks: nothing');
});

test('warning no-reply-server: an imap server with no enabled smtp server for its user', () => {
  const r = load({ 'support.yaml': [imap(), flow('support')].join('---\n') });
  expectOnly(r, {
    code: 'no-reply-server',
    file: F,
    line: 8,
    column: 9,
    severity: 'warning',
    message: ['support@example.com'],
  });
  assert.ok(r.valid, 'warnings do not make the folder invalid');
  const disabled = load({
    'support.yaml': [imap(), smtp({ extra: ['enabled: false'] }), flow('support')].join('---\n'),
  });
  expectOnly(disabled, { code: 'no-reply-server', line: 8, column: 9, severity: 'warning' });
  // The user is compared case-insensitively.
  expectClean(load({ 'support.yaml': [imap(), smtp({ user: 'SUPPORT@example.com' }), flow('support')].join('---\n') }));
});

test('warning unused-flow', () => {
  const r = load({ 'a.yaml': mailbox('support'), 'f.yaml': flow('spare') });
  expectOnly(r, {
    code: 'unused-flow',
    file: 'servers.d/f.yaml',
    line: 2,
    column: 7,
    severity: 'warning',
    resource: 'flow/spare',
  });
  assert.ok(r.valid);
});

test('warning plaintext: allowPlaintext is always reported', () => {
  const r = load({ 'support.yaml': mailbox('support', ['tls: false', 'allowPlaintext: true']) });
  expectOnly(r, { code: 'plaintext', file: F, line: 12, column: 17, severity: 'warning', message: ['clear text'] });
  const noEffect = load({ 'support.yaml': mailbox('support', [], ['allowPlaintext: true']) });
  expectOnly(noEffect, { code: 'plaintext', line: 21, column: 17, severity: 'warning', message: ['no effect'] });
});

test('warning sni-missing: IP host with TLS and no sniServerName', () => {
  const r = load({ 'support.yaml': mailbox('support').replace('host: imap.example.com', 'host: 192.0.2.10') });
  expectOnly(r, { code: 'sni-missing', file: F, line: 5, column: 7, severity: 'warning', message: ['sniServerName'] });
  expectClean(
    load({
      'support.yaml': mailbox('support', ['sniServerName: imap.example.com']).replace(
        'host: imap.example.com',
        'host: 192.0.2.10',
      ),
    }),
  );
  const v6 = load({ 'support.yaml': mailbox('support').replace('host: imap.example.com', 'host: "2001:db8::1"') });
  expectOnly(v6, { code: 'sni-missing', line: 5, column: 7, severity: 'warning' });
});

test('warning insecure-token-url: an http:// token endpoint', () => {
  const server = smtp().replace(
    '  type: basic\n  user: support@example.com\n  password: "${env:MAILCTL_SECRET_PW}"\n',
    '  type: oauth2\n  user: support@example.com\n  oauth2:\n    tokenUrl: http://login.example.com/token\n    clientId: mailctl\n    clientSecret: "${env:CS}"\n    refreshToken: "${env:RT}"\n',
  );
  const r = load({ 'a.yaml': server });
  expectOnly(r, { code: 'insecure-token-url', file: 'servers.d/a.yaml', line: 10, column: 15, severity: 'warning' });
});

test('poll-schedule-invalid and poll-schedule-too-frequent', () => {
  const bad = load({ 'support.yaml': mailbox('support', ['pollSchedule: "61 * * * *"']) });
  expectOnly(bad, { code: 'poll-schedule-invalid', file: F, line: 11, column: 15, message: ['"61 * * * *"'] });
  const words = load({ 'support.yaml': mailbox('support', ['pollSchedule: every minute']) });
  expectOnly(words, { code: 'poll-schedule-invalid', line: 11, column: 15 });
  for (const fast of ['*/5 * * * * *', '* * * * * *', '0,5 * * * * *', '0-59/9 * * * * *']) {
    const r = load({ 'support.yaml': mailbox('support', [`pollSchedule: "${fast}"`]) });
    expectOnly(r, { code: 'poll-schedule-too-frequent', line: 11, column: 15, message: ['10 s'] });
  }
});

// ---------------------------------------------------------------------------------------------------------------
// Kind and type (load.ts)
// ---------------------------------------------------------------------------------------------------------------

test('missing-kind, unknown-kind, pop3-unsupported (also in a later document)', () => {
  expectOnly(load({ 'a.yaml': 'name: x\n' }), { code: 'missing-kind', line: 1, column: 1 });
  expectOnly(load({ 'a.yaml': 'kind: Server\nname: x\n' }), {
    code: 'unknown-kind',
    line: 1,
    column: 7,
    message: ['"Server"', 'EmailServer'],
  });
  expectOnly(load({ 'a.yaml': 'kind: 5\n' }), { code: 'unknown-kind', line: 1, column: 7 });
  const pop = load({ 'support.yaml': `${flow('x')}---\n${imap().replace('type: imap', 'type: pop3')}` });
  expectDiagnostic(pop, { code: 'pop3-unsupported', file: F, line: 9, column: 7, message: ['POP3', 'imap'] });
  expectDiagnostic(load({ 'a.yaml': imap().replace('type: imap', 'type: POP3') }), {
    code: 'pop3-unsupported',
    line: 2,
    column: 7,
  });
  const second = load({ 'a.yaml': `${mailbox('support')}---\n# a forgotten kind\nname: x\n` });
  expectOnly(second, { code: 'missing-kind', line: 30, column: 1 });
});

test('loadSystemSmtp: file-unreadable and system-smtp-invalid', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'mailctl-sys-'));
  try {
    const missing = await loadSystemSmtp(path.join(dir, 'nope.yaml'));
    expectOnly(missing, { code: 'file-unreadable', line: 1, column: 1 });
    await writeFile(path.join(dir, 'imap.yaml'), imap({ flow: null, extra: ['enabled: false'] }));
    const wrong = await loadSystemSmtp(path.join(dir, 'imap.yaml'));
    expectDiagnostic(wrong, { code: 'system-smtp-invalid', line: 1, column: 1, message: ['smtp'] });
    await writeFile(path.join(dir, 'smtp.yaml'), smtp({ shortName: 'system' }));
    const ok = await loadSystemSmtp(path.join(dir, 'smtp.yaml'));
    assert.is(ok.diagnostics.length, 0, showDiagnostics(ok.diagnostics));
    assert.is(ok.server?.id, 'smtp/system');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------------------------------------------
// Schema (schema.ts)
// ---------------------------------------------------------------------------------------------------------------

test('literal-secret: the message says how to fix it and never contains the literal', () => {
  const r = load({
    'support.yaml': mailbox('support').replace('password: "${env:MAILCTL_SECRET_PW}"', 'password: Hunter2-Sup3rSecret'),
  });
  const d = expectOnly(r, {
    code: 'literal-secret',
    file: F,
    line: 9,
    column: 13,
    resource: 'imap/support',
    message: ['${env:', '${file:'],
  });
  assert.not.ok(d.message.includes('Hunter2'), d.message);
  const oauth = load({
    'a.yaml': smtp().replace(
      '  type: basic\n  user: support@example.com\n  password: "${env:MAILCTL_SECRET_PW}"\n',
      '  type: oauth2\n  user: support@example.com\n  oauth2:\n    accessToken: ya29.A0ARrdaM-secret-token\n',
    ),
  });
  const o = expectOnly(oauth, { code: 'literal-secret', line: 10, column: 18 });
  assert.not.ok(o.message.includes('ya29'));
  const hook = load({
    'f.yaml': flow('x').replace(
      'directory: inbound/x',
      'webhook: {url: "https://hooks.example.com", secret: whsec-literal}',
    ),
  });
  const h = expectOnly(hook, { code: 'literal-secret', line: 6, column: 55 });
  assert.not.ok(h.message.includes('whsec'));
  // A numeric password is not echoed either.
  const num = load({ 'a.yaml': smtp().replace('password: "${env:MAILCTL_SECRET_PW}"', 'password: 987654321') });
  const n = expectOnly(num, { code: 'invalid-type', line: 9, column: 13 });
  assert.not.ok(n.message.includes('987654321'), n.message);
});

test('invalid-secret-reference: malformed ${...} references', () => {
  for (const ref of ['${env:1BAD}', '${file:relative/path}', '${vault:x}', '${env:A-B}', '${env:X']) {
    const r = load({ 'a.yaml': smtp().replace('"${env:MAILCTL_SECRET_PW}"', JSON.stringify(ref)) });
    expectOnly(r, { code: 'invalid-secret-reference', line: 9, column: 13, message: ['${env:NAME}'] });
  }
});

test('secret-ref-not-normal: another spelling of a secret file (., .., //, trailing /) is refused', () => {
  for (const [path, why] of <[string, string][]>[
    ['/run/secrets/./pw', '"." or ".."'],
    ['/run/secrets/x/../pw', '"." or ".."'],
    ['/run/secrets//pw', '"//"'],
    ['//run/secrets/pw', '"//"'],
    ['/run/secrets/pw/', 'ends with "/"'],
  ]) {
    const r = load({ 'a.yaml': smtp().replace('"${env:MAILCTL_SECRET_PW}"', JSON.stringify(`\${file:${path}}`)) });
    expectOnly(r, { code: 'secret-ref-not-normal', line: 9, column: 13, message: [path, why] });
  }
  const oauth = load({
    'a.yaml': smtp().replace(
      '  type: basic\n  user: support@example.com\n  password: "${env:MAILCTL_SECRET_PW}"\n',
      '  type: oauth2\n  user: support@example.com\n  oauth2:\n    accessToken: "${file:/run/secrets/./token}"\n',
    ),
  });
  expectOnly(oauth, { code: 'secret-ref-not-normal', line: 10, column: 18 });
  const hook = load({
    'f.yaml': flow('x').replace(
      'directory: inbound/x',
      'webhook: {url: "https://hooks.example.com", secret: "${file:/run/secrets/hooks//x}"}',
    ),
    's.yaml': imap({ shortName: 'x', flow: 'x' }) + '---\n' + smtp({ shortName: 'x' }),
  });
  expectOnly(hook, { code: 'secret-ref-not-normal', file: 'servers.d/f.yaml', line: 6, column: 55 });
  expectClean(
    load({ 'a.yaml': mailbox('support').replaceAll('${env:MAILCTL_SECRET_PW}', '${file:/run/secrets/..data/pw}') }),
  );
});

test('field-not-for-type: names the field and the type', () => {
  const r = load({ 'a.yaml': imap({ extra: ['additionalFromAddresses: [a@example.com]'] }) });
  expectOnly(r, {
    code: 'field-not-for-type',
    line: 11,
    column: 1,
    resource: 'imap/support',
    message: ['"additionalFromAddresses"', 'smtp', 'type imap'],
  });
  const s = load({ 'a.yaml': smtp({ extra: ['flow: support', 'storageFolder: X'] }) });
  expectDiagnostic(s, { code: 'field-not-for-type', line: 10, column: 1, message: ['"flow"', 'imap', 'type smtp'] });
  expectDiagnostic(s, { code: 'field-not-for-type', line: 11, column: 1, message: ['"storageFolder"'] });
  const reauth = load({ 'a.yaml': smtp({ extra: ['reauthenticateOnSave: true'] }) });
  expectOnly(reauth, { code: 'field-not-for-type', line: 10, column: 1, message: ['oauth2'] });
  const pw = load({
    'a.yaml': smtp()
      .replace('  type: basic\n', '  type: oauth2\n')
      .replace('  password:', '  oauth2: {accessToken: "${env:A}"}\n  password:'),
  });
  expectOnly(pw, { code: 'field-not-for-type', line: 10, column: 3, message: ['"password"', 'oauth2'] });
});

test('role: template on an imap server', () => {
  const r = load({ 'a.yaml': imap({ extra: ['role: template'] }) });
  expectOnly(r, { code: 'field-not-for-type', line: 11, column: 7, message: ['template', 'smtp'] });
});

test('unknown-field with did-you-mean, at top level and nested', () => {
  const r = load({ 'a.yaml': imap({ extra: ['hots: imap.example.com'] }) });
  expectOnly(r, { code: 'unknown-field', line: 11, column: 1, message: ['"hots"', 'did you mean "host"'] });
  const nested = load({
    'a.yaml': mailbox('support').replace('  - queue: general', '  - queue: general\n    wehn: {subject: x}'),
  });
  expectOnly(nested, {
    code: 'unknown-field',
    line: 26,
    column: 5,
    message: ['"wehn"', 'routes[0]', 'did you mean "when"'],
  });
  const far = load({ 'a.yaml': imap({ extra: ['colour: blue'] }) });
  const d = expectOnly(far, { code: 'unknown-field', line: 11, column: 1 });
  assert.not.ok(d.message.includes('did you mean'), 'no hint when nothing is close');
});

test('missing-field: points at the mapping that lacks the key', () => {
  const top = load({ 'a.yaml': imap().replace('host: imap.example.com\n', '') });
  expectOnly(top, { code: 'missing-field', line: 1, column: 1, message: ['"host"'] });
  const auth = load({ 'a.yaml': imap().replace('  user: support@example.com\n', '') });
  expectOnly(auth, { code: 'missing-field', line: 7, column: 3, message: ['auth', '"user"'] });
  const route = load({
    'f.yaml': flow('x').replace('  - queue: general', '  - when: {subject: x}\n  - queue: general'),
  });
  expectDiagnostic(route, { code: 'missing-field', line: 4, column: 5, message: ['"queue"'] });
  const second = load({ 'a.yaml': `${flow('x')}---\nkind: EmailFlow\nname: y\n` });
  expectDiagnostic(second, { code: 'missing-field', line: 8, column: 1, message: ['"routes"'] });
});

test('invalid-api-version', () => {
  const r = load({ 'a.yaml': `apiVersion: mailctl/v2\n${imap()}` });
  expectOnly(r, { code: 'invalid-api-version', line: 1, column: 13, message: ['mailctl/v1'] });
});

const oauth2Smtp = (lines: string[], o: { shortName?: string; user?: string } = {}) =>
  smtp(o).replace(
    `  type: basic\n  user: ${o.user ?? 'support@example.com'}\n  password: "\${env:MAILCTL_SECRET_PW}"\n`,
    [
      '  type: oauth2',
      `  user: ${o.user ?? 'support@example.com'}`,
      '  oauth2:',
      ...lines.map((l) => `    ${l}`),
      '',
    ].join('\n'),
  );

test('oauth2: accessToken with a grant is oauth2-conflict; an empty block is missing-field', () => {
  const grant = [
    'tokenUrl: https://login.example.com/token',
    'clientId: c',
    'clientSecret: "${env:CS}"',
    'refreshToken: "${env:RT}"',
  ];
  const both = load({ 'a.yaml': oauth2Smtp([...grant, 'accessToken: "${env:AT}"']) });
  expectOnly(both, { code: 'oauth2-conflict', line: 10, column: 5, message: ['accessToken', 'not both'] });
  const orphan = load({ 'a.yaml': oauth2Smtp(['clientId: c', 'accessToken: "${env:AT}"']) });
  expectOnly(orphan, { code: 'oauth2-conflict', line: 10, column: 5, message: ['clientId'] });
  const empty = load({ 'a.yaml': oauth2Smtp([]).replace('  oauth2:\n', '  oauth2: {}\n') });
  expectOnly(empty, { code: 'missing-field', line: 9, column: 11, message: ['accessToken'] });
});

test('oauth2: complete combinations (sign-in, public client, presets, app-only, jwt_bearer) validate', () => {
  const cases = [
    // a public client signed in by `mailctl auth login` (no secret, no refresh-token reference)
    [
      'tokenUrl: https://login.example.com/token',
      'deviceAuthorizationUrl: https://login.example.com/device',
      'clientId: c',
    ],
    ['tokenUrl: https://login.example.com/token', 'authorizationUrl: https://login.example.com/auth', 'clientId: c'],
    ['provider: microsoft', 'tenant: contoso.onmicrosoft.com', 'clientId: c', 'clientSecret: "${env:CS}"'],
    ['provider: google', 'clientId: c', 'clientSecret: "${env:CS}"', 'refreshToken: "${env:RT}"'],
    [
      'provider: microsoft',
      'tenant: contoso.com',
      'grant: client_credentials',
      'clientId: c',
      'clientSecret: "${env:CS}"',
    ],
    [
      'provider: microsoft',
      'tenant: 00000000-0000-0000-0000-000000000001',
      'grant: client_credentials',
      'clientId: c',
      'clientCertificate: "${file:/run/secrets/app.crt}"',
      'clientKey: "${file:/run/secrets/app.key}"',
    ],
    ['provider: google', 'grant: jwt_bearer', 'clientId: sa@p.iam.gserviceaccount.com', 'clientKey: "${env:SAKEY}"'],
  ];
  for (const lines of cases) expectClean(load({ 'a.yaml': oauth2Smtp(lines) }));
});

test('oauth2-incomplete: what each grant lacks, on the field that asks for more', () => {
  const at = (lines: string[], line: number, column: number, message: string[]) =>
    expectOnly(load({ 'a.yaml': oauth2Smtp(lines) }), { code: 'oauth2-incomplete', line, column, message });
  at(['tokenUrl: https://login.example.com/token', 'clientId: c'], 10, 5, ['auth login', 'deviceAuthorizationUrl']);
  at(['clientId: c', 'refreshToken: "${env:RT}"'], 10, 5, ['tokenUrl']);
  at(['tokenUrl: https://login.example.com/token', 'refreshToken: "${env:RT}"'], 10, 5, ['clientId']);
  at(['provider: microsoft', 'clientId: c'], 10, 15, ['tenant']);
  at(['provider: google', 'grant: client_credentials', 'clientId: c'], 11, 12, ['clientSecret', 'clientCertificate']);
  at(['provider: google', 'grant: jwt_bearer', 'clientId: sa'], 11, 12, ['clientKey']);
  at(['provider: google', 'grant: client_credentials', 'clientId: c', 'clientCertificate: "${env:CRT}"'], 13, 24, [
    'clientKey',
  ]);
  at(['provider: google', 'clientId: c', 'clientKey: "${env:KEY}"', 'refreshToken: "${env:RT}"'], 12, 16, [
    'clientCertificate',
  ]);
});

test('oauth2-conflict: fields that exclude each other', () => {
  const at = (lines: string[], line: number, column: number, message: string[]) =>
    expectOnly(load({ 'a.yaml': oauth2Smtp(lines) }), { code: 'oauth2-conflict', line, column, message });
  at(['provider: google', 'tenant: contoso.com', 'clientId: c', 'refreshToken: "${env:RT}"'], 11, 13, ['microsoft']);
  at(
    ['provider: microsoft', 'tenant: common', 'grant: client_credentials', 'clientId: c', 'clientSecret: "${env:S}"'],
    11,
    13,
    ['"common"'],
  );
  at(
    [
      'provider: google',
      'clientId: c',
      'clientSecret: "${env:S}"',
      'clientCertificate: "${env:C}"',
      'clientKey: "${env:K}"',
    ],
    13,
    24,
    ['not both'],
  );
  at(
    ['provider: google', 'grant: jwt_bearer', 'clientId: sa', 'clientKey: "${env:K}"', 'clientSecret: "${env:S}"'],
    14,
    19,
    ['clientKey'],
  );
  at(
    [
      'provider: google',
      'grant: client_credentials',
      'clientId: c',
      'clientSecret: "${env:S}"',
      'refreshToken: "${env:R}"',
    ],
    14,
    19,
    ['refresh_token grant only'],
  );
});

test('oauth2-credential-conflict: servers sharing a credential must ask for its tokens alike', () => {
  const grant = (scope: string) => [
    'tokenUrl: https://login.example.com/token',
    'clientId: c',
    'clientSecret: "${env:CS}"',
    'refreshToken: "${file:/run/secrets/rt}"',
    `scope: ${scope}`,
  ];
  const same = load({
    'a.yaml':
      oauth2Smtp(grant('mail')) +
      '---\n' +
      oauth2Smtp(grant('mail'), { shortName: 'other', user: 'other@example.com' }),
  });
  expectClean(same);
  const differ = load({
    'a.yaml':
      oauth2Smtp(grant('mail')) +
      '---\n' +
      oauth2Smtp(grant('imap'), { shortName: 'other', user: 'other@example.com' }),
  });
  expectOnly(differ, {
    code: 'oauth2-credential-conflict',
    line: 29,
    column: 12,
    message: ['smtp/other and smtp/support', 'scope'],
  });
});

test('oauth2 references: clientCertificate and clientKey are secrets (literal-secret, secret-ref-not-normal)', () => {
  const lines = ['provider: google', 'grant: client_credentials', 'clientId: c', 'clientCertificate: "${env:C}"'];
  const literal = load({ 'a.yaml': oauth2Smtp([...lines, 'clientKey: "-----BEGIN PRIVATE KEY-----"']) });
  const o = expectOnly(literal, { code: 'literal-secret', line: 14, column: 16 });
  assert.not.ok(o.message.includes('BEGIN'));
  const spelled = load({ 'a.yaml': oauth2Smtp([...lines, 'clientKey: "${file:/run/secrets//app.key}"']) });
  expectOnly(spelled, { code: 'secret-ref-not-normal', line: 14, column: 16 });
});

test('invalid-value and invalid-type: patterns, formats, ranges, enums, wrong types', () => {
  const cases: [string, string, number, number, string][] = [
    ['shortName: sup port', 'invalid-value', 4, 12, 'letters, digits'],
    ['host: "not a host!"', 'invalid-value', 5, 7, 'host name or an IP'],
    ['port: 0', 'invalid-value', 11, 7, '>= 1'],
    ['port: 70000', 'invalid-value', 11, 7, '<= 65535'],
    ['port: "993"', 'invalid-type', 11, 7, 'integer'],
    ['tls: yes', 'invalid-type', 11, 6, 'boolean'],
    ['backfill: some', 'invalid-value', 11, 11, '"unseen"'],
    ['tlsCaFile: ca.pem', 'invalid-value', 11, 12, 'absolute path'],
    ['maxMessageSize: 1.5', 'invalid-type', 11, 17, 'integer'],
    ['flow: Support_Flow', 'invalid-value', 10, 7, 'lowercase'],
  ];
  for (const [line, code, l, c, text] of cases) {
    const [key] = line.split(':');
    const base =
      key === 'flow'
        ? imap().replace('flow: support', line)
        : key === 'shortName'
          ? imap().replace('shortName: support', line)
          : key === 'host'
            ? imap().replace('host: imap.example.com', line)
            : imap({ extra: [line] });
    const r = load({ 'a.yaml': base });
    expectDiagnostic(r, { code, line: l, column: c, message: [text] });
  }
  const auth = load({ 'a.yaml': imap().replace('  type: basic', '  type: ntlm') });
  expectDiagnostic(auth, { code: 'invalid-value', line: 7, column: 9, message: ['"basic" or "oauth2"'] });
});

// ---------------------------------------------------------------------------------------------------------------
// Parsing (parse.ts): one fixture per code here; test/config/hostile.test.ts has many more
// ---------------------------------------------------------------------------------------------------------------

test('parse codes: positions for syntax, duplicate keys, aliases, forbidden keys, control characters, tags', () => {
  expectOnly(load({ 'a.yaml': 'kind: EmailFlow\nname: [a\n' }), { code: 'yaml-syntax', line: 3, column: 1 });
  expectOnly(load({ 'a.yaml': 'kind: EmailFlow\nname: a\nname: b\n' }), { code: 'duplicate-key', line: 3, column: 1 });
  expectOnly(load({ 'a.yaml': 'kind: &k EmailFlow\nname: *k\n' }), {
    code: 'yaml-alias',
    line: 2,
    column: 7,
    message: ['*k'],
  });
  expectOnly(load({ 'a.yaml': 'kind: EmailFlow\n__proto__: {x: 1}\n' }), {
    code: 'forbidden-key',
    line: 2,
    column: 1,
    message: ['__proto__'],
  });
  expectOnly(load({ 'a.yaml': 'kind: EmailFlow\nname: !!js/function "f"\n' }), {
    code: 'yaml-tag',
    line: 2,
    column: 7,
    message: ['!!js/function'],
  });
  expectOnly(load({ 'a.yaml': '- kind: EmailFlow\n' }), {
    code: 'not-a-mapping',
    line: 1,
    column: 1,
    message: ['list'],
  });
  expectOnly(load({ 'a.yaml': '# only a comment\n' }), { code: 'empty-file', line: 1, column: 1, severity: 'warning' });
  expectOnly(load({ 'a.yaml': Buffer.from('kind: EmailFlow\nname: caf\xe9\n', 'latin1') }), {
    code: 'not-utf8',
    line: 2,
    column: 10,
  });
  expectOnly(load({ 'a.yaml': 'kind: EmailFlow\rname: x\r' }), { code: 'line-ending', line: 1, column: 16 });
  expectOnly(load({ 'a.yaml': `kind: EmailFlow\nx: ${'['.repeat(40)}${']'.repeat(40)}\n` }), {
    code: 'too-deep',
    line: 2,
    column: 35,
  });
  expectOnly(load({ 'a.yaml': Buffer.alloc(1024 * 1024 + 1, 0x20) }), {
    code: 'file-too-large',
    line: 1,
    column: 1,
    message: ['1 MiB'],
  });
  const w = load({ 'f.yaml': `%FOO bar\n---\n${mailbox('support')}` });
  expectOnly(w, { code: 'yaml-warning', line: 1, column: 1, severity: 'warning', message: ['%FOO'] });
});

test('control-character: CR, LF, NUL, U+2028, U+2029, DEL, C1 in values and keys', () => {
  const values: [string, string][] = [
    ['"Sup\\rport"', 'U+000D'],
    ['"Sup\\nport"', 'U+000A'],
    ['"Sup\\0port"', 'U+0000'],
    ['"Sup\\u2028port"', 'U+2028'],
    ['"Sup\\u2029port"', 'U+2029'],
    ['"Sup\\x7fport"', 'U+007F'],
    ['"Sup\\x85port"', 'U+0085'],
    ['"Sup\\eport"', 'U+001B'],
    ['"Sup\u2028port"', 'U+2028'],
  ];
  for (const [value, shown] of values) {
    const r = load({ 'a.yaml': imap().replace('name: Inbox support', `name: ${value}`) });
    expectOnly(r, { code: 'control-character', line: 3, column: 7, message: ['name', shown] });
  }
  const block = load({ 'a.yaml': imap().replace('name: Inbox support', 'name: |\n  two\n  lines') });
  expectOnly(block, { code: 'control-character', line: 3, column: 7, message: ['U+000A'] });
  const nested = load({
    'a.yaml': imap().replace('  user: support@example.com', '  user: "support@example.com\\r\\nBcc: x@evil.example"'),
  });
  expectOnly(nested, { code: 'control-character', line: 8, column: 9, message: ['auth.user'] });
  for (const key of ['"a\\nb"', '"a\\rb"', '"a\\0b"', '"a\\u2028b"', '"a\\u2029b"']) {
    const r = load({ 'a.yaml': imap({ extra: [`${key}: 1`] }) });
    expectOnly(r, { code: 'control-character', line: 11, column: 1, message: ['key'] });
  }
  // TAB inside a value is not a control character the rules refuse (the schema decides).
  expectNoCode(
    load({ 'a.yaml': imap().replace('name: Inbox support', 'name: "Inbox\\tsupport"') }),
    'control-character',
  );
});

// ---------------------------------------------------------------------------------------------------------------
// Folder behaviour (files.ts) with real temp folders
// ---------------------------------------------------------------------------------------------------------------

async function tempFolder(): Promise<{
  root: string;
  dir: string;
  put(rel: string, text: string): Promise<void>;
  cleanup(): Promise<void>;
}> {
  const root = await mkdtemp(path.join(tmpdir(), 'mailctl-rules-'));
  const dir = path.join(root, 'servers.d');
  await mkdir(dir);
  return {
    root,
    dir,
    async put(rel, text) {
      await mkdir(path.dirname(path.join(root, rel)), { recursive: true });
      await writeFile(path.join(root, rel), text);
    },
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
}

test('folder: recursive, .yaml and .yml, dotfiles and dot-folders and other extensions ignored, sorted', async () => {
  const t = await tempFolder();
  try {
    await t.put('servers.d/support/imap.yaml', imap());
    await t.put('servers.d/support/smtp.YML', smtp());
    await t.put('servers.d/flows/deep/er/support.yml', flow('support'));
    await t.put('servers.d/.hidden.yaml', 'this: [is not parsed');
    await t.put('servers.d/.git/config.yaml', 'neither: [is this');
    await t.put('servers.d/notes.txt', 'kind: nonsense');
    await t.put('servers.d/README.md', '# readme');
    await t.put('servers.d/backup.yaml.bak', 'kind: nonsense');
    const r = await loadConfig(t.dir);
    expectClean(r);
    assert.is(r.fileCount, 3);
    assert.equal(
      r.servers.map((s) => s.source.file),
      [path.join(t.dir, 'support/imap.yaml'), path.join(t.dir, 'support/smtp.YML')],
    );
  } finally {
    await t.cleanup();
  }
});

test('folder: symlink leaving the folder is refused (symlink-outside-folder); a symlink inside is followed', async () => {
  const t = await tempFolder();
  try {
    await t.put('outside/secret.yaml', imap({ shortName: 'outside' }));
    await t.put('outside/dir/x.yaml', imap({ shortName: 'outside2' }));
    await t.put('servers.d/real/support.yaml', mailbox('support'));
    await symlink(path.join(t.root, 'outside/secret.yaml'), path.join(t.dir, 'evil.yaml'));
    await symlink(path.join(t.root, 'outside/dir'), path.join(t.dir, 'evil-dir'));
    await symlink('../outside/secret.yaml', path.join(t.dir, 'relative-evil.yml'));
    await symlink('real/support.yaml', path.join(t.dir, 'alias.yaml'));
    await symlink(path.join(t.dir, 'missing.yaml'), path.join(t.dir, 'dangling.yaml'));
    const r = await loadConfig(t.dir);
    expectDiagnostic(r, { code: 'symlink-outside-folder', file: path.join(t.dir, 'evil.yaml'), line: 1, column: 1 });
    expectDiagnostic(r, { code: 'symlink-outside-folder', file: path.join(t.dir, 'evil-dir'), line: 1, column: 1 });
    expectDiagnostic(r, {
      code: 'symlink-outside-folder',
      file: path.join(t.dir, 'relative-evil.yml'),
      line: 1,
      column: 1,
    });
    expectDiagnostic(r, { code: 'broken-symlink', file: path.join(t.dir, 'dangling.yaml'), line: 1, column: 1 });
    assert.not.ok(
      r.servers.some((s) => s.id.includes('outside')),
      'nothing from outside the folder is loaded',
    );
    // alias.yaml (inside) was followed: its servers are read a second time, so they are duplicates.
    expectDiagnostic(r, {
      code: 'duplicate-identity',
      file: path.join(t.dir, 'real/support.yaml'),
      line: 4,
      column: 12,
    });
    assert.ok(r.servers.some((s) => s.source.file === path.join(t.dir, 'alias.yaml')));
  } finally {
    await t.cleanup();
  }
});

test('folder: missing folder, file over 1 MiB', async () => {
  const t = await tempFolder();
  try {
    const missing = await loadConfig(path.join(t.root, 'nope'));
    expectOnly(missing, { code: 'folder-unreadable', line: 1, column: 1, message: ['does not exist'] });
    await t.put('servers.d/big.yaml', `# ${'x'.repeat(1024 * 1024)}\n`);
    await t.put('servers.d/support.yaml', mailbox('support'));
    const big = await loadConfig(t.dir);
    expectOnly(big, { code: 'file-too-large', file: path.join(t.dir, 'big.yaml'), line: 1, column: 1 });
    assert.is(big.servers.length, 2, 'the other files are still read');
  } finally {
    await t.cleanup();
  }
});

test('a resource left out for its own errors causes no follow-up flow-not-found / unused-flow', () => {
  const badFlow = load({ 'a.yaml': [imap(), smtp(), flow('support', ['colour: red'])].join('---\n') });
  expectOnly(badFlow, { code: 'unknown-field', line: 28, column: 1 });
  const badServer = load({ 'a.yaml': [imap({ extra: ['port: -1'] }), smtp(), flow('support')].join('---\n') });
  expectOnly(badServer, { code: 'invalid-value', line: 11, column: 7 });
});

test('all diagnostics of a run are reported together, sorted by file and position', () => {
  const r = load({
    'b.yaml': imap({ extra: ['hots: x', 'port: 0'] }),
    'a.yaml': `${flow('support').replace('directory: inbound/support', 'directory: ../x')}---\nkind: Nope\n`,
  });
  const codes = r.diagnostics.map((d) => `${d.file}:${d.line}:${d.code}`);
  assert.equal(codes, [
    'servers.d/a.yaml:6:invalid-sink',
    'servers.d/a.yaml:8:unknown-kind',
    'servers.d/b.yaml:11:unknown-field',
    'servers.d/b.yaml:12:invalid-value',
  ]);
});

// ---------------------------------------------------------------------------------------------------------------
// Coverage: every code the loader can emit is asserted above
// ---------------------------------------------------------------------------------------------------------------

test('every rule code in src/config has a failing fixture in this file', async () => {
  const NOT_CODES = new Set(['ajv-formats', 'node-cron', 'utf-8']);
  const codes = new Set<string>();
  for (const file of [
    'rules.ts',
    'load.ts',
    'schema.ts',
    'parse.ts',
    'files.ts',
    'schedule.ts',
    'sinks.ts',
    'oauth2.ts',
  ]) {
    const text = await readFile(path.join(REPO, 'src/config', file), 'utf8');
    for (const m of text.matchAll(/'([a-z0-9]+(?:-[a-z0-9]+)+)'/g)) if (!NOT_CODES.has(m[1]!)) codes.add(m[1]!);
  }
  const missing = [...codes].filter((c) => !coveredCodes.has(c)).sort();
  assert.equal(missing, [], `codes without a fixture: ${missing.join(', ')}`);
  assert.ok(codes.size >= 40, `found ${codes.size} codes`);
});

test.run();
