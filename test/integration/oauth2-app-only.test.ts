/**
 * App-only OAuth2 (client credentials, as Microsoft 365's IMAP.AccessAsApp / SMTP) through a real daemon against a
 * real authorization server: IMAP with a client secret, SMTP with a certificate (a signed client assertion), and a
 * service account acting for another mailbox (jwt_bearer, as Google's domain-wide delegation); no refresh token,
 * nobody to sign in. An expired client secret (invalid_client) shows as `failed` with class auth and
 * the provider's code, never as needs-login; and no token, secret or key anywhere.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loudHook } from '../harness/expect.js';
import { flowYaml, imapYaml, smtpYaml } from '../harness/fixtures.js';
import { eventually } from '../harness/mailctl.js';
import { startOAuth2Daemon, type OAuth2Daemon } from '../harness/oauth2-daemon.js';
import { startTcpProxy, type TcpProxy } from '../harness/tcp-proxy.js';

/** The mailbox the provider's app-only tokens may open (its introspection `username`). */
const USER = 'support@example.com';
/** A mailbox a service account acts for (jwt_bearer, domain-wide delegation). */
const ALERTS = 'alerts@example.com';
const STORAGE = 'ContactStorage';
const EXPIRED = 'AADSTS7000222: The provided client secret keys for app are expired.';

let o: OAuth2Daemon;
let imapProxy: TcpProxy;
const apply = (...args: string[]) => o.run(['apply', '--dir', o.ws.dir, ...args]);
const server = async (id: string) =>
  (
    (await o.daemon.api('GET', '/v1/status')).body as {
      servers: { id: string; state: string; lastError: { class: string; message: string } | null }[];
    }
  ).servers.find((s) => s.id === id)!;

const appOnly = (fields: Record<string, string>) => [
  '  type: oauth2',
  `  user: ${USER}`,
  '  oauth2:',
  ...Object.entries({ tokenUrl: o.op.tokenUrl, grant: 'client_credentials', scope: 'mail', ...fields }).map(
    ([k, v]) => `    ${k}: ${JSON.stringify(v)}`,
  ),
];

test.before(
  loudHook(async () => {
    o = await startOAuth2Daemon({ accessTokenTtl: 300 });
    imapProxy = await startTcpProxy({ host: '127.0.0.1', port: o.dv.ports.imap });
    await o.dv.createFolder(USER, STORAGE);
    await o.dv.createFolder(ALERTS, STORAGE);
    const { app, appCert, serviceAccount } = o.op.clients;
    const ref = async (name: string, value: string) => `\${file:${await o.ws.writeSecret(name, value)}}`;
    const secret = appOnly({ clientId: app.clientId, clientSecret: await ref('app-secret', app.clientSecret) });
    const certificate = appOnly({
      clientId: appCert.clientId,
      clientCertificate: await ref('app.crt', appCert.certificatePem),
      clientKey: await ref('app.key', appCert.privateKeyPem),
    });
    const delegated = appOnly({
      grant: 'jwt_bearer',
      clientId: serviceAccount.clientId,
      clientKey: await ref('sa.pem', serviceAccount.privateKeyPem),
    }).map((line) => line.replace(USER, ALERTS));
    await o.ws.writeServer(
      'alerts.yaml',
      imapYaml({
        user: ALERTS,
        password: '',
        auth: delegated,
        shortName: 'alerts',
        port: o.dv.ports.imap,
        caFile: o.dv.caFile,
      }),
    );
    await o.ws.writeServer('flow.yaml', flowYaml('main', 'queues'));
    await o.ws.writeServer(
      'support.yaml',
      [
        imapYaml({
          user: USER,
          password: '',
          auth: secret,
          shortName: 'support',
          port: imapProxy.port,
          caFile: o.dv.caFile,
          storageFolder: STORAGE,
        }),
        smtpYaml({
          user: USER,
          password: '',
          auth: certificate,
          shortName: 'support',
          port: o.smtp.port,
          caFile: o.smtp.caFile,
        }),
      ].join('---\n'),
    );
    await o.startDaemon();
  }),
);
test.after(
  loudHook(async () => {
    await o?.stop();
    await imapProxy?.close();
  }),
);

