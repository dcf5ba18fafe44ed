/**
 * A refresh-token reference whose tokens the provider rotates on every use (oidc-provider; reusing a used one revokes
 * the grant), shared by an IMAP and an SMTP server, through a real daemon on a PostgreSQL store (the kept tokens are
 * rows; the sign-in tests keep theirs in the state folder): one refresh for the pair under load, the
 * rotated token kept across a restart, an access token expiring mid-IDLE, reauthenticateOnSave and
 * `apply --reauthenticate` counted at the provider, a kept token refused for a new token URL until approved (then
 * moved), the reference winning when its value changes, and no token anywhere.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { pollDeviceAuthorization, startDeviceAuthorization } from '../../src/adapters/oauth2/index.js';
import { loudHook } from '../harness/expect.js';
import { flowYaml, imapYaml, smtpYaml } from '../harness/fixtures.js';
import { eventually } from '../harness/mailctl.js';
import { startOAuth2Daemon, type OAuth2Daemon } from '../harness/oauth2-daemon.js';
import { startTcpProxy, type TcpProxy } from '../harness/tcp-proxy.js';

const USER = 'support@example.com';
const STORAGE = 'ContactStorage';

let o: OAuth2Daemon;
/** Between the daemon and Dovecot's IMAP port, and the SMTP server: cutting them makes the loops connect again. */
let imapProxy: TcpProxy;
let smtpProxy: TcpProxy;
let refreshTokenFile: string;
const refreshTokens: string[] = [];

const apply = (...args: string[]) => o.run(['apply', '--dir', o.ws.dir, ...args]);
const refreshes = () => o.op.countTokenRequests({ grantType: 'refresh_token' });
const refreshStatuses = () => o.op.tokenRequests.filter((r) => r.grantType === 'refresh_token').map((r) => r.status);
const servers = async () =>
  ((await o.daemon.api('GET', '/v1/status')).body as { servers: { id: string; state: string; lastError: unknown }[] })
    .servers;
const running = () =>
  eventually(
    async () => (await servers()).every((s) => s.state === 'running') && (await servers()),
    20_000,
    'every server running',
  );
const keptIds = async () => (await o.kept()).map((k) => k.id);

/** A refresh token for the mailbox from a device sign-in (a person approving it), as an administrator would get one. */
async function signInOutside(): Promise<string> {
  const client = { clientId: o.op.clients.confidential.clientId, clientSecret: o.op.clients.confidential.clientSecret };
  const device = await startDeviceAuthorization({
    ...client,
    deviceAuthorizationUrl: o.op.deviceAuthorizationUrl,
    scope: 'mail',
  });
  await o.op.approveDevice(device.userCode, USER);
  const token = await pollDeviceAuthorization({ ...client, tokenUrl: o.op.tokenUrl }, device);
  refreshTokens.push(token.refreshToken!);
  return token.refreshToken!;
}

async function writeServers(tokenUrl = o.op.tokenUrl, name = 'Support inbox'): Promise<void> {
  const auth = o.auth(USER, {
    tokenUrl,
    clientId: o.op.clients.confidential.clientId,
    clientSecret: o.clientSecretRef,
    refreshToken: `\${file:${refreshTokenFile}}`,
  });
  const common = { user: USER, password: '', auth };
  await o.ws.writeServer(
    'support.yaml',
    [
      imapYaml({
        ...common,
        name,
        shortName: 'support',
        port: imapProxy.port,
        caFile: o.dv.caFile,
        storageFolder: STORAGE,
        extra: 'reauthenticateOnSave: true',
      }),
      smtpYaml({ ...common, shortName: 'support', port: smtpProxy.port, caFile: o.smtp.caFile }),
    ].join('---\n'),
  );
}

const message = (subject: string) =>
  `From: a@example.org\r\nTo: ${USER}\r\nSubject: ${subject}\r\nMessage-ID: <${subject}@t>\r\n\r\nhi\r\n`;
