/** OAuth2 refresh-token grant against the harness token endpoint, then XOAUTH2/OAUTHBEARER login to Dovecot. */
import net from 'node:net';
import { inspect } from 'node:util';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { FailureClass, MailError } from '../../src/adapters/connection.js';
import { verifyImap } from '../../src/adapters/imap.js';
import { fetchAccessToken, type RefreshTokenRequest } from '../../src/adapters/oauth2.js';
import { startDovecot, type Dovecot } from '../harness/dovecot.js';
import { expectMailError, loudHook } from '../harness/expect.js';
import { refusedPort } from '../harness/ports.js';

const USER = 'oauth-user@example.com';
const REFRESH = 'Canary-Refresh-1d2e3f';
const SECRET = 'Canary-ClientSecret-7a8b9c';

let dv: Dovecot;
let silent: net.Server; // accepts TCP and never answers
let silentPort = 0;
const errors: MailError[] = [];

const req = (over: Partial<RefreshTokenRequest> = {}): RefreshTokenRequest => ({
  tokenUrl: dv.oauthUrl,
  clientId: 'mailctl',
  clientSecret: SECRET,
  refreshToken: REFRESH,
  ...over,
});

const expectFailure = (p: Promise<unknown>, cls: FailureClass, code?: string): Promise<MailError> =>
  expectMailError(p, cls, code, errors);

test.before(
  loudHook(async () => {
    dv = await startDovecot();
    dv.oauth.setClient('mailctl', SECRET);
    silent = net.createServer(() => {});
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    silentPort = (silent.address() as net.AddressInfo).port;
  }),
);

test.after(
  loudHook(async () => {
    silent?.close();
    await dv?.stop();
  }),
);

test('refresh-token exchange, then IMAP login with the access token', async () => {
  dv.setRefreshToken(REFRESH, USER);
  const before = Date.now();
  const tok = await fetchAccessToken(req({ scope: 'imap' }));
  assert.type(tok.accessToken, 'string');
  assert.ok(tok.expiresAt >= before + 3_590_000 && tok.expiresAt <= Date.now() + 3_600_000);
  const r = await verifyImap({
    host: dv.host,
    port: dv.ports.imaps,
    tls: true,
    allowPlaintext: false,
    caPem: dv.caPem,
    auth: { user: USER, accessToken: tok.accessToken },
  });
  assert.is(r.unseen, 0);
  assert.ok(dv.oauth.stats.introspections >= 1);
});

test('unknown refresh token → auth oauth2-needs-login (invalid_grant)', async () => {
  const e = await expectFailure(
    fetchAccessToken(req({ refreshToken: `${REFRESH}-revoked` })),
    'auth',
    'oauth2-needs-login',
  );
  assert.match(e.message, 'sign-in needed');
  assert.is(e.providerCode, 'invalid_grant');
});

test('wrong client secret → auth oauth2-client-rejected (invalid_client)', async () => {
  await expectFailure(fetchAccessToken(req({ clientSecret: `${SECRET}-wrong` })), 'auth', 'oauth2-client-rejected');
});

test('server errors: 500 → network, 429 → throttled with Retry-After, HTML 200 → config', async () => {
  dv.oauth.failNextToken(1, 503, { error: 'temporarily_unavailable' });
  await expectFailure(fetchAccessToken(req()), 'network', 'HTTP_503');
  dv.oauth.failNextToken(1, 429, { error: 'slow_down' }, { 'retry-after': '7' });
  const e = await expectFailure(fetchAccessToken(req()), 'throttled');
  assert.is(e.retryAfterMs, 7000);
  dv.oauth.failNextToken(1, 200, '<html>login page</html>');
  await expectFailure(fetchAccessToken(req()), 'config', 'oauth2-bad-response');
});

test('network failures: refused, unknown host, timeout', async () => {
  const port = await refusedPort();
  await expectFailure(fetchAccessToken(req({ tokenUrl: `http://127.0.0.1:${port}/token` })), 'network', 'ECONNREFUSED');
  await expectFailure(
    fetchAccessToken(req({ tokenUrl: 'http://login.mailctl-test.invalid/token' })),
    'network',
    'ENOTFOUND',
  );
  const e = await expectFailure(
    fetchAccessToken(req({ tokenUrl: `http://127.0.0.1:${silentPort}/token`, timeoutMs: 300 })),
    'network',
    'ETIMEDOUT',
  );
  assert.match(e.message, 'did not answer');
});

test('secrets never appear in any error', () => {
  assert.ok(errors.length >= 8, `collected ${errors.length} errors`);
  for (const e of errors) {
    const text = `${e.message}\n${inspect(e, { depth: 10 })}`;
    assert.not.match(text, REFRESH);
    assert.not.match(text, SECRET);
  }
});

test.run();
