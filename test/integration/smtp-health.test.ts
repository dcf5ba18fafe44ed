/**
 * An SMTP server that cannot send is not `running`, against a real daemon and SMTP server behind a relay that strips
 * STARTTLS from the EHLO answer (test/harness/tcp-proxy.ts): a send refused for TLS makes the server `failed` with
 * its last error, `status --check` exit 1 (the daemon stays ready: `/readyz` is about the API), until a send
 * succeeds again; a per-message 5xx never changes the server's state; and an idle loop finds the relay by itself through its periodic
 * connection check (`--smtp-check-interval`). While the server is down, the outbox fills up to `--outbox-max` and then
 * refuses with 503 and Retry-After.
 */
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { smtpYaml } from '../harness/fixtures.js';
import { cli, eventually, startDaemon, type DaemonProcess } from '../harness/mailctl.js';
import { startMailStack, type MailStack } from '../harness/stack.js';
import { startTcpProxy, type TcpProxy } from '../harness/tcp-proxy.js';

const AGENT = 'agent@example.com';

let stack: MailStack;
let relay: TcpProxy;
const daemons: DaemonProcess[] = [];

test.before(async () => {
  stack = await startMailStack({ users: { [AGENT]: 'agent-pass' }, smtp: true, folders: {} });
  relay = await startTcpProxy({ host: stack.smtp.host, port: stack.smtp.port });
  await stack.ws.writeServer(
    'smtp.yaml',
    smtpYaml({
      shortName: 'agent',
      user: AGENT,
      port: relay.port,
      caFile: stack.smtp.caFile,
      password: await stack.ref(AGENT),
    }),
  );
});

test.after(async () => {
  await Promise.all(daemons.map((d) => d.kill().catch(() => undefined)));
  await relay?.close();
  await stack?.stop();
});

/** A daemon on its own state folder (same folder of servers), applied; its CLI environment. */
async function daemonWith(name: string, args: string[]): Promise<{ daemon: DaemonProcess; env: NodeJS.ProcessEnv }> {
  const stateDir = path.join(stack.ws.root, name);
  const daemon = await startDaemon({ ...stack.ws, stateDir }, ['--no-watch', ...args]);
  daemons.push(daemon);
  const env = { ...stack.ws.env, MAILCTL_STATE_DIR: stateDir };
  const applied = await cli(['apply', '--dir', stack.ws.dir], env);
  assert.is(applied.code, 0, applied.stdout + applied.stderr);
  return { daemon, env };
}

const serverOf = async (daemon: DaemonProcess) =>
  (await daemon.api('GET', '/v1/status')).body.servers.find((s: { id: string }) => s.id === 'smtp/agent');
const readyz = async (daemon: DaemonProcess) => {
  const res = await fetch(`${daemon.url}/readyz?verbose`);
  return { status: res.status, text: await res.text() };
};
const waitState = (daemon: DaemonProcess, state: string, what: string) =>
  eventually(
    async () => {
      const s = await serverOf(daemon);
      return s?.state === state ? s : null;
    },
    30_000,
    what,
  );

test('a send refused for TLS behind a STARTTLS-stripping relay: failed, status --check and /readyz say so', async () => {
  const { daemon, env } = await daemonWith('state-send', []);
  await waitState(daemon, 'running', 'running');
  assert.is((await readyz(daemon)).status, 200);
  relay.stripStarttls();
  const posted = await daemon.api('POST', '/v1/outbound', { from: AGENT, to: 'c@example.org', text: 'hello' });
  assert.is(posted.status, 202, JSON.stringify(posted.body));
  const failed = await waitState(daemon, 'failed', 'failed after the send');
  assert.is(failed.lastError.class, 'tls');
  assert.match(failed.lastError.message, 'STARTTLS');
  const entry = (await daemon.api('GET', `/v1/outbound/${posted.body.id}`)).body;
  assert.is(entry.state, 'queued', 'deferred, not failed: it is retried');
  const check = await cli(['status', '--check'], env);
  assert.is(check.code, 1, check.stdout + check.stderr);
  assert.is((await readyz(daemon)).status, 200, 'still ready: the API keeps taking mail for every other server');

  relay.heal();
  await waitState(daemon, 'running', 'running again once the retry is sent');
  await eventually(async () => stack.smtp.messages.some((m) => m.messageId === posted.body.messageId), 30_000, 'sent');
  assert.is((await readyz(daemon)).status, 200);
  assert.is((await cli(['status', '--check'], env)).code, 0);

  // a per-message refusal is about the message, never the server
  const before = await serverOf(daemon);
  stack.smtp.failNext(1, 550, '5.1.1 no such user here');
  const refused = await daemon.api('POST', '/v1/outbound', { from: AGENT, to: 'nobody@example.org', text: 'x' });
  await eventually(
    async () => (await daemon.api('GET', `/v1/outbound/${refused.body.id}`)).body.state === 'failed',
    20_000,
    'the 5xx message failed',
  );
  const after = await serverOf(daemon);
  assert.is(after.state, 'running');
  assert.equal(after.lastError, before.lastError, 'the 5xx is not the server’s last error');
  await daemon.stop();
});

test('an idle loop checks its connection every --smtp-check-interval and shows the relay', async () => {
  const { daemon, env } = await daemonWith('state-idle', ['--smtp-check-interval', '1s']);
  await waitState(daemon, 'running', 'running');
  relay.stripStarttls();
  const failed = await waitState(daemon, 'failed', 'failed through the check, with nothing sent');
  assert.is(failed.lastError.class, 'tls');
  assert.is((await cli(['status', '--check'], env)).code, 1);
  relay.heal();
  await waitState(daemon, 'running', 'running again after the next check');
  assert.is((await cli(['status', '--check'], env)).code, 0);
});

test('while SMTP is down the outbox takes --outbox-max messages, then answers 503 with Retry-After', async () => {
  const { daemon } = await daemonWith('state-full', ['--outbox-max', '3']);
  await waitState(daemon, 'running', 'running');
  relay.reset();
  const post = () => daemon.api('POST', '/v1/outbound', { from: AGENT, to: 'c@example.org', text: 'queued' });
  for (let i = 0; i < 3; i++) assert.is((await post()).status, 202);
  const res = await fetch(`${daemon.url}/v1/outbound`, {
    method: 'POST',
    headers: { authorization: `Bearer ${daemon.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ from: AGENT, to: 'c@example.org', text: 'one too many' }),
  });
  assert.is(res.status, 503);
  assert.is(res.headers.get('retry-after'), '60');
  assert.match(((await res.json()) as { error: string }).error, '--outbox-max');
  relay.heal();
  await eventually(async () => (await daemon.api('GET', '/v1/outbound?limit=0')).body.size === 0, 60_000, 'drained');
  assert.is((await post()).status, 202, 'room again');
});

test.run();
