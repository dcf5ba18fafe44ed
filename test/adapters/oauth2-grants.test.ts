/**
 * Every token grant against a real authorization server (oidc-provider), each token then used for real: IMAP on a
 * Dovecot whose passdb oauth2 introspects at the provider, SMTP XOAUTH2 on a server that does the same. Plus
 * rotation, revoked grants, rejected clients, throttling, and a canary check of every error.
 */
import { inspect } from 'node:util';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { FailureClass, MailError } from '../../src/adapters/connection.js';
import { verifyImap } from '../../src/adapters/imap.js';
import {
  browserSignIn,
  clientCredentialsToken,
  jwtBearerToken,
  MAX_RETRY_AFTER_MS,
  refreshAccessToken,
  type OAuth2Client,
} from '../../src/adapters/oauth2/index.js';
import { createSigningCert } from '../harness/ca.js';
import { startDovecot } from '../harness/dovecot.js';
import { expectMailError, loudHook } from '../harness/expect.js';
import { startOAuth2Stack, type OAuth2Stack } from '../harness/oauth2-stack.js';

const USER = 'support@example.com';
const SCOPE = 'mail offline_access';

let stack: OAuth2Stack;
const errors: MailError[] = [];
const canaries: string[] = []; // every token, secret and key seen: none may appear in an error
const keep = <T extends string | undefined>(s: T): T => (s && canaries.push(s), s);
const fails = (p: Promise<unknown>, cls: FailureClass, code?: string) => expectMailError(p, cls, code, errors);

test.before(
  loudHook(async () => {
    stack = await startOAuth2Stack();
    const { clients, introspection } = stack.op;
    for (const s of [clients.confidential.clientSecret, clients.app.clientSecret, introspection.clientSecret]) keep(s);
    keep(clients.appCert.privateKeyPem);
    keep(clients.serviceAccount.privateKeyPem);
  }),
);
test.after(loudHook(async () => stack?.close()));

const confidential = (): OAuth2Client => ({
  clientId: stack.op.clients.confidential.clientId,
  clientSecret: stack.op.clients.confidential.clientSecret,
});

/** A person signs in through the loopback flow; returns the first refresh token. */
async function signIn(client: OAuth2Client, account = USER): Promise<string> {
  const tokens = await browserSignIn({
    ...client,
    authorizationUrl: stack.op.authorizationUrl,
    tokenUrl: stack.op.tokenUrl,
    scope: SCOPE,
    loopback: { path: '/callback' },
    open: async (url) => {
      const redirect = await stack.op.approveAuthorization(url, account);
      await fetch(redirect); // the browser follows the redirect to the loopback listener
    },
  });
  keep(tokens.accessToken);
  assert.type(tokens.refreshToken, 'string');
  return keep(tokens.refreshToken!);
}

const refresh = (client: OAuth2Client, refreshToken: string) =>
  refreshAccessToken({ ...client, tokenUrl: stack.op.tokenUrl, refreshToken }).then((t) => {
    keep(t.accessToken);
    keep(t.refreshToken);
    return t;
  });

test('refresh_token (confidential client, secret in the body): the token logs in to IMAP (OAUTHBEARER) and SMTP', async () => {
  const rt = await signIn(confidential());
  const before = Date.now();
  const t = await refresh(confidential(), rt);
  assert.ok(t.expiresAt > before + 290_000 && t.expiresAt <= Date.now() + 300_000, 'expires_in of 300 s');
  assert.is(await stack.imapLogin(USER, t.accessToken), 'OAUTHBEARER');
  const ok = stack.smtp.authAttempts.ok;
  await stack.smtpLogin(USER, t.accessToken);
  assert.is(stack.smtp.authAttempts.ok, ok + 1);
  // a token is good for its own account only
  await fails(stack.imapLogin('sales@example.com', t.accessToken), 'auth');
  await fails(stack.smtpLogin('sales@example.com', t.accessToken), 'auth');
});

test('client_secret_basic and a public client (no secret) refresh as well', async () => {
  const basic = { ...confidential(), clientSecretIn: 'basic' as const };
  const t = await refresh(basic, await signIn(basic));
  assert.is(await stack.imapLogin(USER, t.accessToken), 'OAUTHBEARER');
  const pub = { clientId: stack.op.clients.public.clientId };
  const before = stack.op.countTokenRequests({ grantType: 'refresh_token', clientId: pub.clientId });
  const p = await refresh(pub, await signIn(pub));
  assert.is(stack.op.countTokenRequests({ grantType: 'refresh_token', clientId: pub.clientId }), before + 1);
  await stack.smtpLogin(USER, p.accessToken);
});

