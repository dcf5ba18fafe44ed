/**
 * Signing mailboxes in through the daemon against a real authorization server (oidc-provider) and a Dovecot and SMTP
 * server that check tokens by introspection: the device sign-in completed by a scripted person, the browser sign-in
 * with PKCE for a public client (and `--out FILE`), a revoked grant that puts every server of the credential in
 * needs-login without retries until `mailctl auth login` recovers it (same daemon), the apply log's records, and no
 * token, client secret or key anywhere.
 */
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loudHook } from '../harness/expect.js';
import { flowYaml, imapYaml, smtpYaml } from '../harness/fixtures.js';
import { cliRunning, eventually } from '../harness/mailctl.js';
import { startOAuth2Daemon, type OAuth2Daemon } from '../harness/oauth2-daemon.js';
import { startTcpProxy, type TcpProxy } from '../harness/tcp-proxy.js';

const USER = 'support@example.com';
const SALES = 'sales@example.com';
const STORAGE = 'ContactStorage';

let o: OAuth2Daemon;
/** Between the daemon and Dovecot's IMAP port: cutting it makes the IMAP loop log in again. */
let proxy: TcpProxy;
const reconnect = () => (proxy.reset(), proxy.heal());
const apply = (...args: string[]) => o.run(['apply', '--dir', o.ws.dir, ...args]);
const status = async () =>
  (await o.daemon.api('GET', '/v1/status')).body as { servers: { id: string; state: string }[] };
const stateOf = async (id: string) => (await status()).servers.find((s) => s.id === id)?.state;
const refreshes = () => o.op.countTokenRequests({ grantType: 'refresh_token' });

/** Runs `auth login` in the background, as the person at the terminal would, and keeps its output. */
async function login(args: string[], approve: (printed: RegExpExecArray) => Promise<void>, pattern: RegExp) {
  const running = cliRunning(['auth', 'login', ...args], o.ws.env);
  await approve(await running.waitFor(pattern));
  const r = await running.done;
  o.outputs.push(r.stdout, r.stderr);
  return r;
}
const deviceLogin = (server: string, account: string) =>
  login([server], (m) => o.op.approveDevice(m[1]!, account), /enter the code (\S+) /);

/** Delivers a message to the mailbox and waits until its loop processed it (copied to the storage folder). */
async function delivered(subject: string): Promise<void> {
  await o.dv.deliver(
    USER,
    `From: a@example.org\r\nTo: ${USER}\r\nSubject: ${subject}\r\nMessage-ID: <${subject}@t>\r\n\r\nhi\r\n`,
  );
  await eventually(
    async () => (await o.dv.listMessages(USER, STORAGE)).some((m) => m.messageId === `<${subject}@t>`),
    20_000,
    `${subject} processed`,
  );
}

