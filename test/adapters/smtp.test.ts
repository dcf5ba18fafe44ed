/** SMTP adapter against real smtp-server instances (test/harness/smtp.ts). */
import { inspect } from 'node:util';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { ConnectionSettings, FailureClass, MailError } from '../../src/adapters/connection.js';
import {
  createSmtpTransport,
  sendSmtp,
  sendSmtpCapturing,
  smtpTransportOptions,
  verifySmtp,
} from '../../src/adapters/smtp.js';
import { createTestCa, type TestCa } from '../harness/ca.js';
import { expectMailError, loudHook } from '../harness/expect.js';
import { refusedPort } from '../harness/ports.js';
import { startSmtpServer, type SmtpTestServer } from '../harness/smtp.js';

const USER = 'bot@example.com';
const PASS = 'good-password-2';
const CANARY = 'Canary-Secret-4a5b6c';

let ca: TestCa;
let otherCa: TestCa;
let starttls: SmtpTestServer; // plaintext port offering STARTTLS
let smtps: SmtpTestServer; // implicit TLS
let noTls: SmtpTestServer; // no STARTTLS at all
const errors: MailError[] = [];

const settings = (over: Partial<ConnectionSettings> = {}): ConnectionSettings => ({
  host: starttls.host,
  port: starttls.port,
  tls: false,
  allowPlaintext: false,
  caPem: ca.caPem,
  auth: { user: USER, pass: PASS },
  ...over,
});
const bad = { user: USER, pass: CANARY };

const expectFailure = (p: Promise<unknown>, cls: FailureClass, code?: string): Promise<MailError> =>
  expectMailError(p, cls, code, errors);

test.before(
  loudHook(async () => {
    [ca, otherCa] = await Promise.all([createTestCa(), createTestCa()]);
    const users = { [USER]: PASS };
    const tokens = { 'smtp-token-good': USER };
    [starttls, smtps, noTls] = await Promise.all([
      startSmtpServer({ ca, users, tokens }),
      startSmtpServer({ ca, users, tokens, secure: true }),
      startSmtpServer({ ca, users, starttls: false }),
    ]);
  }),
);

test.after(
  loudHook(async () => {
    await Promise.all([starttls?.stop(), smtps?.stop(), noTls?.stop()]);
  }),
);

test('smtpTransportOptions: TLS policy, auth kinds, pool', () => {
  const req = smtpTransportOptions(settings());
  assert.is(req.secure, false);
  assert.is(req.requireTLS, true);
  assert.is(req.ignoreTLS, false);
  assert.is(req.tls?.rejectUnauthorized, true);
  assert.is(req.tls?.ca, ca.caPem);
  assert.is(smtpTransportOptions(settings({ tls: true })).secure, true);
  assert.is(smtpTransportOptions(settings({ allowPlaintext: true })).requireTLS, false);
  const oauth = smtpTransportOptions(
    settings({ auth: { user: USER, accessToken: 't' }, servername: 'smtp.example.com' }),
    { pool: true, maxConnections: 3 },
  );
  assert.equal(oauth.auth, { type: 'OAuth2', user: USER, accessToken: 't' });
  assert.is(oauth.servername, 'smtp.example.com');
  assert.is((oauth as { pool?: boolean }).pool, true);
  assert.is((oauth as { maxConnections?: number }).maxConnections, 3);
});

test('verify ok via required STARTTLS and via implicit TLS', async () => {
  await verifySmtp(settings());
  await verifySmtp(settings({ port: smtps.port, tls: true }));
});

test('verify ok in plaintext with allowPlaintext', async () => {
  await verifySmtp(settings({ port: noTls.port, allowPlaintext: true }));
});

test('OAuth2 (XOAUTH2) good and bad token', async () => {
  await verifySmtp(settings({ auth: { user: USER, accessToken: 'smtp-token-good' } }));
  const e = await expectFailure(verifySmtp(settings({ auth: { user: USER, accessToken: CANARY } })), 'auth', 'EAUTH');
  assert.match(e.message, 'OAuth2 access token rejected');
});

test('wrong password → auth', async () => {
  const e = await expectFailure(verifySmtp(settings({ auth: bad })), 'auth', 'EAUTH');
  assert.is(e.responseCode, 535);
  assert.match(e.message, `authentication failed for user "${USER}"`);
});

test('requireTLS against a server without STARTTLS → tls', async () => {
  const before = noTls.authAttempts.failed + noTls.authAttempts.ok;
  const e = await expectFailure(verifySmtp(settings({ port: noTls.port, auth: bad })), 'tls');
  assert.match(e.message, 'does not offer STARTTLS');
  assert.is(noTls.authAttempts.failed + noTls.authAttempts.ok, before, 'no AUTH was attempted');
});