test('rotation: every refresh returns a new refresh token; the used one is refused, reusing it revokes the grant', async () => {
  const rt0 = await signIn(confidential());
  const issued = stack.op.issuedRefreshTokens({ account: USER });
  const t1 = await refresh(confidential(), rt0);
  assert.type(t1.refreshToken, 'string');
  assert.is.not(t1.refreshToken, rt0);
  assert.is(stack.op.issuedRefreshTokens({ account: USER }), issued + 1);
  const t2 = await refresh(confidential(), t1.refreshToken!); // the rotated one works
  assert.is.not(t2.refreshToken, t1.refreshToken);
  await stack.imapLogin(USER, t2.accessToken);
  const e = await fails(refresh(confidential(), rt0), 'auth', 'oauth2-needs-login');
  assert.is(e.providerCode, 'invalid_grant');
  // oidc-provider treats reuse as theft and revokes the grant: even the newest token is gone now, which is why two
  // concurrent refreshes of one rotating token must never happen
  await fails(refresh(confidential(), t2.refreshToken!), 'auth', 'oauth2-needs-login');
});

test('revokeGrants → invalid_grant → oauth2-needs-login (a person must sign in again)', async () => {
  const rt = await signIn(confidential(), 'billing@example.com');
  assert.ok((await stack.op.revokeGrants('billing@example.com', stack.op.clients.confidential.clientId)) >= 1);
  const e = await fails(refresh(confidential(), rt), 'auth', 'oauth2-needs-login');
  assert.match(e.message, 'sign-in needed');
  assert.is(e.providerCode, 'invalid_grant');
});

test("Microsoft's AADSTS code is kept as providerCode; the trace lines are not in the message", async () => {
  stack.op.tokenFault({
    status: 400,
    body: {
      error: 'invalid_grant',
      error_description:
        'AADSTS700082: The refresh token has expired due to inactivity.\r\nTrace ID: 0000\r\nCorrelation ID: 1111',
    },
  });
  const e = await fails(refresh(confidential(), 'whatever-refresh-token'), 'auth', 'oauth2-needs-login');
  assert.is(e.providerCode, 'AADSTS700082');
  assert.match(e.message, 'AADSTS700082: The refresh token has expired');
  assert.not.match(e.message, 'Trace ID');
});

test('a provider that echoes the request in its error: the refresh token and client secret are not repeated', async () => {
  const rt = keep('Canary-Refresh-9f8e7d6c');
  const { clientSecret } = confidential();
  stack.op.tokenFault({
    status: 400,
    body: { error: 'invalid_request', error_description: `refresh_token=${rt}&client_secret=${clientSecret}` },
  });
  const e = await fails(refresh(confidential(), rt), 'config', 'oauth2-invalid-request');
  assert.match(e.message, 'refresh_token=***&client_secret=***');
});

test('client_credentials with a secret (body and Basic): an app-only token for the app mailbox', async () => {
  const { clientId, clientSecret } = stack.op.clients.app;
  for (const clientSecretIn of ['body', 'basic'] as const) {
    const t = await clientCredentialsToken({
      tokenUrl: stack.op.tokenUrl,
      clientId,
      clientSecret,
      clientSecretIn,
      scope: 'mail',
    });
    keep(t.accessToken);
    assert.is(t.refreshToken, undefined);
    assert.is(await stack.imapLogin(USER, t.accessToken), 'OAUTHBEARER');
    await stack.smtpLogin(USER, t.accessToken);
  }
  assert.is(stack.op.countTokenRequests({ grantType: 'client_credentials', clientId }), 2);
});

test('client_credentials with a certificate (RS256 and PS256 assertions, x5t#S256 + x5t headers)', async () => {
  const { clientId, certificatePem, privateKeyPem } = stack.op.clients.appCert;
  for (const alg of ['RS256', 'PS256'] as const) {
    const t = await clientCredentialsToken({
      tokenUrl: stack.op.tokenUrl,
      clientId,
      clientCertificate: { certificatePem, privateKeyPem, alg },
    });
    keep(t.accessToken);
    assert.is(await stack.imapLogin(USER, t.accessToken), 'OAUTHBEARER');
  }
});

test('invalid_client → auth oauth2-client-rejected: wrong secret, unknown certificate', async () => {
  const { clientId } = stack.op.clients.app;
  const wrong = keep('Canary-WrongSecret-5b1e');
  const e = await fails(
    clientCredentialsToken({ tokenUrl: stack.op.tokenUrl, clientId, clientSecret: wrong }),
    'auth',
    'oauth2-client-rejected',
  );
  assert.is(e.providerCode, 'invalid_client');
  assert.match(e.message, 'client secret or certificate rejected or expired');

  const other = await createSigningCert(await mkdtemp(path.join(os.tmpdir(), 'mailctl-cert-')), 'other');
  keep(other.keyPem);
  await fails(
    clientCredentialsToken({
      tokenUrl: stack.op.tokenUrl,
      clientId: stack.op.clients.appCert.clientId,
      clientCertificate: { certificatePem: other.certPem, privateKeyPem: other.keyPem },
    }),
    'auth',
    'oauth2-client-rejected',
  );
  // a key that does not belong to the certificate is found before anything is sent
  const before = stack.op.tokenRequests.length;
  await fails(
    clientCredentialsToken({
      tokenUrl: stack.op.tokenUrl,
      clientId: stack.op.clients.appCert.clientId,
      clientCertificate: { certificatePem: stack.op.clients.appCert.certificatePem, privateKeyPem: other.keyPem },
    }),
    'config',
    'oauth2-bad-key',
  );
  assert.is(stack.op.tokenRequests.length, before);
});

