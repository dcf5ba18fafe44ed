/**
 * Observability of a real daemon (real Dovecot, real SMTP server): /metrics in Prometheus format, the health
 * endpoints, the staleness watchdog, and a canary secret that appears nowhere even at --log-level trace.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startDovecot, type Dovecot } from '../harness/dovecot.js';
import { flowYaml, imapYaml, smtpYaml } from '../harness/fixtures.js';
import { cli, eventually, type DaemonProcess, type Workspace } from '../harness/mailctl.js';
import { type SmtpTestServer } from '../harness/smtp.js';
import { base64Cores } from '../../src/runtime/daemon/scrubber.js';
import { startMailStack, type MailStack } from '../harness/stack.js';

const CANARY = 'CANARY-obs-secret-91c4e2';
const USER = 'support@example.com';
const OTHER = 'sales@example.com';

let stack: MailStack;
let dovecot: Dovecot;
let doomed: Dovecot;
let smtp: SmtpTestServer;
let ws: Workspace;
let daemon: DaemonProcess;

test.before(async () => {
  [stack, doomed] = await Promise.all([
    startMailStack({ users: { [USER]: CANARY }, smtp: true }),
    startDovecot({ users: { [OTHER]: CANARY } }),
  ]);
  ({ dovecot, smtp, ws } = stack);
  await doomed.createFolder(OTHER, 'ContactStorage');
  const ref = await stack.ref(USER);
  await ws.writeServer('flow.yaml', flowYaml());
  await ws.writeServer(
    'imap-support.yaml',
    imapYaml({
      shortName: 'support',
      user: USER,
      port: dovecot.ports.imap,
      caFile: dovecot.caFile,
      password: ref,
      pollSchedule: '*/10 * * * * *',
    }),
  );
  await ws.writeServer(
    'imap-sales.yaml',
    imapYaml({
      shortName: 'sales',
      user: OTHER,
      port: doomed.ports.imap,
      caFile: doomed.caFile,
      password: ref,
      pollSchedule: '*/10 * * * * *',
    }),
  );
  await ws.writeServer(
    'smtp-support.yaml',
    smtpYaml({ shortName: 'support', user: USER, port: smtp.port, caFile: smtp.caFile, password: ref }),
  );
  daemon = await stack.startDaemon(['--no-watch', '--log-level', 'trace']);
});

test.after(async () => {
  await Promise.all([stack?.stop(), doomed?.stop()]);
});