const applyLog = async () =>
  (await readFile(path.join(o.ws.stateDir, 'apply-log.jsonl'), 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { trigger: string; result: string; servers: Record<string, string> });

test.before(
  loudHook(async () => {
    o = await startOAuth2Daemon({ accessTokenTtl: 300 });
    proxy = await startTcpProxy({ host: '127.0.0.1', port: o.dv.ports.imap });
    await o.dv.createFolder(USER, STORAGE);
    await o.dv.createFolder(SALES, STORAGE);
    // a confidential client signed in by a person: no refresh-token reference
    const auth = o.auth(USER, { clientId: o.op.clients.confidential.clientId, clientSecret: o.clientSecretRef });
    await o.ws.writeServer('flow.yaml', flowYaml('main', 'queues'));
    const common = { user: USER, password: '', auth };
    await o.ws.writeServer(
      'support.yaml',
      `${imapYaml({ ...common, shortName: 'support', port: proxy.port, caFile: o.dv.caFile, storageFolder: STORAGE })}---\n${smtpYaml({ ...common, shortName: 'support', port: o.smtp.port, caFile: o.smtp.caFile })}`,
    );
    await o.startDaemon();
  }),
);
test.after(
  loudHook(async () => {
    await o?.stop();
    await proxy?.close();
  }),
);

test('device sign-in: the daemon runs it, the CLI shows the code, a scripted person approves; one sign-in for IMAP and SMTP', async () => {
  const before = await apply();
  assert.is(before.code, 1, before.stdout);
  assert.match(
    before.stdout,
    /imap\/support: Connection failed: auth: OAuth2 sign-in needed: nobody has signed in (oauth2\/[0-9a-f]{12}) yet; run mailctl auth login imap\/support/,
  );
  const r = await deviceLogin('imap/support', USER);
  assert.is(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, `To sign in imap/support (oauth2/`);
  assert.match(r.stdout, /signed in: (oauth2\/[0-9a-f]{12}), used by imap\/support, smtp\/support/);
  const applied = await apply();
  assert.is(applied.code, 0, applied.stdout + applied.stderr);
  assert.match(applied.stdout, 'imap/support: Connection succeeded');
  assert.match(applied.stdout, 'smtp/support: Connection succeeded');
  assert.is(refreshes(), 1, 'the IMAP and SMTP servers share one token request');
  await delivered('after-sign-in');
  const [entry] = (await applyLog()).filter((e) => e.trigger.startsWith('auth login (device) by '));
  const id = /signed in: (oauth2\/[0-9a-f]{12})/.exec(r.stdout)![1]!;
  assert.equal(entry, {
    ...entry!,
    result: 'signed-in',
    servers: { 'imap/support': id, 'smtp/support': id },
  });
  const listed = await o.run(['auth', 'status', '--json']);
  const [credential] = JSON.parse(listed.stdout).credentials;
  assert.is(credential.id, id);
  assert.equal(credential.servers, ['imap/support', 'smtp/support']);
  assert.is(credential.grant, 'refresh_token');
  assert.is(credential.needsLogin, false);
  assert.ok(['sign-in', 'rotation'].includes(credential.refreshToken.source));
});

test('revoked grant: every server of the credential needs-login, no retries; auth login recovers the same daemon', async () => {
  const pid = o.daemon.child.pid;
  assert.is(await o.op.revokeGrants(USER), 1);
  reconnect(); // the IMAP loop logs in again: its token is refused, the refresh too
  await eventually(
    async () => (await stateOf('imap/support')) === 'needs-login' && (await stateOf('smtp/support')) === 'needs-login',
    20_000,
    'both servers in needs-login',
  );
  const check = await o.run(['status', '--check']);
  assert.is(check.code, 1);
  assert.match(check.stderr, 'imap/support (needs-login)');
  assert.match(check.stdout, 'run mailctl auth login imap/support');
  const metrics = (await o.daemon.api('GET', '/metrics')).body as string;
  assert.match(metrics, 'mailctl_loop_state{server="imap/support",state="needs-login"} 1');
  assert.match(metrics, 'mailctl_loop_state{server="smtp/support",state="needs-login"} 1');
  assert.match(metrics, /mailctl_oauth2_refresh_total\{credential="oauth2\/[0-9a-f]{12}",result="needs-login"\} [1-9]/);
  const listed = JSON.parse((await o.run(['auth', 'status', '--json'])).stdout).credentials[0];
  assert.is(listed.needsLogin, true);
  assert.is(listed.lastError.code, 'oauth2-needs-login');
  assert.is(listed.lastError.providerCode, 'invalid_grant');
  const asked = refreshes();
  reconnect();
  await new Promise((r) => setTimeout(r, 3000));
  assert.is(refreshes(), asked, 'no retry storm: nothing asks the provider until someone signs in');

  const r = await deviceLogin('smtp/support', USER);
  assert.is(r.code, 0, r.stdout + r.stderr);
  await eventually(
    async () => (await stateOf('imap/support')) === 'running' && (await stateOf('smtp/support')) === 'running',
    20_000,
    'both servers running again',
  );
  await delivered('after-recovery');
  assert.is(o.daemon.child.pid, pid);
  assert.is(o.daemon.child.exitCode, null, 'the daemon was not restarted');
});

test('a sign-in that would send the client secret to a new token endpoint is refused without --approve-rebind', async () => {
  const elsewhere = await startTcpProxy({ host: '127.0.0.1', port: o.op.port });
  const original = await readFile(path.join(o.ws.dir, 'support.yaml'), 'utf8');
  try {
    await o.ws.writeServer(
      'support.yaml',
      original.replaceAll(o.op.tokenUrl, `http://127.0.0.1:${elsewhere.port}/token`),
    );
    const r = await o.run(['auth', 'login', 'imap/support']);
    assert.is(r.code, 1);
    assert.match(r.stderr, `would send ${o.clientSecretRef} to endpoints it was not applied with`);
    assert.match(r.stderr, '--approve-rebind');
    assert.is(elsewhere.accepted(), 0, 'nothing was sent there');
  } finally {
    await o.ws.writeServer('support.yaml', original);
    await elsewhere.close();
  }
});

test('browser sign-in with PKCE for a public client (loopback redirect), and --out FILE for a secret manager', async () => {
  const auth = o.auth(SALES, { clientId: o.op.clients.public.clientId });
  await o.ws.writeServer(
    'sales.yaml',
    imapYaml({ user: SALES, password: '', auth, shortName: 'sales', port: o.dv.ports.imap, caFile: o.dv.caFile }),
  );
  const browser = (account: string) => async (m: RegExpExecArray) => {
    const redirect = await o.op.approveAuthorization(m[0], account);
    assert.match(redirect, /^http:\/\/127\.0\.0\.1:\d+\/\?code=/);
    await fetch(redirect); // the browser follows the redirect to the CLI's loopback listener
  };
  const url = /http:\/\/127\.0\.0\.1:\d+\/auth\?\S+/;
  const r = await login(['imap/sales', '--browser'], browser(SALES), url);
  assert.is(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /signed in: oauth2\/[0-9a-f]{12}, used by imap\/sales/);
  assert.match(r.stdout, /code_challenge_method=S256/);
  const applied = await apply();
  assert.is(applied.code, 0, applied.stdout + applied.stderr);
  assert.match(applied.stdout, 'imap/sales: Connection succeeded');

  const file = path.join(o.ws.root, 'sales-refresh-token');
  const out = await login(['imap/sales', '--browser', '--out', file], browser(SALES), url);
  assert.is(out.code, 0, out.stdout + out.stderr);
  assert.is((await stat(file)).mode & 0o777, 0o600);
  const token = (await readFile(file, 'utf8')).trim();
  assert.ok(o.op.issuedTokens().includes(token), 'the file holds a refresh token the provider issued');
  assert.not.match(out.stdout + out.stderr, token);
  const triggers = (await applyLog()).map((e) => e.trigger);
  assert.ok(triggers.some((t) => t.startsWith('auth login (browser) by ')));
  assert.ok(triggers.some((t) => t.startsWith('auth login (token written to a file by the CLI) by ')));
});

test('canary: no token, client secret or key in any output, log or state file', async () => {
  const kept = await stat(path.join(o.ws.stateDir, 'credentials')).then((s) => s.isDirectory());
  assert.ok(kept, 'the daemon kept credentials (so the state folder holds what to look through)');
  await o.canary();
});

test.run();
