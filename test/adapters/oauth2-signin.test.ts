/**
 * Sign-in flows against a real authorization server (oidc-provider) with a scripted person: the device
 * authorization grant (RFC 8628) and the authorization code grant with PKCE on a loopback redirect (RFC 8252).
 * Each token then logs in to Dovecot over IMAP.
 */
import { inspect } from 'node:util';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { FailureClass, MailError } from '../../src/adapters/connection.js';
import {
  browserSignIn,
  buildAuthorizationUrl,
  createPkce,
  createState,
  exchangeAuthorizationCode,
  pollDeviceAuthorization,
  startDeviceAuthorization,
  startLoopbackRedirect,
  type DeviceAuthorization,
  type OAuth2Client,
} from '../../src/adapters/oauth2/index.js';
import { expectMailError, loudHook } from '../harness/expect.js';
import { startOAuth2Stack, type OAuth2Stack } from '../harness/oauth2-stack.js';

const USER = 'support@example.com';
const SCOPE = 'mail offline_access';

let stack: OAuth2Stack;
const errors: MailError[] = [];
const canaries: string[] = [];
const keep = <T extends string | undefined>(s: T): T => (s && canaries.push(s), s);
const fails = (p: Promise<unknown>, cls: FailureClass, code?: string) => expectMailError(p, cls, code, errors);

test.before(
  loudHook(async () => {
    stack = await startOAuth2Stack({ deviceInterval: 1 });
    keep(stack.op.clients.confidential.clientSecret);
  }),
);
test.after(loudHook(async () => stack?.close()));

const pub = (): OAuth2Client => ({ clientId: stack.op.clients.public.clientId });
const confidential = (): OAuth2Client => ({
  clientId: stack.op.clients.confidential.clientId,
  clientSecret: stack.op.clients.confidential.clientSecret,
});

async function startDevice(client: OAuth2Client): Promise<DeviceAuthorization> {
  const d = await startDeviceAuthorization({
    ...client,
    deviceAuthorizationUrl: stack.op.deviceAuthorizationUrl,
    scope: SCOPE,
  });
  keep(d.deviceCode);
  return d;
}
const poll = (client: OAuth2Client, d: DeviceAuthorization, signal?: AbortSignal) =>
  pollDeviceAuthorization({ ...client, tokenUrl: stack.op.tokenUrl, signal }, d);

test('device flow (public client): the person approves, polling gets tokens that log in', async () => {
  const d = await startDevice(pub());
  assert.match(d.verificationUri, `${stack.op.issuer}/device`);
  assert.match(d.userCode, /^[A-Z]{4}-[A-Z]{4}$/);
  assert.is(d.intervalMs, 1000);
  assert.ok(d.expiresAt > Date.now() + 590_000);
  const before = stack.op.countTokenRequests({ grantType: 'urn:ietf:params:oauth:grant-type:device_code' });
  const tokens = poll(pub(), d);
  await new Promise((r) => setTimeout(r, 1500)); // at least one authorization_pending first
  await stack.op.approveDevice(d.userCode, USER);
  const t = await tokens;
  keep(t.accessToken);
  keep(t.refreshToken);
  assert.type(t.refreshToken, 'string');
  const statuses = stack.op.tokenRequests
    .filter((r) => r.grantType === 'urn:ietf:params:oauth:grant-type:device_code')
    .slice(before)
    .map((r) => r.status);
  assert.is(statuses[0], 400, 'authorization_pending first');
  assert.is(statuses.at(-1), 200);
  assert.is(statuses.filter((s) => s === 200).length, 1);
  assert.is(await stack.imapLogin(USER, t.accessToken), 'OAUTHBEARER');
});

test('device flow (confidential client): works with the client secret', async () => {
  const d = await startDevice(confidential());
  await stack.op.approveDevice(d.userCode, 'sales@example.com');
  const t = await poll(confidential(), d);
  keep(t.accessToken);
  keep(t.refreshToken);
  await stack.smtpLogin('sales@example.com', t.accessToken);
});

test('device flow denied → auth oauth2-access-denied', async () => {
  const d = await startDevice(pub());
  await stack.op.denyDevice(d.userCode);
  const e = await fails(poll(pub(), d), 'auth', 'oauth2-access-denied');
  assert.is(e.providerCode, 'access_denied');
});

test('device flow: slow_down adds 5 s to the interval; transient 503s are ridden out', async () => {
  const d = await startDevice(pub());
  const grantType = 'urn:ietf:params:oauth:grant-type:device_code';
  stack.op.tokenFault({ status: 400, body: { error: 'slow_down' }, grantType });
  stack.op.tokenFault({ status: 503, grantType });
  const started = Date.now();
  const before = stack.op.countTokenRequests({ grantType });
  const tokens = poll(pub(), d);
  await stack.op.approveDevice(d.userCode, USER);
  const t = await tokens;
  keep(t.accessToken);
  keep(t.refreshToken);
  const took = Date.now() - started;
  // poll 1 (after 1 s) → slow_down; poll 2 (after 6 s more) → 503; poll 3 (6 s) → tokens
  assert.ok(took >= 12_500, `took ${took} ms`);
  assert.is(stack.op.countTokenRequests({ grantType }) - before, 3);
});