test('client credentials: IMAP with a client secret, SMTP with a certificate; no refresh token, nobody signs in', async () => {
  const r = await apply();
  assert.is(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, 'imap/support: Connection succeeded');
  assert.match(r.stdout, 'smtp/support: Connection succeeded');
  assert.match(r.stdout, 'imap/alerts: Connection succeeded');
  const subject = 'app-only';
  await o.dv.deliver(
    USER,
    `From: a@example.org\r\nTo: ${USER}\r\nSubject: x\r\nMessage-ID: <${subject}@t>\r\n\r\nhi\r\n`,
  );
  await eventually(
    async () => (await o.dv.listMessages(USER, STORAGE)).some((m) => m.messageId === `<${subject}@t>`),
    20_000,
    'delivered',
  );
  const sent = await o.daemon.api('POST', '/v1/outbound', { from: USER, to: 'c@example.org', subject, text: 'x' });
  assert.is(sent.status, 202, JSON.stringify(sent.body));
  await eventually(
    async () => (await o.daemon.api('GET', `/v1/outbound/${sent.body.id}`)).body.state === 'sent',
    20_000,
    'sent',
  );
  const { app, appCert } = o.op.clients;
  assert.is(o.op.countTokenRequests({ grantType: 'client_credentials', clientId: app.clientId }), 1);
  assert.is(o.op.countTokenRequests({ grantType: 'client_credentials', clientId: appCert.clientId }), 1);
  assert.is(o.op.countTokenRequests({ grantType: 'urn:ietf:params:oauth:grant-type:jwt-bearer' }), 1);
  assert.is(o.op.countTokenRequests({ grantType: 'refresh_token' }), 0);
  const { credentials } = JSON.parse((await o.run(['auth', 'status', '--json'])).stdout);
  assert.equal(
    credentials.map((c: { grant: string; refreshToken: unknown; servers: string[] }) => [
      c.grant,
      c.refreshToken,
      c.servers,
    ]),
    [
      ['jwt_bearer', null, ['imap/alerts']],
      ['client_credentials', null, ['imap/support']],
      ['client_credentials', null, ['smtp/support']],
    ],
  );
  const signIn = await o.run(['auth', 'login', 'imap/support']);
  assert.is(signIn.code, 1);
  assert.match(signIn.stderr, 'uses client_credentials (app-only): there is nobody to sign in');
});

test('invalid_client (an expired client secret) is failed, class auth, with the provider code: never needs-login', async () => {
  o.op.tokenFault({
    status: 401,
    body: { error: 'invalid_client', error_description: `${EXPIRED}\r\nTrace ID: 1` },
    grantType: 'client_credentials',
    times: 1000,
  });
  try {
    const r = await apply('--reauthenticate', 'imap/support');
    assert.is(r.code, 1, r.stdout);
    assert.match(
      r.stdout,
      `imap/support: Connection failed: auth: OAuth2 client secret or certificate rejected or expired at ${o.op.tokenUrl} (invalid_client: ${EXPIRED})`,
    );
    imapProxy.reset(); // the loop connects again: it needs a token, and the provider refuses the client
    imapProxy.heal();
    const failed = await eventually(
      async () => {
        const s = await server('imap/support');
        return s.state === 'failed' && s.lastError?.class === 'auth' && s;
      },
      20_000,
      'imap/support failed (auth)',
    );
    assert.match(failed.lastError!.message, 'client secret or certificate rejected or expired');
    const credential = JSON.parse((await o.run(['auth', 'status', '--json'])).stdout).credentials.find(
      (c: { servers: string[] }) => c.servers.includes('imap/support'),
    );
    assert.is(credential.needsLogin, false);
    assert.is(credential.lastError.code, 'oauth2-client-rejected');
    assert.is(credential.lastError.providerCode, 'AADSTS7000222');
  } finally {
    o.op.clearTokenFaults();
  }
  await eventually(async () => (await server('imap/support')).state === 'running', 30_000, 'running again');
});

test('canary: no token, client secret or key in any output, log or state file', async () => {
  await o.canary();
});

test.run();
