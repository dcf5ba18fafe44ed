/**
 * The access-token cache against a real authorization server with rotating refresh tokens: one token request for
 * many concurrent callers (counted at the provider), reuse until shortly before expiry, invalidate(), the rotated
 * refresh token handed to onRotated, failures shared and not cached, no token in its state.
 */
import { inspect } from 'node:util';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { MailError } from '../../src/adapters/connection.js';
import {
  AccessTokenCache,
  browserSignIn,
  refreshAccessToken,
  type TokenSet,
  type TokenSource,
} from '../../src/adapters/oauth2/index.js';
import { expectMailError, loudHook } from '../harness/expect.js';
import { startOAuth2Stack, type OAuth2Stack } from '../harness/oauth2-stack.js';

const USER = 'support@example.com';
const ID = 'oauth2/0123456789ab';

let stack: OAuth2Stack;
/** The caller's store of refresh tokens (what the daemon keeps encrypted). */
const kept = new Map<string, string>();
const rotations: string[] = [];
let cache: AccessTokenCache;
let inFlight = 0;
let maxInFlight = 0;

const client = () => ({
  clientId: stack.op.clients.confidential.clientId,
  clientSecret: stack.op.clients.confidential.clientSecret,
});
const requests = () => stack.op.countTokenRequests({ grantType: 'refresh_token', clientId: client().clientId });

/** Reads the newest kept refresh token, as the daemon's source will. */
const source: TokenSource = async () => {
  inFlight++;
  maxInFlight = Math.max(maxInFlight, inFlight);
  try {
    return await refreshAccessToken({ ...client(), tokenUrl: stack.op.tokenUrl, refreshToken: kept.get(ID)! });
  } finally {
    inFlight--;
  }
};

async function signIn(): Promise<void> {
  const t = await browserSignIn({
    ...client(),
    authorizationUrl: stack.op.authorizationUrl,
    tokenUrl: stack.op.tokenUrl,
    scope: 'mail offline_access',
    loopback: { path: '/callback' },
    open: async (url) => void (await fetch(await stack.op.approveAuthorization(url, USER))),
  });
  kept.set(ID, t.refreshToken!);
}

test.before(
  loudHook(async () => {
    stack = await startOAuth2Stack();
    cache = new AccessTokenCache({
      onRotated: (id, refreshToken) => {
        rotations.push(id);
        kept.set(id, refreshToken);
      },
    });
    await signIn();
  }),
);
test.after(loudHook(async () => stack?.close()));

test('20 concurrent callers share one token request; later calls reuse the token (IMAP + SMTP pair)', async () => {
  const before = requests();
  const issued = stack.op.issuedRefreshTokens({ clientId: client().clientId });
  const original = kept.get(ID);
  const got = await Promise.all(Array.from({ length: 20 }, () => cache.get(ID, source)));
  assert.is(requests() - before, 1);
  assert.is(stack.op.issuedRefreshTokens({ clientId: client().clientId }) - issued, 1);
  assert.is(new Set(got.map((g) => g.accessToken)).size, 1);
  assert.equal(rotations, [ID]);
  assert.is.not(kept.get(ID), original);
  for (let i = 0; i < 50; i++) await cache.get(ID, source); // "polls"
  assert.is(requests() - before, 1);
  const { accessToken } = got[0]!;
  assert.is(await stack.imapLogin(USER, accessToken), 'OAUTHBEARER');
  await stack.smtpLogin(USER, accessToken);
  assert.is(maxInFlight, 1);
});

test('reused until shortly before expiry, then exactly one refresh with the rotated refresh token', async () => {
  stack.op.ttl.accessToken = 6;
  try {
    cache.invalidate(ID);
    const first = await cache.get(ID, source); // 6 s token: refreshed 1.2 s before it expires
    const before = requests();
    await new Promise((r) => setTimeout(r, 1000));
    assert.is((await cache.get(ID, source)).accessToken, first.accessToken);
    assert.is(requests(), before);
    await new Promise((r) => setTimeout(r, 4200)); // 5.2 s: inside the margin
    const got = await Promise.all(Array.from({ length: 20 }, () => cache.get(ID, source)));
    assert.is(requests() - before, 1);
    assert.is.not(got[0]!.accessToken, first.accessToken);
    assert.is(new Set(got.map((g) => g.accessToken)).size, 1);
    await stack.imapLogin(USER, got[0]!.accessToken);
  } finally {
    stack.op.ttl.accessToken = 300;
  }
});