test('device flow: an expired code → oauth2-sign-in-expired; the caller can abort', async () => {
  const d = await startDevice(pub());
  await fails(poll(pub(), { ...d, expiresAt: Date.now() + 1500 }), 'auth', 'oauth2-sign-in-expired');
  const ac = new AbortController();
  const polling = poll(pub(), d, ac.signal);
  setTimeout(() => ac.abort(), 200);
  const started = Date.now();
  await fails(polling, 'auth', 'oauth2-sign-in-cancelled');
  assert.ok(Date.now() - started < 900, 'stopped at once, not after the interval');
});

test('PKCE loopback sign-in (public client): approved in the browser, the code exchanged, the token logs in', async () => {
  let opened = '';
  const t = await browserSignIn({
    ...pub(),
    authorizationUrl: stack.op.authorizationUrl,
    tokenUrl: stack.op.tokenUrl,
    scope: SCOPE,
    loginHint: USER,
    loopback: { path: '/callback' },
    open: async (url) => {
      opened = url;
      const redirect = await stack.op.approveAuthorization(url, USER);
      const res = await fetch(redirect);
      assert.is(res.status, 200);
      assert.not.match(await res.text(), new URL(redirect).searchParams.get('code')!);
    },
  });
  keep(t.accessToken);
  keep(t.refreshToken);
  const u = new URL(opened);
  assert.is(u.searchParams.get('code_challenge_method'), 'S256');
  assert.is(u.searchParams.get('login_hint'), USER);
  assert.match(u.searchParams.get('redirect_uri')!, /^http:\/\/127\.0\.0\.1:\d+\/callback$/);
  assert.is(await stack.imapLogin(USER, t.accessToken), 'OAUTHBEARER');
});

test('loopback listener: a redirect with a wrong state is refused and not taken; the right one is', async () => {
  const pkce = createPkce();
  const state = createState();
  const loop = await startLoopbackRedirect({ state, path: '/callback' });
  try {
    const url = buildAuthorizationUrl({
      authorizationUrl: stack.op.authorizationUrl,
      clientId: pub().clientId,
      redirectUri: loop.redirectUri,
      scope: SCOPE,
      state,
      codeChallenge: pkce.challenge,
    });
    const redirect = new URL(await stack.op.approveAuthorization(url, USER));
    const forged = new URL(redirect);
    forged.searchParams.set('state', 'not-the-state');
    assert.is((await fetch(forged)).status, 400);
    assert.is((await fetch(new URL('/favicon.ico', redirect))).status, 404);
    assert.is((await fetch(redirect)).status, 200);
    const code = keep(await loop.code);
    assert.is(code, redirect.searchParams.get('code'));
    const t = await exchangeAuthorizationCode({
      ...pub(),
      tokenUrl: stack.op.tokenUrl,
      code,
      redirectUri: loop.redirectUri,
      codeVerifier: pkce.verifier,
    });
    keep(t.accessToken);
    keep(t.refreshToken);
    // the listener took exactly one redirect and is gone
    await fetch(redirect).then(
      () => assert.unreachable('listener still open'),
      () => undefined,
    );
  } finally {
    await loop.close();
  }
});

test('PKCE: a wrong verifier is refused (invalid_grant); a refused consent → oauth2-access-denied', async () => {
  const pkce = createPkce();
  const state = createState();
  const loop = await startLoopbackRedirect({ state, path: '/callback' });
  const url = buildAuthorizationUrl({
    authorizationUrl: stack.op.authorizationUrl,
    clientId: pub().clientId,
    redirectUri: loop.redirectUri,
    scope: SCOPE,
    state,
    codeChallenge: pkce.challenge,
  });
  await fetch(await stack.op.approveAuthorization(url, USER));
  await fails(
    exchangeAuthorizationCode({
      ...pub(),
      tokenUrl: stack.op.tokenUrl,
      code: keep(await loop.code),
      redirectUri: loop.redirectUri,
      codeVerifier: createPkce().verifier,
    }),
    'auth',
    'oauth2-needs-login',
  );

  const denied = browserSignIn({
    ...pub(),
    authorizationUrl: stack.op.authorizationUrl,
    tokenUrl: stack.op.tokenUrl,
    scope: SCOPE,
    loopback: { path: '/callback' },
    open: async (u) => void (await fetch(await stack.op.denyAuthorization(u, USER))),
  });
  const e = await fails(denied, 'auth', 'oauth2-access-denied');
  assert.is(e.providerCode, 'access_denied');
});

test('loopback listener: times out and can be aborted', async () => {
  const slow = await startLoopbackRedirect({ state: createState(), timeoutMs: 200 });
  await fails(slow.code, 'auth', 'oauth2-sign-in-expired');
  const ac = new AbortController();
  const waiting = await startLoopbackRedirect({ state: createState(), signal: ac.signal });
  ac.abort();
  await fails(waiting.code, 'auth', 'oauth2-sign-in-cancelled');
});

test('canary: no token, code, verifier or secret in any error', () => {
  assert.ok(errors.length >= 7, `collected ${errors.length} errors`);
  for (const e of errors) {
    const text = `${e.message}\n${inspect(e, { depth: 10 })}`;
    for (const c of canaries) assert.not.ok(text.includes(c), `${e.code}: ${e.message}`);
  }
});

test.run();