const scrape = async () => {
  const res = await fetch(`${daemon.url}/metrics`);
  assert.is(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return res.text();
};
/** The value of one sample, e.g. value(text, 'mailctl_imap_polls_total{server="imap/support",result="ok"}'). */
const value = (text: string, sample: string): number | undefined => {
  const line = text.split('\n').find((l) => l.startsWith(`${sample} `));
  return line === undefined ? undefined : Number(line.slice(sample.length + 1));
};
const status = async () =>
  (await daemon.api('GET', '/v1/status')).body as { servers: { id: string; state: string; stale: boolean }[] };

test('health endpoints need no token; readyz?verbose lists each check', async () => {
  for (const p of ['/livez', '/healthz', '/readyz']) {
    const res = await fetch(`${daemon.url}${p}`);
    assert.is(res.status, 200, p);
    assert.is(await res.text(), 'ok\n', p);
  }
  const verbose = await (await fetch(`${daemon.url}/readyz?verbose`)).text();
  assert.is(
    verbose,
    '[+]config-loaded ok\n[+]first-reconcile ok\n[+]not-draining ok\n[+]store ok\nreadyz check passed\n',
  );
  assert.match(await (await fetch(`${daemon.url}/livez?verbose`)).text(), /^\[\+\]ping ok\nlivez check passed\n$/);
  assert.is(
    (await daemon.api('GET', '/v1/status', undefined, null)).status,
    401,
    'the API itself still needs the token',
  );
});

test('apply starts every loop; metrics show polls, loop states, reconciles and build info', async () => {
  const r = await cli(['apply', '--dir', ws.dir], ws.env);
  assert.is(r.code, 0, r.stdout + r.stderr);
  await eventually(
    async () => (await status()).servers.every((s) => s.state === 'running'),
    20_000,
    'all loops running',
  );
  const text = await eventually(
    async () => {
      const t = await scrape();
      return (value(t, 'mailctl_imap_polls_total{server="imap/support",result="ok"}') ?? 0) >= 1 && t;
    },
    20_000,
    'a poll counted',
  );
  assert.ok(value(text, 'mailctl_imap_poll_duration_seconds_count{server="imap/support"}')! >= 1);
  assert.ok(text.includes('mailctl_imap_poll_duration_seconds_bucket{le="0.1",server="imap/support"}'));
  assert.is(value(text, 'mailctl_loop_state{server="imap/support",state="running"}'), 1);
  assert.is(value(text, 'mailctl_loop_state{server="imap/support",state="failed"}'), 0);
  assert.is(value(text, 'mailctl_loop_state{server="smtp/support",state="running"}'), 1);
  assert.is(value(text, 'mailctl_reconciles_total{result="applied"}'), 1);
  const last = value(text, 'mailctl_last_successful_reconcile_timestamp_seconds')!;
  assert.ok(Math.abs(last - Date.now() / 1000) < 120, `last reconcile ${last}`);
  assert.match(text, /^mailctl_build_info\{version="0\.1\.0",node="20\.\d+\.\d+"\} 1$/m);
  assert.is(value(text, 'mailctl_server_stale{server="imap/support"}'), 0);
  assert.ok(text.includes('mailctl_process_cpu_seconds_total'), 'default process metrics, same prefix');
  for (const name of ['mailctl_messages_sent_total', 'mailctl_messages_send_failed_total', 'mailctl_outbox_messages'])
    assert.ok(text.includes(`# TYPE ${name} `), name);
  const foreign = text.split('\n').filter((l) => l && !l.startsWith('#') && !l.startsWith('mailctl_'));
  assert.equal(foreign, [], 'one prefix for every metric');
  assert.not.ok(text.includes('@'), 'no addresses as labels');
});

test('a delivered message is counted for its server', async () => {
  await dovecot.deliver(
    USER,
    `From: a@example.net\r\nTo: ${USER}\r\nSubject: your invoice\r\nMessage-ID: <obs-1@example.net>\r\n\r\nhello\r\n`,
  );
  await eventually(
    async () => value(await scrape(), 'mailctl_messages_delivered_total{server="imap/support"}') === 1,
    20_000,
    'delivered counter',
  );
  assert.not.ok((await scrape()).includes('obs-1@example.net'), 'no message ids as labels');
});

test('a server that stops polling goes stale once: status, metrics and one log line', async () => {
  await doomed.stop();
  await eventually(
    async () => (await status()).servers.find((s) => s.id === 'imap/sales')?.stale === true,
    45_000,
    'imap/sales stale (3 × 10 s)',
  );
  assert.is((await status()).servers.find((s) => s.id === 'imap/support')?.stale, false);
  assert.is(value(await scrape(), 'mailctl_server_stale{server="imap/sales"}'), 1);
  await new Promise((r) => setTimeout(r, 3_000)); // three more watchdog checks
  const staleLines = daemon
    .output()
    .split('\n')
    .filter((l) => l.includes('imap/sales is stale'));
  assert.is(staleLines.length, 1, staleLines.join('\n'));
  assert.is(JSON.parse(staleLines[0]!).level, 40);
  assert.not.ok(daemon.output().includes('imap/support is stale'));
});

test('the canary secret appears in no log line, metric or status, even at trace', async () => {
  const stopped = await daemon.stop();
  assert.is(stopped.code, 0);
  const out = daemon.output();
  assert.ok(out.includes('"component":"imapflow"'), 'imapflow logged through our logger');
  assert.ok(/"level":10/.test(out), 'trace lines were written');
  assert.ok(/AUTHENTICATE|LOGIN/.test(out), 'the authentication exchange was logged');
  const forms = [
    CANARY,
    encodeURIComponent(CANARY),
    ...base64Cores(CANARY),
    Buffer.from(`\0${USER}\0${CANARY}`).toString('base64'),
  ];
  for (const form of forms) assert.not.ok(out.includes(form), `a form of the canary leaked: ${form}`);
});

test.run();