async function processed(...subjects: string[]): Promise<void> {
  await eventually(
    async () => {
      const stored = (await o.dv.listMessages(USER, STORAGE)).map((m) => m.messageId);
      return subjects.every((s) => stored.includes(`<${s}@t>`));
    },
    30_000,
    `${subjects.length} message(s) processed`,
  );
}
async function sent(...ids: string[]): Promise<void> {
  await eventually(
    async () => {
      for (const id of ids) if ((await o.daemon.api('GET', `/v1/outbound/${id}`)).body.state !== 'sent') return false;
      return true;
    },
    30_000,
    `${ids.length} message(s) sent`,
  );
}
const send = async (subject: string) => {
  const r = await o.daemon.api('POST', '/v1/outbound', { from: USER, to: 'c@example.org', subject, text: 'x' });
  assert.is(r.status, 202, JSON.stringify(r.body));
  return r.body.id as string;
};

test.before(
  loudHook(async () => {
    o = await startOAuth2Daemon({ accessTokenTtl: 300, store: 'postgres' });
    imapProxy = await startTcpProxy({ host: '127.0.0.1', port: o.dv.ports.imap });
    smtpProxy = await startTcpProxy({ host: '127.0.0.1', port: o.smtp.port });
    await o.dv.createFolder(USER, STORAGE);
    refreshTokenFile = await o.ws.writeSecret('support-refresh-token', await signInOutside());
    await o.ws.writeServer('flow.yaml', flowYaml('main', 'queues'));
    await writeServers();
    await o.startDaemon();
  }),
);
test.after(
  loudHook(async () => {
    await o?.stop();
    await Promise.all([imapProxy?.close(), smtpProxy?.close()]);
  }),
);

test('one refresh for an IMAP + SMTP pair under load; the rotated refresh token is kept, sealed', async () => {
  const r = await apply();
  assert.is(r.code, 0, r.stdout + r.stderr);
  assert.is(refreshes(), 1);
  await Promise.all(Array.from({ length: 20 }, (_, i) => o.dv.deliver(USER, message(`load-${i}`))));
  const ids = await Promise.all(Array.from({ length: 20 }, (_, i) => send(`out-${i}`)));
  await processed(...Array.from({ length: 20 }, (_, i) => `load-${i}`));
  await sent(...ids);
  assert.is(refreshes(), 1, 'verification, polls, sends and sent copies all used the one access token');
  const [kept, ...others] = await o.kept();
  assert.match(kept!.id, /^oauth2\/[0-9a-f]{12}$/);
  assert.equal(others, []);
  assert.is(kept!.source, 'rotation');
  assert.is(Buffer.from(kept!.nonce, 'base64').length, 12);
  assert.ok(kept!.boundTo.referenceIdentity, 'it names the referenced token it replaced');
  const [credential] = JSON.parse((await o.run(['auth', 'status', '--json'])).stdout).credentials;
  assert.equal(credential.servers, ['imap/support', 'smtp/support']);
  assert.is(credential.refreshToken.source, 'rotation');
});

test('rotation kept across a daemon restart: the original refresh token, used up, is never sent again', async () => {
  o.op.ttl.accessToken = 6; // short-lived tokens from now on, for the next test
  await o.daemon.stop();
  await o.startDaemon();
  await running();
  await o.dv.deliver(USER, message('after-restart'));
  await processed('after-restart');
  assert.is(refreshes(), 2);
  assert.equal(refreshStatuses(), [200, 200], 'a reused (rotated) refresh token would have been refused');
  const [credential] = JSON.parse((await o.run(['auth', 'status', '--json'])).stdout).credentials;
  assert.is(credential.refreshToken.source, 'rotation');
});

test('an access token expiring mid-IDLE: the session goes on; new connections get a fresh token, once', async () => {
  const before = refreshes();
  await new Promise((r) => setTimeout(r, 7000)); // past the 6 s token the loops logged in with
  await o.dv.deliver(USER, message('mid-idle'));
  await processed('mid-idle');
  assert.is(refreshes(), before, 'an IDLE session needs no token: nothing refreshes per poll');
  imapProxy.reset();
  imapProxy.heal();
  smtpProxy.reset();
  smtpProxy.heal();
  const id = await send('after-expiry'); // the SMTP pool connects again with an expired token: it asks for a fresh one
  await o.dv.deliver(USER, message('after-expiry'));
  await processed('after-expiry');
  await sent(id);
  const now = await running();
  // the cut connection is the last error; no login failed
  assert.ok(
    now.every((s) => (s.lastError as { class: string } | null)?.class !== 'auth'),
    JSON.stringify(now.map((s) => s.lastError)),
  );
  assert.ok(refreshes() - before >= 1 && refreshes() - before <= 2, `${refreshes() - before} refreshes`);
  assert.ok(refreshStatuses().every((s) => s === 200));
  o.op.ttl.accessToken = 300;
});

