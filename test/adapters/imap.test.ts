/** IMAP adapter against real private Dovecot instances (test/harness/dovecot.ts). */
import net from 'node:net';
import { inspect } from 'node:util';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { ConnectionSettings, FailureClass, MailError } from '../../src/adapters/connection.js';
import {
  checkImapFolders,
  connectImap,
  imapClientOptions,
  sharedSecureContext,
  verifyImap,
} from '../../src/adapters/imap.js';
import { createTestCa, type TestCa } from '../harness/ca.js';
import { startDovecot, type Dovecot } from '../harness/dovecot.js';
import { expectMailError, loudHook } from '../harness/expect.js';
import { eventually } from '../harness/mailctl.js';
import { refusedPort } from '../harness/ports.js';

const USER = 'support@example.com';
const PASS = 'good-password-1';
const CANARY = 'Canary-Secret-9f8e7d'; // used as password/token in every failing case; must never show up

let dv: Dovecot; // STARTTLS + imaps, test-CA cert
let plain: Dovecot; // ssl = no: no STARTTLS, no imaps
let selfSigned: Dovecot; // self-signed cert
let otherCa: TestCa;
const errors: MailError[] = [];

const settings = (over: Partial<ConnectionSettings> = {}): ConnectionSettings => ({
  host: dv.host,
  port: dv.ports.imaps,
  tls: true,
  allowPlaintext: false,
  caPem: dv.caPem,
  auth: { user: USER, pass: PASS },
  ...over,
});

const expectFailure = (p: Promise<unknown>, cls: FailureClass, code?: string): Promise<MailError> =>
  expectMailError(p, cls, code, errors);

test.before(
  loudHook(async () => {
    [dv, plain, selfSigned, otherCa] = await Promise.all([
      startDovecot({ users: { [USER]: PASS } }),
      startDovecot({ starttls: false, users: { [USER]: PASS } }),
      startDovecot({ cert: 'self-signed', users: { [USER]: PASS } }),
      createTestCa(),
    ]);
    const msg = (n: number) =>
      `From: a@example.org\r\nTo: ${USER}\r\nSubject: t${n}\r\nMessage-ID: <t${n}@example.org>\r\n\r\nhello ${n}\r\n`;
    await dv.deliver(USER, msg(1));
    await dv.deliver(USER, msg(2));
  }),
);

test.after(
  loudHook(async () => {
    await Promise.all([dv?.stop(), plain?.stop(), selfSigned?.stop()]);
  }),
);

test('imapClientOptions: TLS policy and verification', () => {
  const implicit = imapClientOptions(settings());
  assert.is(implicit.secure, true);
  assert.is(implicit.tls?.rejectUnauthorized, true);
  assert.is(implicit.tls?.secureContext, sharedSecureContext(dv.caPem), 'one context per CA bundle, shared');
  assert.is(implicit.logger, false);
  const required = imapClientOptions(settings({ tls: false, port: 143 }));
  assert.is(required.secure, false);
  assert.is(required.doSTARTTLS, true);
  const opportunistic = imapClientOptions(
    settings({ tls: false, allowPlaintext: true, servername: 'mail.example.com', disableCompression: true }),
    { autoIdleDelay: 300 },
  );
  assert.is(opportunistic.doSTARTTLS, undefined);
  assert.is(opportunistic.servername, 'mail.example.com');
  assert.is(opportunistic.tls?.servername, 'mail.example.com');
  assert.is(opportunistic.disableCompression, true);
  assert.is(opportunistic.autoIdleDelay, 300);
  assert.is(
    imapClientOptions(settings({ caPem: undefined })).tls?.secureContext,
    sharedSecureContext(undefined),
    'the system CAs',
  );
  assert.is.not(sharedSecureContext(undefined), sharedSecureContext(dv.caPem));
});

test('verify over implicit TLS with the test CA', async () => {
  const r = await verifyImap(settings());
  for (const cap of ['IDLE', 'UIDPLUS', 'MOVE']) assert.ok(r.capabilities.includes(cap), cap);
  assert.is(r.unseen, 2);
});

test('verify over required STARTTLS; the session is really encrypted', async () => {
  const s = settings({ port: dv.ports.imap, tls: false });
  assert.is((await verifyImap(s)).unseen, 2);
  const c = await connectImap(s);
  assert.is(c.secureConnection, true);
  await c.logout();
});

