/** OAuth2 pieces that need no server: presets, signed assertions, PKCE, Retry-After, error classification. */
import { createHash, createPublicKey, verify, constants, X509Certificate } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MailError } from '../../src/adapters/connection.js';
import { classifyOAuth2Response } from '../../src/adapters/oauth2/errors.js';
import {
  buildAuthorizationUrl,
  clientCredentialsToken,
  createPkce,
  createState,
  providerPreset,
  retryAfterMs,
} from '../../src/adapters/oauth2/index.js';
import { clientAssertion, grantAssertion } from '../../src/adapters/oauth2/jwt.js';
import { createSigningCert, type CertFiles } from '../harness/ca.js';

let cert: CertFiles;
test.before(async () => {
  cert = await createSigningCert(await mkdtemp(path.join(os.tmpdir(), 'mailctl-cert-')), 'unit');
});

const part = (jwt: string, i: number) => JSON.parse(Buffer.from(jwt.split('.')[i]!, 'base64url').toString());
const thrown = (fn: () => unknown): MailError => {
  try {
    fn();
  } catch (err) {
    assert.instance(err, MailError);
    return err as MailError;
  }
  throw new Error('did not throw');
};

test('Microsoft preset: per-tenant endpoints, delegated and app-only scopes', () => {
  const imap = providerPreset('microsoft', 'imap', 'contoso.onmicrosoft.com');
  assert.is(imap.tokenUrl, 'https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token');
  assert.is(
    imap.deviceAuthorizationUrl,
    'https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/devicecode',
  );
  assert.is(imap.authorizationUrl, 'https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/authorize');
  assert.is(imap.scope, 'https://outlook.office.com/IMAP.AccessAsUser.All offline_access');
  assert.is(
    providerPreset('microsoft', 'smtp', 'contoso.com').scope,
    'https://outlook.office.com/SMTP.Send offline_access',
  );
  const app = providerPreset('microsoft', 'app-only', '00000000-1111-2222-3333-444444444444');
  assert.is(app.scope, 'https://outlook.office365.com/.default');
  assert.is(thrown(() => providerPreset('microsoft', 'imap')).code, 'oauth2-invalid-request');
  assert.is(thrown(() => providerPreset('microsoft', 'imap', 'evil.com/x')).failureClass, 'config');
  assert.match(thrown(() => providerPreset('microsoft', 'app-only', 'common')).message, 'not "common"');
  assert.ok(providerPreset('microsoft', 'imap', 'organizations').deviceFlowForMail);
});

test('Google and generic presets', () => {
  const g = providerPreset('google', 'imap');
  assert.is(g.tokenUrl, 'https://oauth2.googleapis.com/token');
  assert.is(g.deviceAuthorizationUrl, 'https://oauth2.googleapis.com/device/code');
  assert.is(g.authorizationUrl, 'https://accounts.google.com/o/oauth2/v2/auth');
  assert.is(g.scope, 'https://mail.google.com/');
  assert.is(g.deviceFlowForMail, false);
  assert.equal(providerPreset('generic', 'smtp'), { deviceFlowForMail: true });
});

test('client assertion: RS256, iss = sub = client, aud = token URL, unique jti, 5 minutes, x5t#S256 and x5t', () => {
  const url = 'https://login.example.com/tenant/oauth2/v2.0/token';
  const a = clientAssertion('app-1', url, { certificatePem: cert.certPem, privateKeyPem: cert.keyPem });
  const b = clientAssertion('app-1', url, { certificatePem: cert.certPem, privateKeyPem: cert.keyPem });
  const der = new X509Certificate(cert.certPem).raw;
  const header = part(a, 0);
  assert.equal(header, {
    alg: 'RS256',
    typ: 'JWT',
    'x5t#S256': createHash('sha256').update(der).digest('base64url'),
    x5t: createHash('sha1').update(der).digest('base64url'),
  });
  const claims = part(a, 1);
  assert.is(claims.iss, 'app-1');
  assert.is(claims.sub, 'app-1');
  assert.is(claims.aud, url);
  assert.is(claims.exp - claims.iat, 300);
  assert.is.not(claims.jti, part(b, 1).jti);
  const [h, p, s] = a.split('.');
  assert.ok(verify('sha256', Buffer.from(`${h}.${p}`), createPublicKey(cert.certPem), Buffer.from(s!, 'base64url')));
  const ps = clientAssertion('app-1', url, { certificatePem: cert.certPem, privateKeyPem: cert.keyPem, alg: 'PS256' });
  const [ph, pp, psig] = ps.split('.');
  assert.is(part(ps, 0).alg, 'PS256');
  assert.ok(
    verify(
      'sha256',
      Buffer.from(`${ph}.${pp}`),
      { key: createPublicKey(cert.certPem), padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 },
      Buffer.from(psig!, 'base64url'),
    ),
  );
});

test('client assertion: unusable keys and an expired certificate are refused before sending', () => {
  const noKey = thrown(() =>
    clientAssertion('a', 'https://x/token', { certificatePem: cert.certPem, privateKeyPem: 'nope' }),
  );
  assert.is(noKey.code, 'oauth2-bad-key');
  const noCert = thrown(() =>
    clientAssertion('a', 'https://x/token', { certificatePem: 'x', privateKeyPem: cert.keyPem }),
  );
  assert.is(noCert.code, 'oauth2-bad-key');
  const later = Date.parse(new X509Certificate(cert.certPem).validTo) + 1000;
  const expired = thrown(() =>
    clientAssertion('a', 'https://x/token', { certificatePem: cert.certPem, privateKeyPem: cert.keyPem }, later),
  );
  assert.is(expired.failureClass, 'auth');
  assert.is(expired.code, 'oauth2-client-rejected');
  assert.match(expired.message, 'expired');
});