test('reauthenticateOnSave: a change gets a fresh token (counted at the provider), again after rotation; apply --reauthenticate', async () => {
  for (const name of ['Support inbox (renamed)', 'Support inbox (renamed again)']) {
    const before = refreshes();
    await writeServers(undefined, name);
    const r = await apply();
    assert.is(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, '~ imap/support');
    assert.match(r.stdout, 'imap/support: Connection succeeded');
    assert.is(refreshes(), before + 1);
  }
  const before = refreshes();
  const r = await apply('--reauthenticate', 'smtp/support');
  assert.is(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, 'smtp/support: Connection succeeded');
  assert.match(r.stdout, 'no-changes: no changes; reauthenticated smtp/support');
  assert.is(refreshes(), before + 1);
  assert.ok(refreshStatuses().every((s) => s === 200));
  const unknown = await apply('--reauthenticate', 'imap/nobody');
  assert.is(unknown.code, 1);
  assert.match(unknown.stdout, '--reauthenticate imap/nobody: the folder has no enabled server');
});

test('a kept token is refused for a changed token URL without approval; approved, it moves there', async () => {
  const tokenProxy = await startTcpProxy({ host: '127.0.0.1', port: o.op.port });
  try {
    const [before] = await keptIds();
    const requests = o.op.tokenRequests.length;
    await writeServers(`http://127.0.0.1:${tokenProxy.port}/token`);
    const plan = await o.run(['plan', '--dir', o.ws.dir]);
    assert.match(
      plan.stdout,
      /the kept credential oauth2\/[0-9a-f]{12} \(kept as oauth2\/[0-9a-f]{12} at the new token URL\)/,
    );
    const refused = await apply();
    assert.is(refused.code, 3, refused.stdout + refused.stderr);
    assert.match(refused.stdout, 'needs-approval');
    assert.is(o.op.tokenRequests.length, requests, 'nothing was sent to any token endpoint');
    assert.is(tokenProxy.accepted(), 0, 'nothing reached the new token URL');
    assert.equal(await keptIds(), [before]);

    const approved = await apply('--approve-rebind', 'imap/support', '--approve-rebind', 'smtp/support');
    assert.is(approved.code, 0, approved.stdout + approved.stderr);
    assert.ok(tokenProxy.accepted() >= 1, 'the refresh went to the new token URL');
    const [after, ...others] = await keptIds();
    assert.is.not(after, before, 'the kept token moved to the id of the new token URL');
    assert.equal(others, []);
    assert.ok(
      refreshStatuses().every((s) => s === 200),
      'the moved token was the newest one',
    );
    await o.dv.deliver(USER, message('after-move'));
    await processed('after-move');
  } finally {
    await writeServers(o.op.tokenUrl).catch(() => undefined);
    await tokenProxy.close();
  }
});

test('the reference wins when its value changes (someone signed in again and stored the new token)', async () => {
  await writeServers(); // back to the token URL it was applied with before: no approval needed, the kept token moves
  const back = await apply();
  assert.is(back.code, 0, back.stdout + back.stderr);
  assert.ok(
    refreshStatuses().every((s) => s === 200),
    'the kept token moved back with its server',
  );
  const identity = async () => (await o.kept())[0]!.boundTo.referenceIdentity;
  const before = await identity();
  await o.ws.writeSecret('support-refresh-token', await signInOutside());
  const r = await apply();
  assert.is(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, 'secret value');
  assert.match(o.daemon.output(), 'the referenced refresh token changed: it is used instead of the kept one');
  assert.is.not(await identity(), before, 'the token kept since descends from the new reference');
  assert.ok(refreshStatuses().every((s) => s === 200));
  await running();
});

test('canary: no token, client secret or key in any output, log or state file', async () => {
  await o.canary(refreshTokens);
});

test.run();