test('allowPlaintext: plaintext when STARTTLS is not offered, STARTTLS when it is', async () => {
  const p = await connectImap(settings({ host: plain.host, port: plain.ports.imap, tls: false, allowPlaintext: true }));
  assert.is(p.secureConnection, false);
  await p.logout();
  const o = await connectImap(settings({ port: dv.ports.imap, tls: false, allowPlaintext: true }));
  assert.is(o.secureConnection, true);
  await o.logout();
});

test('wrong password → auth', async () => {
  const e = await expectFailure(
    verifyImap(settings({ auth: { user: USER, pass: CANARY } })),
    'auth',
    'AUTHENTICATIONFAILED',
  );
  assert.match(e.message, `authentication failed for user "${USER}"`);
});

test('unknown host → network', async () => {
  const e = await expectFailure(
    verifyImap(settings({ host: 'imap.mailctl-test.invalid', auth: { user: USER, pass: CANARY } })),
    'network',
    'ENOTFOUND',
  );
  assert.match(e.message, 'imap.mailctl-test.invalid');
});

test('refused port → network', async () => {
  const port = await refusedPort();
  const e = await expectFailure(
    verifyImap(settings({ port, auth: { user: USER, pass: CANARY } })),
    'network',
    'ECONNREFUSED',
  );
  assert.is(e.message, `connection refused by 127.0.0.1:${port}`);
});