test('jwt_bearer (Google service-account style): a token for the delegated mailbox; a foreign key is rejected', async () => {
  const sa = stack.op.clients.serviceAccount;
  const req = { tokenUrl: stack.op.tokenUrl, serviceAccount: sa.clientId, subject: 'sales@example.com', scope: 'mail' };
  const t = await jwtBearerToken({ ...req, privateKeyPem: sa.privateKeyPem });
  keep(t.accessToken);
  assert.is(await stack.imapLogin('sales@example.com', t.accessToken), 'OAUTHBEARER');
  await stack.smtpLogin('sales@example.com', t.accessToken);
  const other = await createSigningCert(await mkdtemp(path.join(os.tmpdir(), 'mailctl-cert-')), 'sa-other');
  keep(other.keyPem);
  const e = await fails(jwtBearerToken({ ...req, privateKeyPem: other.keyPem }), 'auth', 'oauth2-assertion-rejected');
  assert.match(e.message, 'service-account');
});

test('throttling: Retry-After is honoured and clamped to 1 hour; 503 → network', async () => {
  stack.op.tokenFault({ status: 429, body: { error: 'too_many_requests' }, headers: { 'retry-after': '3000000' } });
  const big = await fails(refresh(confidential(), 'rt-throttled'), 'throttled', 'HTTP_429');
  assert.is(big.retryAfterMs, MAX_RETRY_AFTER_MS);
  assert.ok(big.retryAfterMs! <= 3_600_000);
  stack.op.tokenFault({ status: 503, headers: { 'retry-after': '7' } });
  const busy = await fails(refresh(confidential(), 'rt-busy'), 'network', 'HTTP_503');
  assert.is(busy.retryAfterMs, 7000);
  const at = new Date(Date.now() + 120_000).toUTCString();
  stack.op.tokenFault({ status: 429, headers: { 'retry-after': at } });
  const dated = await fails(refresh(confidential(), 'rt-dated'), 'throttled', 'HTTP_429');
  assert.ok(dated.retryAfterMs! > 100_000 && dated.retryAfterMs! <= 120_000, String(dated.retryAfterMs));
  stack.op.tokenFault({ status: 200, body: '<html>sign in</html>' });
  await fails(refresh(confidential(), 'rt-html'), 'config', 'oauth2-bad-response');
});

test('a slow token endpoint: the request times out as network ETIMEDOUT', async () => {
  stack.op.tokenFault({ delayMs: 1500 });
  const e = await fails(
    refreshAccessToken({ ...confidential(), tokenUrl: stack.op.tokenUrl, refreshToken: 'rt-slow', timeoutMs: 300 }),
    'network',
    'ETIMEDOUT',
  );
  assert.match(e.message, 'did not answer');
});

test('an expired access token no longer logs in (IMAP and SMTP)', async () => {
  stack.op.ttl.accessToken = 3;
  try {
    const t = await clientCredentialsToken({ tokenUrl: stack.op.tokenUrl, ...stack.op.clients.app });
    keep(t.accessToken);
    assert.ok(t.expiresAt <= Date.now() + 3000);
    await stack.imapLogin(USER, t.accessToken);
    await new Promise((r) => setTimeout(r, 3500));
    await fails(stack.imapLogin(USER, t.accessToken), 'auth');
    await fails(stack.smtpLogin(USER, t.accessToken), 'auth');
  } finally {
    stack.op.ttl.accessToken = 300;
  }
});

test('a refresh token is no bearer credential: IMAP refuses it', async () => {
  const rt = await signIn(confidential());
  await fails(stack.imapLogin(USER, rt), 'auth');
});

test('XOAUTH2 when the server offers no OAUTHBEARER', async () => {
  const dv = await startDovecot({
    introspection: stack.op.introspection,
    extraConfig: 'auth_mechanisms = plain login xoauth2',
  });
  try {
    const t = await clientCredentialsToken({ tokenUrl: stack.op.tokenUrl, ...stack.op.clients.app });
    keep(t.accessToken);
    await verifyImap({
      host: dv.host,
      port: dv.ports.imaps,
      tls: true,
      allowPlaintext: false,
      caPem: dv.caPem,
      auth: { user: USER, accessToken: t.accessToken },
    });
    assert.match(await dv.log(), `Login: user=<${USER}>, method=XOAUTH2`);
    assert.not.match(await dv.log(), 'method=OAUTHBEARER');
  } finally {
    await dv.stop();
  }
});

test('canary: no token, secret or key in any error', () => {
  assert.ok(errors.length >= 18, `collected ${errors.length} errors`);
  assert.ok(canaries.length >= 20, `collected ${canaries.length} canaries`);
  for (const e of errors) {
    const text = `${e.message}\n${inspect(e, { depth: 10 })}`;
    for (const c of canaries) {
      assert.not.ok(text.includes(c), `${e.code}: ${e.message}`);
      // also no line of a PEM key
      for (const line of c.split('\n').filter((l) => l.length > 40)) assert.not.ok(text.includes(line));
    }
  }
});

test.run();