test('invalidate (reauthenticateOnSave): the next call gets a fresh token, counted at the provider', async () => {
  const a = await cache.get(ID, source);
  const before = requests();
  cache.invalidate(ID);
  const got = await Promise.all(Array.from({ length: 5 }, () => cache.get(ID, source)));
  assert.is(requests() - before, 1);
  assert.is.not(got[0]!.accessToken, a.accessToken);
  await stack.imapLogin(USER, got[0]!.accessToken);
});

test('invalidate while a request is in flight: it finishes first, then one new request; never two at once', async () => {
  cache.invalidate(ID);
  stack.op.tokenFault({ delayMs: 600, grantType: 'refresh_token' });
  const before = requests();
  const early = cache.get(ID, source);
  await new Promise((r) => setTimeout(r, 150));
  cache.invalidate(ID);
  const late = cache.get(ID, source);
  const [e, l] = await Promise.all([early, late]);
  assert.is.not(e.accessToken, l.accessToken);
  assert.is(requests() - before, 2);
  assert.is(maxInFlight, 1);
  assert.is((await cache.get(ID, source)).accessToken, l.accessToken);
  await stack.imapLogin(USER, l.accessToken);
});

test('a failure is shared by the callers that waited for it and is not cached', async () => {
  cache.invalidate(ID);
  stack.op.tokenFault({ status: 503, headers: { 'retry-after': '2' }, grantType: 'refresh_token' });
  const before = requests();
  const results = await Promise.allSettled(Array.from({ length: 5 }, () => cache.get(ID, source)));
  assert.is(requests() - before, 1);
  for (const r of results) {
    assert.is(r.status, 'rejected');
    const e = (r as PromiseRejectedResult).reason as MailError;
    assert.is(e.code, 'HTTP_503');
    assert.is(e.retryAfterMs, 2000);
  }
  await cache.get(ID, source);
  assert.is(requests() - before, 2);
});

test('a revoked grant reaches every caller as oauth2-needs-login', async () => {
  cache.invalidate(ID);
  await stack.op.revokeGrants(USER);
  const all = Array.from({ length: 3 }, () => expectMailError(cache.get(ID, source), 'auth', 'oauth2-needs-login'));
  await Promise.all(all);
  await signIn(); // a person signs in again: the kept refresh token is replaced
  await cache.get(ID, source);
});

test('state() and inspect() show no token', async () => {
  const { accessToken } = await cache.get(ID, source);
  const state = cache.state(ID)!;
  assert.type(state.expiresAt, 'number');
  assert.type(state.lastRefreshAt, 'number');
  assert.is(state.refreshing, false);
  const shown = `${JSON.stringify(state)} ${inspect(cache, { depth: 10, showHidden: true })}`;
  assert.not.ok(shown.includes(accessToken));
  assert.not.ok(shown.includes(kept.get(ID)!));
  assert.is(cache.state('oauth2/unknown'), undefined);
});

// With a fake source and clock: the margin, and a failing onRotated.
const token = (accessToken: string, lifetimeMs: number, now: number, refreshToken?: string): TokenSet => ({
  accessToken,
  expiresAt: now + lifetimeMs,
  ...(refreshToken && { refreshToken }),
});

test('margin: at most 5 minutes before expiry, a fifth of a short lifetime', async () => {
  let now = 1_000_000;
  let calls = 0;
  const c = new AccessTokenCache({ now: () => now });
  const hour: TokenSource = () => Promise.resolve(token(`t${++calls}`, 3_600_000, now));
  await c.get('a', hour);
  now += 3_600_000 - 300_001;
  assert.is((await c.get('a', hour)).accessToken, 't1');
  now += 2;
  assert.is((await c.get('a', hour)).accessToken, 't2');
  const short: TokenSource = () => Promise.resolve(token(`s${++calls}`, 10_000, now));
  await c.get('b', short);
  now += 7_999;
  assert.is((await c.get('b', short)).accessToken, 's3');
  now += 2;
  assert.is((await c.get('b', short)).accessToken, 's4');
});

test('onRotated is awaited before the token is handed out; its failure reaches the callers', async () => {
  const order: string[] = [];
  const c = new AccessTokenCache({
    onRotated: async (_id, rt) => {
      await new Promise((r) => setTimeout(r, 50));
      order.push(`kept ${rt}`);
      if (rt === 'rt-bad') throw new Error('disk full');
    },
  });
  await c.get('x', () => Promise.resolve(token('a1', 60_000, Date.now(), 'rt-1')));
  order.push('got a1');
  assert.equal(order, ['kept rt-1', 'got a1']);
  c.invalidate('x');
  const e = await c
    .get('x', () => Promise.resolve(token('a2', 60_000, Date.now(), 'rt-bad')))
    .then(
      () => undefined,
      (err: Error) => err,
    );
  assert.is(e?.message, 'disk full');
});

test.run();