test('grant assertion (Google service account): claims, kid, 1 hour', () => {
  const jwt = grantAssertion({
    issuer: 'sa@p.iam.gserviceaccount.com',
    subject: 'support@example.com',
    audience: 'https://oauth2.googleapis.com/token',
    scope: 'https://mail.google.com/',
    privateKeyPem: cert.keyPem,
    keyId: 'k1',
  });
  assert.equal(part(jwt, 0), { alg: 'RS256', typ: 'JWT', kid: 'k1' });
  const c = part(jwt, 1);
  assert.equal(
    { iss: c.iss, sub: c.sub, aud: c.aud, scope: c.scope, life: c.exp - c.iat },
    {
      iss: 'sa@p.iam.gserviceaccount.com',
      sub: 'support@example.com',
      aud: 'https://oauth2.googleapis.com/token',
      scope: 'https://mail.google.com/',
      life: 3600,
    },
  );
});

test('PKCE: 43-character verifier, S256 challenge; state is random; the authorization URL keeps its query', () => {
  const p = createPkce();
  assert.is(p.verifier.length, 43);
  assert.is(p.challenge, createHash('sha256').update(p.verifier).digest('base64url'));
  assert.is.not(createState(), createState());
  const u = new URL(
    buildAuthorizationUrl({
      authorizationUrl: 'https://idp.example.com/authorize?tenant=x',
      clientId: 'c',
      redirectUri: 'http://127.0.0.1:5000/',
      scope: 'a b',
      state: 's',
      codeChallenge: p.challenge,
      extraParams: { access_type: 'offline' },
    }),
  );
  assert.equal(Object.fromEntries(u.searchParams), {
    tenant: 'x',
    response_type: 'code',
    client_id: 'c',
    redirect_uri: 'http://127.0.0.1:5000/',
    scope: 'a b',
    state: 's',
    code_challenge: p.challenge,
    code_challenge_method: 'S256',
    access_type: 'offline',
  });
});

test('Retry-After: seconds or a date, clamped to [0, 1 hour]; garbage ignored', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  assert.is(retryAfterMs('120', now), 120_000);
  assert.is(retryAfterMs('3000000', now), 3_600_000);
  assert.is(retryAfterMs('99999999999999999999', now), 3_600_000);
  assert.is(retryAfterMs('Thu, 01 Jan 2026 00:01:00 GMT', now), 60_000);
  assert.is(retryAfterMs('Wed, 31 Dec 2025 23:00:00 GMT', now), 0);
  assert.is(retryAfterMs('soon', now), undefined);
  assert.is(retryAfterMs(null, now), undefined);
});

test('classification of OAuth2 errors by grant', () => {
  const ctx = (grant?: 'jwt_bearer' | 'client_credentials' | 'refresh_token') => ({
    url: 'https://idp.example.com/token?secret=x',
    grant,
    secrets: ['s3cret-value'],
  });
  const h = new Headers();
  const c = (status: number, body: Record<string, unknown> | undefined, grant?: Parameters<typeof ctx>[0]) =>
    classifyOAuth2Response(ctx(grant), status, h, body);
  assert.is(c(400, { error: 'invalid_grant' }, 'refresh_token').code, 'oauth2-needs-login');
  assert.is(c(400, { error: 'interaction_required' }).code, 'oauth2-needs-login');
  assert.is(c(400, { error: 'invalid_grant' }, 'jwt_bearer').code, 'oauth2-assertion-rejected');
  assert.is(c(400, { error: 'invalid_grant' }, 'client_credentials').code, 'oauth2-client-rejected');
  assert.is(c(401, { error: 'invalid_client' }).failureClass, 'auth');
  assert.is(c(400, { error: 'unauthorized_client' }).failureClass, 'config');
  assert.is(c(400, { error: 'invalid_scope' }).code, 'oauth2-invalid-scope');
  assert.is(c(400, { error: 'slow_down' }).failureClass, 'throttled');
  assert.is(c(401, undefined).code, 'oauth2-client-rejected');
  const leak = c(400, { error: 'invalid_request', error_description: 'bad value s3cret-value' });
  assert.not.match(leak.message, 's3cret-value');
  assert.not.match(leak.message, 'secret=x'); // the query string is never shown
  assert.is(leak.code, 'oauth2-invalid-request');
});

test('a client with both a secret and a certificate is refused', async () => {
  const e = await clientCredentialsToken({
    tokenUrl: 'http://127.0.0.1:9/token',
    clientId: 'c',
    clientSecret: 'Canary-Both-1',
    clientCertificate: { certificatePem: cert.certPem, privateKeyPem: cert.keyPem },
  }).then(
    () => undefined,
    (err: MailError) => err,
  );
  assert.ok(e, 'accepted');
  assert.is(e.code, 'oauth2-invalid-request');
  assert.not.match(e.message, 'Canary-Both-1');
});

test.run();
