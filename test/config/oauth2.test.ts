/** What an oauth2 block means offline: its endpoints (equal to the adapters' presets) and the credential it names. */
import { createHash } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { providerPreset } from '../../src/adapters/oauth2/index.js';
import type { ServerSpec } from '../../src/config/model.js';
import { credentialOf, endpointsOf } from '../../src/config/oauth2.js';
import type { OAuth2Credentials } from '../../src/generated/mailctl.js';

const server = (type: 'imap' | 'smtp', user: string, oauth2: OAuth2Credentials): ServerSpec =>
  ({
    type,
    shortName: 'x',
    name: 'x',
    host: 'mail.example.com',
    port: 993,
    tls: true,
    allowPlaintext: false,
    role: 'agent',
    enabled: true,
    auth: { type: 'oauth2', user, oauth2 },
  }) as ServerSpec;

const TOKEN = 'https://login.example.com/token';

test("provider endpoints are the adapters' presets (Microsoft per tenant, Google); written ones win", () => {
  for (const tenant of ['contoso.com', '00000000-0000-0000-0000-000000000001']) {
    const preset = providerPreset('microsoft', 'imap', tenant);
    assert.equal(endpointsOf({ provider: 'microsoft', tenant }), {
      tokenUrl: preset.tokenUrl,
      deviceAuthorizationUrl: preset.deviceAuthorizationUrl,
      authorizationUrl: preset.authorizationUrl,
    });
  }
  const google = providerPreset('google', 'imap');
  assert.equal(endpointsOf({ provider: 'google' }), {
    tokenUrl: google.tokenUrl,
    deviceAuthorizationUrl: google.deviceAuthorizationUrl,
    authorizationUrl: google.authorizationUrl,
  });
  assert.equal(endpointsOf({ provider: 'google', tokenUrl: TOKEN }).tokenUrl, TOKEN);
  assert.equal(endpointsOf({ tokenUrl: TOKEN }), { tokenUrl: TOKEN });
});

test('credential id: oauth2/ + 12 hex of sha256 of [refresh-token reference or sign-in, client id, token URL]', () => {
  const ref = '${file:/run/secrets/rt}';
  const c = credentialOf(server('imap', 'a@example.com', { tokenUrl: TOKEN, clientId: 'app', refreshToken: ref }))!;
  const hex = createHash('sha256')
    .update(JSON.stringify([ref, 'app', TOKEN]))
    .digest('hex')
    .slice(0, 12);
  assert.is(c.id, `oauth2/${hex}`);
  assert.is(c.grant, 'refresh_token');
  assert.is(c.refreshToken, ref);
  const signIn = credentialOf(server('imap', 'A@Example.com', { tokenUrl: TOKEN, clientId: 'app' }))!;
  const signInHex = createHash('sha256')
    .update(JSON.stringify(['sign-in:a@example.com', 'app', TOKEN]))
    .digest('hex')
    .slice(0, 12);
  assert.is(signIn.id, `oauth2/${signInHex}`);
  assert.is(signIn.refreshToken, undefined);
});

test('who shares a credential: IMAP and SMTP of one sign-in; every mailbox of an app; not another token URL', () => {
  const id = (type: 'imap' | 'smtp', user: string, o: OAuth2Credentials) => credentialOf(server(type, user, o))!.id;
  const signIn = { tokenUrl: TOKEN, clientId: 'app' };
  assert.is(id('imap', 'a@example.com', signIn), id('smtp', 'a@example.com', signIn));
  assert.is.not(id('imap', 'a@example.com', signIn), id('imap', 'b@example.com', signIn));
  assert.is.not(id('imap', 'a@example.com', signIn), id('imap', 'a@example.com', { ...signIn, tokenUrl: `${TOKEN}2` }));
  const app = { tokenUrl: TOKEN, clientId: 'app', grant: 'client_credentials' as const, clientSecret: '${env:S}' };
  assert.is(id('imap', 'a@example.com', app), id('smtp', 'b@example.com', app));
  const sa = { tokenUrl: TOKEN, clientId: 'sa', grant: 'jwt_bearer' as const, clientKey: '${env:K}' };
  assert.is.not(id('imap', 'a@example.com', sa), id('imap', 'b@example.com', sa));
  const moved = credentialOf(server('imap', 'a@example.com', { ...signIn, tokenUrl: `${TOKEN}2` }))!;
  assert.is(moved.lineage, credentialOf(server('imap', 'a@example.com', signIn))!.lineage);
  assert.is(credentialOf(server('imap', 'a@example.com', { accessToken: '${env:AT}' })), null);
  assert.is(credentialOf(server('imap', 'a@example.com', { provider: 'microsoft', clientId: 'app' })), null);
});

test.run();