test('certificate from another CA → tls (implicit TLS and STARTTLS)', async () => {
  const auth = { user: USER, pass: CANARY };
  const e = await expectFailure(
    verifyImap(settings({ caPem: otherCa.caPem, auth })),
    'tls',
    'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  );
  assert.match(e.message, /^certificate not trusted: /);
  await expectFailure(verifyImap(settings({ port: dv.ports.imap, tls: false, caPem: otherCa.caPem, auth })), 'tls');
  // opportunistic STARTTLS (allowPlaintext) still verifies the certificate when STARTTLS is used
  await expectFailure(
    verifyImap(settings({ port: dv.ports.imap, tls: false, allowPlaintext: true, caPem: otherCa.caPem, auth })),
    'tls',
  );
  // no caPem = system CAs, which do not know the test CA
  await expectFailure(verifyImap(settings({ caPem: undefined, auth })), 'tls');
});

test('self-signed certificate → tls with a human message', async () => {
  const e = await expectFailure(
    verifyImap(settings({ port: selfSigned.ports.imaps, auth: { user: USER, pass: CANARY } })),
    'tls',
    'DEPTH_ZERO_SELF_SIGNED_CERT',
  );
  assert.match(e.message, 'certificate not trusted: self-signed certificate (DEPTH_ZERO_SELF_SIGNED_CERT)');
});

test('certificate name mismatch (servername) → tls', async () => {
  await expectFailure(
    verifyImap(settings({ servername: 'mail.example.com', auth: { user: USER, pass: CANARY } })),
    'tls',
    'ERR_TLS_CERT_ALTNAME_INVALID',
  );
});

/** A LOGIN with a wrong password over a raw connection: what Dovecot logs when a login does reach it. */
async function failedLogin(server: Dovecot): Promise<void> {
  const socket = net.connect(server.ports.imap, server.host);
  let text = '';
  socket.on('data', (chunk) => {
    text += String(chunk);
    if (text.startsWith('* OK') && !text.includes('\r\na1 ') && !socket.writableEnded)
      socket.write('a1 LOGIN control@example.com wrong\r\n');
    if (/\r\na1 (OK|NO|BAD)/.test(text)) socket.end();
  });
  await new Promise((resolve) => socket.on('close', resolve));
}

test('STARTTLS not offered → tls (credentials never sent)', async () => {
  const e = await expectFailure(
    verifyImap(settings({ host: plain.host, port: plain.ports.imap, tls: false, auth: { user: USER, pass: CANARY } })),
    'tls',
  );
  assert.match(e.message, 'does not offer STARTTLS');
  // Dovecot logs a failed login when its connection closes: a control login after ours proves the log is written
  // and read in time, so the only "auth failed" line must be the control's
  await failedLogin(plain);
  const authFailed = async () => (await plain.log()).split('\n').filter((l) => l.includes('auth failed'));
  const lines = await eventually(
    async () => ((await authFailed()).length ? authFailed() : null),
    10_000,
    'the control login in the log',
  );
  assert.equal(
    lines.map((l) => /user=<([^>]*)>/.exec(l)?.[1]),
    ['control@example.com'],
    'no login of ours reached the server',
  );
});

test('TLS/plaintext port mix-ups', async () => {
  const auth = { user: USER, pass: CANARY };
  const e1 = await expectFailure(
    verifyImap(settings({ host: plain.host, port: plain.ports.imap, tls: true, auth })),
    'tls',
    'ERR_SSL_WRONG_VERSION_NUMBER',
  );
  assert.match(e1.message, 'set tls: false');
  const e2 = await expectFailure(
    verifyImap(settings({ port: dv.ports.imaps, tls: false, auth }), { greetingTimeout: 500 }),
    'network',
    'GREETING_TIMEOUT',
  );
  assert.match(e2.message, 'set tls: true');
});

test('missing folders → folder-missing; storage folder found once created', async () => {
  const s = settings();
  const e1 = await expectFailure(verifyImap(s, { storageFolder: 'ContactStorage' }), 'folder-missing');
  assert.is(e1.message, `storage folder "ContactStorage" does not exist on ${dv.host}; create it first`);
  const e2 = await expectFailure(verifyImap(s, { folder: 'Support' }), 'folder-missing');
  assert.match(e2.message, `folder "Support" does not exist on ${dv.host}`);
  await dv.createFolder(USER, 'ContactStorage');
  assert.is((await verifyImap(s, { storageFolder: 'ContactStorage' })).unseen, 2);
  // a loop's own connection selects the folder first (select: true): same errors, and the folder stays selected
  const client = await connectImap(s, { disableAutoIdle: true });
  try {
    const e3 = await expectFailure(checkImapFolders(client, s, { folder: 'Support', select: true }), 'folder-missing');
    assert.match(e3.message, `folder "Support" does not exist on ${dv.host}`);
    const found = await checkImapFolders(client, s, { storageFolder: 'ContactStorage', select: true });
    assert.is(found.unseen, 2);
    assert.is(client.mailbox ? client.mailbox.path : null, 'INBOX');
  } finally {
    await client.logout();
  }
});

test('OAuth2 access token: good, bad, and a token of another user', async () => {
  dv.setAccessToken('tok-good', USER);
  dv.setAccessToken(CANARY, 'someone-else@example.com');
  assert.is((await verifyImap(settings({ auth: { user: USER, accessToken: 'tok-good' } }))).unseen, 2);
  const e = await expectFailure(verifyImap(settings({ auth: { user: USER, accessToken: CANARY } })), 'auth');
  assert.match(e.message, 'OAuth2 access token rejected');
  await expectFailure(verifyImap(settings({ auth: { user: USER, accessToken: 'never-issued-' + CANARY } })), 'auth');
});

test('user added while the server runs can log in at once', async () => {
  await dv.addUser('late@example.com', 'late-pass');
  assert.is((await verifyImap(settings({ auth: { user: 'late@example.com', pass: 'late-pass' } }))).unseen, 0);
});

test('too many connections for user+IP → throttled (Dovecot answers NO [LIMIT] to AUTHENTICATE)', async () => {
  const limited = await startDovecot({ users: { [USER]: PASS }, maxUserIpConnections: 2, ca: dv.ca });
  try {
    const s = settings({ port: limited.ports.imaps });
    const open = [await connectImap(s), await connectImap(s)];
    const e = await expectFailure(connectImap(s), 'throttled', 'LIMIT');
    assert.match(e.message, 'Maximum number of connections');
    await Promise.all(open.map((c) => c.logout()));
  } finally {
    await limited.stop();
  }
});

test('200 concurrent IMAP sessions', async () => {
  const s = settings();
  const clients = await Promise.all(
    Array.from({ length: 200 }, () => connectImap(s, { connectionTimeout: 30_000, greetingTimeout: 30_000 })),
  );
  assert.is(clients.filter((c) => c.usable).length, 200);
  await Promise.all(clients.map((c) => c.logout()));
});

test('the secret never appears in any error (message or inspect output)', () => {
  assert.ok(errors.length >= 12, `collected ${errors.length} errors`);
  for (const e of errors) {
    assert.not.match(e.message, CANARY);
    assert.not.match(inspect(e, { depth: 10 }), CANARY);
    assert.not.match(JSON.stringify(e), CANARY);
  }
});

test.run();