test('certificate from another CA → tls (STARTTLS and implicit TLS)', async () => {
  const e = await expectFailure(
    verifySmtp(settings({ caPem: otherCa.caPem, auth: bad })),
    'tls',
    'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  );
  assert.match(e.message, /^certificate not trusted: /);
  await expectFailure(verifySmtp(settings({ port: smtps.port, tls: true, caPem: otherCa.caPem, auth: bad })), 'tls');
  await expectFailure(verifySmtp(settings({ allowPlaintext: true, caPem: otherCa.caPem, auth: bad })), 'tls');
});

test('network failures: refused, unknown host, TLS port mix-up', async () => {
  const port = await refusedPort();
  await expectFailure(verifySmtp(settings({ port, auth: bad })), 'network', 'ECONNREFUSED');
  await expectFailure(verifySmtp(settings({ host: 'smtp.mailctl-test.invalid', auth: bad })), 'network', 'ENOTFOUND');
  await expectFailure(verifySmtp(settings({ tls: true, auth: bad })), 'tls', 'ERR_SSL_WRONG_VERSION_NUMBER');
  const e = await expectFailure(
    verifySmtp(settings({ port: smtps.port, auth: bad }), { greetingTimeout: 500 }),
    'network',
  );
  assert.match(e.message, 'set tls: true');
});

test('sending: delivered messages are recorded; 451 ×2 → network, then success', async () => {
  const t = createSmtpTransport(settings(), { pool: true });
  try {
    starttls.failNext(2, 451, '4.3.0 try later');
    const mail = {
      from: USER,
      to: 'customer@example.org',
      subject: 'hi',
      text: 'hello',
      messageId: '<send-1@example.com>',
    };
    await expectFailure(sendSmtp(t, settings(), mail), 'network');
    const e = await expectFailure(sendSmtp(t, settings(), mail), 'network');
    assert.is(e.responseCode, 451);
    const info = await sendSmtp(t, settings(), mail);
    assert.equal(info.accepted, ['customer@example.org']);
    const got = starttls.messages.find((m) => m.messageId === '<send-1@example.com>');
    assert.ok(got);
    assert.equal(got.envelope, { mailFrom: USER, rcptTo: ['customer@example.org'] });
    assert.is(got.user, USER);
    assert.match(got.raw.toString(), 'hello');
  } finally {
    t.close();
  }
});

test('sendSmtpCapturing returns the bytes the server received, composed once from structured fields', async () => {
  const t = createSmtpTransport(settings(), { pool: true });
  try {
    // a line starting with a dot: the server gets it dot-stuffed on the wire and unstuffed, the capture never stuffed
    const text = `first line\n.hidden dot line\n${'long enough to be wrapped by quoted-printable '.repeat(5)}`;
    const mail = {
      from: USER,
      to: 'customer@example.org',
      bcc: 'secret@example.org',
      subject: 'captured',
      text,
      messageId: '<capture-1@example.com>',
      xMailer: false as const,
    };
    const { info, source } = await sendSmtpCapturing(t, settings(), mail);
    assert.equal(info.accepted.sort(), ['customer@example.org', 'secret@example.org']);
    const got = starttls.messages.find((m) => m.messageId === '<capture-1@example.com>');
    assert.ok(got);
    // the SMTP data stream turns bare LFs of the text into CRLF on the wire
    const lines = (b: Buffer) => b.toString().replace(/\r\n/g, '\n').replace(/\n$/, '');
    assert.is(lines(got.raw), lines(source));
    assert.match(source.toString(), /^\.hidden dot line/m);
    assert.not.match(
      source.toString(),
      /secret@example\.org|X-Mailer/i,
      'no Bcc header and no X-Mailer in what was sent',
    );
    // a plain send through the same transport is not captured and still works
    await sendSmtp(t, settings(), { ...mail, messageId: '<capture-2@example.com>' });
    assert.ok(starttls.messages.some((m) => m.messageId === '<capture-2@example.com>'));
  } finally {
    t.close();
  }
});

test('sending: 421 rate limit → throttled with retryAfterMs; 550 RCPT → config', async () => {
  const t = createSmtpTransport(settings());
  try {
    const mail = { from: USER, to: 'customer@example.org', subject: 'hi', text: 'hello' };
    starttls.failNext(1, 421, '4.7.0 Too many messages, try again in 30 seconds');
    const e1 = await expectFailure(sendSmtp(t, settings(), mail), 'throttled');
    assert.is(e1.retryAfterMs, 30_000);
    starttls.failNext(1, 550, '5.1.1 no such user', 'rcpt');
    const e2 = await expectFailure(sendSmtp(t, settings(), mail), 'config');
    assert.is(e2.responseCode, 550);
    assert.match(e2.message, '5.1.1 no such user');
  } finally {
    t.close();
  }
});

test('the secret never appears in any error (message or inspect output)', () => {
  assert.ok(errors.length >= 10, `collected ${errors.length} errors`);
  for (const e of errors) {
    assert.not.match(e.message, CANARY);
    assert.not.match(inspect(e, { depth: 10 }), CANARY);
  }
  assert.is(starttls.errors.filter((e) => /crash/i.test(e.message)).length, 0);
});

test.run();
