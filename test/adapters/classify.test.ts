/**
 * classifyMailError on error shapes that the real-server tests cannot produce (Microsoft 365 throttling,
 * LOGINDISABLED, …). The shapes are the ones imapflow 2.10 / nodemailer 10 create (see library notes).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { classifyMailError, parseRetryAfterMs, redact } from '../../src/adapters/classify.js';
import { MailError } from '../../src/adapters/connection.js';

const ctx = { host: 'imap.example.com', port: 993, user: 'u@example.com', secrets: ['hunter2-secret'] };
const err = (message: string, props: Record<string, unknown>) => Object.assign(new Error(message), props);

test('imapflow ETHROTTLE and "Suggested Backoff Time" → throttled with retryAfterMs', () => {
  const a = classifyMailError(err('Throttled', { code: 'ETHROTTLE', throttleReset: 92415 }), ctx);
  assert.is(a.failureClass, 'throttled');
  assert.is(a.retryAfterMs, 92415);
  const b = classifyMailError(
    err('Command failed', {
      responseStatus: 'BAD',
      responseText: 'Request is throttled. Suggested Backoff Time: 1500 milliseconds',
    }),
    ctx,
  );
  assert.is(b.failureClass, 'throttled');
  assert.is(b.retryAfterMs, 1500);
  const c = classifyMailError(
    err('Command failed', { responseStatus: 'NO', serverResponseCode: 'THROTTLED', responseText: 'slow down' }),
    ctx,
  );
  assert.is(c.failureClass, 'throttled');
  const d = classifyMailError(
    err('Connection closed', {
      code: 'ClosedAfterConnectText',
      reason: 'Too many simultaneous connections. (Failure)',
    }),
    ctx,
  );
  assert.is(d.failureClass, 'throttled');
});

test('SMTP 4.7.x rate limits → throttled, other 4xx → network', () => {
  const a = classifyMailError(
    err('Message failed', {
      code: 'EMESSAGE',
      responseCode: 450,
      response: '450 4.7.1 Rate limit exceeded, retry after 2 minutes',
    }),
    ctx,
  );
  assert.is(a.failureClass, 'throttled');
  assert.is(a.retryAfterMs, 120_000);
  const b = classifyMailError(
    err('Message failed', { code: 'EMESSAGE', responseCode: 452, response: '452 4.3.1 Insufficient system storage' }),
    ctx,
  );
  assert.is(b.failureClass, 'network');
});

test('LOGINDISABLED is not a wrong password', () => {
  const e = classifyMailError(err('Login is disabled', { authenticationFailed: true }), ctx);
  assert.is(e.failureClass, 'tls');
  assert.not.match(e.message, 'authentication failed');
});

test('temporary auth failures are not credential errors', () => {
  assert.is(
    classifyMailError(err('Command failed', { authenticationFailed: true, serverResponseCode: 'UNAVAILABLE' }), ctx)
      .failureClass,
    'network',
  );
  assert.is(
    classifyMailError(
      err('Invalid login', {
        code: 'EAUTH',
        responseCode: 454,
        response: '454 4.7.0 Temporary authentication failure',
      }),
      ctx,
    ).failureClass,
    'network',
  );
  assert.is(
    classifyMailError(
      err('Invalid login', {
        code: 'EAUTH',
        responseCode: 530,
        response: '530 5.7.0 Must issue a STARTTLS command first',
      }),
      ctx,
    ).failureClass,
    'tls',
  );
});

test('nodemailer wrapped socket errors use originalCode', () => {
  const a = classifyMailError(
    err('self-signed certificate', { code: 'ESOCKET', originalCode: 'DEPTH_ZERO_SELF_SIGNED_CERT', command: 'CONN' }),
    ctx,
  );
  assert.is(a.failureClass, 'tls');
  assert.is(a.code, 'DEPTH_ZERO_SELF_SIGNED_CERT');
  assert.match(a.message, 'certificate not trusted: self-signed certificate (DEPTH_ZERO_SELF_SIGNED_CERT)');
  const b = classifyMailError(
    err('certificate has expired', { code: 'ESOCKET', originalCode: 'CERT_HAS_EXPIRED' }),
    ctx,
  );
  assert.is(b.failureClass, 'tls');
  assert.is(classifyMailError(err('x', { code: 'ESOCKET', originalCode: 'ECONNRESET' }), ctx).failureClass, 'network');
  assert.is(classifyMailError(err('x', { code: 'EDNS', originalCode: 'EAI_AGAIN' }), ctx).failureClass, 'network');
});

test('missing folder shapes (status → NotFound, mailboxOpen → mailboxMissing)', () => {
  assert.is(
    classifyMailError(err("Mailbox doesn't exist: Foo", { code: 'NotFound', path: 'Foo' }), ctx).failureClass,
    'folder-missing',
  );
  const e = classifyMailError(
    err('Command failed', {
      mailboxMissing: true,
      responseStatus: 'NO',
      responseText: "Mailbox doesn't exist: Bar (0.001 + 0.000 secs).",
    }),
    ctx,
  );
  assert.is(e.failureClass, 'folder-missing');
  assert.match(e.message, 'folder "Bar"');
});

test("this machine's file errors → local, saying what and where; the same codes from a socket are not", () => {
  const cases = [
    ['ENOSPC', 'write', 'no space left on device'],
    ['EROFS', 'open', 'read-only file system'],
    ['EACCES', 'rename', 'permission denied'],
    ['ENAMETOOLONG', 'open', 'file name too long'],
  ] as const;
  for (const [code, syscall, meaning] of cases) {
    const e = classifyMailError(
      err(`${code}: x`, { code, errno: -1, syscall, path: '/state/inbound/imap_a.json' }),
      ctx,
    );
    assert.is(e.failureClass, 'local', code);
    assert.is(e.message, `${meaning} (${code}): ${syscall} /state/inbound/imap_a.json`);
  }
  assert.is(
    classifyMailError(err('x', { code: 'ENOSPC', syscall: 'write' }), ctx).message,
    'no space left on device (ENOSPC): write',
  );
  assert.is(classifyMailError(err('x', { code: 'EACCES', syscall: 'connect' }), ctx).failureClass, 'network');
});

test('a server reply of any length makes a message of at most 1 KiB', () => {
  const reply = `451 4.3.0 ${'x'.repeat(200_000)}`;
  const e = classifyMailError(err('x', { code: 'EMESSAGE', responseCode: 451, response: reply }), ctx);
  assert.is(e.failureClass, 'network');
  assert.ok(Buffer.byteLength(e.message) <= 1024, `${e.message.length}`);
});

test('config-ish codes, MailError passthrough, non-errors', () => {
  assert.is(classifyMailError(err('x', { code: 'MissingServerExtension' }), ctx).failureClass, 'config');
  const m = new MailError('auth', 'bad hunter2-secret', { code: 'X', retryAfterMs: 5 });
  const again = classifyMailError(m, ctx);
  assert.is(again.failureClass, 'auth');
  assert.is(again.retryAfterMs, 5);
  assert.is(again.message, 'bad ***');
  assert.is(classifyMailError('boom', ctx).failureClass, 'network');
});

test('secrets are redacted from quoted server text', () => {
  const e = classifyMailError(
    err('Invalid login', { code: 'EAUTH', responseCode: 535, response: '535 bad password hunter2-secret' }),
    ctx,
  );
  assert.is(e.failureClass, 'auth');
  assert.not.match(e.message, 'hunter2-secret');
  assert.is(redact('a hunter2-secret b', ['hunter2-secret', undefined]), 'a *** b');
});

test('parseRetryAfterMs', () => {
  assert.is(parseRetryAfterMs('Suggested Backoff Time: 92415 milliseconds'), 92415);
  assert.is(parseRetryAfterMs('try again in 30 seconds'), 30_000);
  assert.is(parseRetryAfterMs('retry after 2 minutes'), 120_000);
  assert.is(parseRetryAfterMs('retry after 250 ms'), 250);
  assert.is(parseRetryAfterMs('go away'), undefined);
});

test.run();
