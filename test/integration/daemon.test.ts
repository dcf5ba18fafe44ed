/**
 * The daemon and `apply` against a real Dovecot and a real SMTP server: lifecycle of loops, every verification
 * failure class, atomic abort vs --save-failed-as-disabled, lock, token, folder mismatch, idempotence, restart,
 * SIGTERM, and a canary secret that must never appear anywhere.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startDovecot, type Dovecot } from '../harness/dovecot.js';
import { flowYaml, imapYaml, smtpYaml } from '../harness/fixtures.js';
import { cli, createWorkspace, eventually, type DaemonProcess, type Workspace } from '../harness/mailctl.js';
import { refusedPort } from '../harness/ports.js';
import type { SmtpTestServer } from '../harness/smtp.js';
import { startMailStack, type MailStack } from '../harness/stack.js';

const CANARY = 'CANARY-secret-7f3a9d';
const USER = 'support@example.com';

let stack: MailStack;
let dovecot: Dovecot;
let smtp: SmtpTestServer;
let ws: Workspace;
let daemon: DaemonProcess;
let passwordRef: string;

test.before(async () => {
  stack = await startMailStack({
    users: { [USER]: CANARY, 'sales@example.com': 'sales-pass' },
    folders: { [USER]: ['ContactStorage'] },
    smtp: { users: { [USER]: CANARY } },
  });
  ({ dovecot, smtp, ws } = stack);
  passwordRef = await stack.ref(USER);
  await ws.writeServer('flow.yaml', flowYaml());
  await ws.writeServer(
    'smtp-support.yaml',
    smtpYaml({ shortName: 'support', user: USER, port: smtp.port, caFile: smtp.caFile, password: passwordRef }),
  );
  await ws.writeServer(
    'imap-support.yaml',
    imapYaml({
      shortName: 'support',
      user: USER,
      port: dovecot.ports.imap,
      caFile: dovecot.caFile,
      password: passwordRef,
    }),
  );
  daemon = await stack.startDaemon(['--no-watch']);
});

test.after(async () => {
  await daemon?.kill().catch(() => undefined);
  await stack?.stop();
});

const apply = (...args: string[]) => cli(['apply', '--dir', ws.dir, ...args], ws.env);
const status = async () =>
  JSON.parse((await cli(['status', '--json'], ws.env)).stdout) as {
    servers: {
      id: string;
      state: string;
      since: string;
      lastError: { class: string } | null;
      disabledReason: string | null;
      enabled: boolean;
      counters: Record<string, number>;
    }[];
  };
const serverState = async (id: string) => (await status()).servers.find((s) => s.id === id);
/** What a loop itself logged (its state changes), not what the applied state says about it. */
const loopLogged = (id: string, message: string) =>
  daemon
    .output()
    .split('\n')
    .some((line) => line.includes(`"server":"${id}"`) && line.includes(`"msg":"${message}"`));
/** Every daemon of this file: its output is checked for the canary at the end. */
const daemonOutputs: string[] = [];

test('with --no-watch and no earlier state nothing runs until the first apply', async () => {
  const s = await status();
  assert.equal(s.servers, []);
});

test('apply verifies and starts the loops (create)', async () => {
  const r = await apply();
  assert.is(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /imap\/support: Connection succeeded \(IDLE[^)]*\d+ unseen\)/);
  assert.match(r.stdout, /smtp\/support: Connection succeeded/);
  await eventually(async () => (await serverState('imap/support'))?.state === 'running', 20_000, 'imap loop running');
  await eventually(async () => (await serverState('smtp/support'))?.state === 'running', 20_000, 'smtp loop running');
});

test('--dry-run verifies a change and changes nothing', async () => {
  const before = await readFile(path.join(ws.stateDir, 'applied.json'), 'utf8');
  await ws.writeServer(
    'imap-support.yaml',
    imapYaml({
      shortName: 'support',
      name: 'Dry run name',
      user: USER,
      port: dovecot.ports.imap,
      caFile: dovecot.caFile,
      password: passwordRef,
    }),
  );
  const r = await apply('--dry-run');
  assert.is(r.code, 0, r.stdout);
  assert.match(r.stdout, /dry-run/);
  assert.is(await readFile(path.join(ws.stateDir, 'applied.json'), 'utf8'), before);
  await ws.writeServer(
    'imap-support.yaml',
    imapYaml({
      shortName: 'support',
      user: USER,
      port: dovecot.ports.imap,
      caFile: dovecot.caFile,
      password: passwordRef,
    }),
  );
});

test('an unchanged folder applies nothing and does not reconnect', async () => {
  const before = await serverState('imap/support');
  const r = await apply();
  assert.is(r.code, 0);
  assert.match(r.stdout, /no-changes/);
  const after = await serverState('imap/support');
  assert.is(after?.since, before?.since);
});

test('an in-place update reaches the loop without a reconnect', async () => {
  const before = await serverState('imap/support');
  // from the default (every minute) to every 10 s, the most the schema allows: two polls within 25 s happen only if
  // the running loop picked up the new schedule
  await ws.writeServer(
    'imap-support.yaml',
    imapYaml({
      shortName: 'support',
      name: 'Support inbox (renamed)',
      user: USER,
      port: dovecot.ports.imap,
      caFile: dovecot.caFile,
      password: passwordRef,
      pollSchedule: '*/10 * * * * *',
    }),
  );
  const r = await apply();
  assert.is(r.code, 0, r.stdout);
  assert.match(r.stdout, /~ imap\/support/);
  const polls = (await serverState('imap/support'))?.counters.polls_ok ?? 0;
  await eventually(
    async () => ((await serverState('imap/support'))?.counters.polls_ok ?? 0) >= polls + 2,
    25_000,
    'polls on the new schedule',
  );
  const after = await serverState('imap/support');
  assert.is(after?.since, before?.since, 'the same loop, not a reconnect');
  assert.is(after?.state, 'running');
});

test('a connection change is verified, then restarts the loop', async () => {
  await dovecot.createFolder(USER, 'Archive');
  await ws.writeServer(
    'imap-support.yaml',
    imapYaml({
      shortName: 'support',
      user: USER,
      port: dovecot.ports.imaps,
      tls: true,
      caFile: dovecot.caFile,
      password: passwordRef,
      storageFolder: 'Archive',
    }),
  );
  const refused = await apply();
  assert.is(refused.code, 3, 'a new port for the same password reference is a rebind that needs approval');
  assert.match(refused.stdout, /credential rebind/);
  const before = await serverState('imap/support');
  const r = await apply('--approve-rebind', 'imap/support');
  assert.is(r.code, 0, r.stdout);
  assert.match(r.stdout, /! imap\/support/);
  assert.match(r.stdout, /imap\/support: Connection succeeded/);
  await eventually(
    async () => {
      const now = await serverState('imap/support');
      return now?.state === 'running' && now.since !== before?.since;
    },
    20_000,
    'a new loop running (a new since)',
  );
});

test('every verification failure class aborts the whole apply and changes nothing', async () => {
  const before = await readFile(path.join(ws.stateDir, 'applied.json'), 'utf8');
  const wrong = `\${file:${await ws.writeSecret('wrong', 'not-the-password')}}`;
  const xRef = `\${file:${await ws.writeSecret('x-password', CANARY)}}`;
  const salesRef = `\${file:${await ws.writeSecret('sales-password', 'sales-pass')}}`;
  const SALES = 'sales@example.com';
  const selfSigned = await startDovecot({ users: { [USER]: CANARY }, cert: 'self-signed' });
  const noStarttls = await startDovecot({ users: { [USER]: CANARY }, starttls: false });
  try {
    const cases: [string, string, RegExp][] = [
      [
        'wrong password',
        imapYaml({ shortName: 'x', user: SALES, port: dovecot.ports.imap, caFile: dovecot.caFile, password: wrong }),
        /Connection failed: auth:/,
      ],
      [
        'unknown host',
        imapYaml({ shortName: 'x', user: SALES, host: 'no-such-host.invalid', port: 143, password: xRef }),
        /Connection failed: network:/,
      ],
      [
        'refused port',
        imapYaml({ shortName: 'x', user: SALES, port: await refusedPort(), password: xRef }),
        /Connection failed: network:/,
      ],
      [
        'bad certificate',
        imapYaml({ shortName: 'x', user: SALES, port: selfSigned.ports.imaps, tls: true, password: xRef }),
        /Connection failed: tls:/,
      ],
      [
        'STARTTLS not offered',
        imapYaml({ shortName: 'x', user: SALES, port: noStarttls.ports.imap, password: xRef }),
        /Connection failed: tls:/,
      ],
      [
        'missing storage folder',
        imapYaml({
          shortName: 'x',
          user: SALES,
          port: dovecot.ports.imap,
          caFile: dovecot.caFile,
          password: salesRef,
          storageFolder: 'Nope',
        }),
        /Connection failed: folder-missing: storage folder "Nope" does not exist on localhost; create it first/,
      ],
      [
        'secret not allowed',
        imapYaml({
          shortName: 'x',
          user: SALES,
          port: dovecot.ports.imap,
          caFile: dovecot.caFile,
          password: '${env:HOME}',
        }),
        /Connection failed: config: .*MAILCTL_SECRET_/,
      ],
    ];
    for (const [what, yaml, expected] of cases) {
      await ws.writeServer('x.yaml', yaml);
      // x-password holds the canary, bound to imap/support: a rebind by the secret's identity until approved
      const r = await apply('--approve-rebind', 'imap/x');
      assert.is(r.code, 1, `${what}: ${r.stdout}`);
      assert.match(r.stdout, expected, what);
      assert.not.match(r.stdout + r.stderr, CANARY, what);
      assert.is(await readFile(path.join(ws.stateDir, 'applied.json'), 'utf8'), before, `${what}: state unchanged`);
    }
  } finally {
    await ws.removeServer('x.yaml');
    await selfSigned.stop();
    await noStarttls.stop();
  }
});

test('--save-failed-as-disabled applies the rest and keeps the failed server stopped (exit 4)', async () => {
  await dovecot.createFolder('sales@example.com', 'ContactStorage');
  const salesRef = `\${file:${path.join(ws.secretsDir, 'sales-password')}}`;
  await ws.writeServer(
    'imap-sales.yaml',
    imapYaml({
      shortName: 'sales',
      user: 'sales@example.com',
      port: dovecot.ports.imap,
      caFile: dovecot.caFile,
      password: salesRef,
    }).replace('flow: main', 'flow: main\nstorageFolder: Missing'),
  );
  await ws.writeServer(
    'imap-sales2.yaml',
    imapYaml({
      shortName: 'sales2',
      user: 'sales@example.com',
      port: dovecot.ports.imap,
      caFile: dovecot.caFile,
      password: salesRef,
      folder: 'ContactStorage',
      storageFolder: 'INBOX',
    }),
  );
  const refused = await apply();
  assert.is(refused.code, 1);
  const r = await apply('--save-failed-as-disabled');
  assert.is(r.code, 4, r.stdout);
  const sales = await serverState('imap/sales');
  assert.is(sales?.state, 'disabled');
  assert.match(sales?.disabledReason ?? '', /folder-missing/);
  await eventually(async () => (await serverState('imap/sales2'))?.state === 'running', 20_000, 'sales2 running');
  await ws.removeServer('imap-sales.yaml');
  await ws.removeServer('imap-sales2.yaml');
});

test('enabled: false stops a loop; removal deletes it', async () => {
  await ws.writeServer(
    'smtp-support.yaml',
    smtpYaml({
      shortName: 'support',
      user: USER,
      port: smtp.port,
      caFile: smtp.caFile,
      password: passwordRef,
      enabled: false,
    }),
  );
  // imap/sales2 is running (the test before this one applied it) and its file is gone: this apply deletes it
  assert.is((await serverState('imap/sales2'))?.state, 'running');
  let r = await apply();
  assert.is(r.code, 0, r.stdout);
  assert.match(r.stdout, /- smtp\/support/);
  assert.match(r.stdout, /- imap\/sales2/);
  assert.is((await serverState('smtp/support'))?.state, 'disabled');
  await eventually(() => loopLogged('smtp/support', 'loop stopped'), 10_000, 'the disabled loop stopped');
  await eventually(() => loopLogged('imap/sales2', 'loop stopped'), 10_000, 'the deleted loop stopped');
  r = await apply();
  assert.match(r.stdout, /no-changes/);
  const ids = (await status()).servers.map((s) => s.id);
  assert.not.ok(ids.includes('imap/sales') || ids.includes('imap/sales2'), 'removed servers deleted');
  await ws.writeServer(
    'smtp-support.yaml',
    smtpYaml({ shortName: 'support', user: USER, port: smtp.port, caFile: smtp.caFile, password: passwordRef }),
  );
  r = await apply();
  assert.is(r.code, 0, r.stdout);
  await eventually(async () => (await serverState('smtp/support'))?.state === 'running', 20_000, 'smtp re-enabled');
});

test('the API needs the token; health endpoints do not', async () => {
  assert.is((await daemon.api('GET', '/v1/status', undefined, null)).status, 401);
  assert.is((await daemon.api('GET', '/v1/status', undefined, 'wrong-token')).status, 401);
  assert.is((await daemon.api('GET', '/v1/status')).status, 200);
  assert.is((await daemon.api('GET', '/livez', undefined, null)).status, 200);
  assert.is((await daemon.api('GET', '/readyz', undefined, null)).status, 200);
  const r = await cli(['status', '--token-file', path.join(ws.root, 'secrets', 'wrong')], ws.env);
  assert.is(r.code, 1);
  assert.match(r.stderr, /refused the API token/);
});

test('apply with another folder is refused (folder-mismatch)', async () => {
  const other = await createWorkspace();
  try {
    await other.writeServer('flow.yaml', flowYaml());
    await other.writeServer(
      'a.yaml',
      smtpYaml({ shortName: 'other', user: 'other@example.com', port: smtp.port, password: passwordRef }),
    );
    const r = await cli(['apply', '--dir', other.dir], ws.env);
    assert.is(r.code, 1);
    assert.match(r.stdout, /folder-mismatch/);
  } finally {
    await other.cleanup();
  }
});

test('a second daemon on the same state folder refuses to start', async () => {
  const r = await cli(
    ['run', '--dir', ws.dir, '--state-dir', ws.stateDir, '--listen', '127.0.0.1:0', '--no-watch'],
    ws.env,
  );
  assert.is(r.code, 1);
  assert.match(r.stderr, /another mailctl daemon \(pid \d+\) already uses this state folder/);
});

test('state files are private and carry a formatVersion; the apply log records each apply', async () => {
  assert.is((await stat(ws.stateDir)).mode & 0o777, 0o700);
  for (const name of await readdir(ws.stateDir)) {
    const info = await stat(path.join(ws.stateDir, name));
    if (info.isFile()) assert.is(info.mode & 0o777, 0o600, name);
  }
  const applied = JSON.parse(await readFile(path.join(ws.stateDir, 'applied.json'), 'utf8'));
  assert.is(applied.formatVersion, '2');
  const log = (await readFile(path.join(ws.stateDir, 'apply-log.jsonl'), 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.ok(log.length >= 4);
  assert.ok(log.every((e) => e.formatVersion === '1' && e.time && e.trigger && e.planDigest && e.servers));
});

test('a restarted daemon resumes the applied configuration; SIGTERM drains within 30 s', async () => {
  daemonOutputs.push(daemon.output());
  const stopped = await daemon.stop('SIGTERM');
  assert.is(stopped.code, 0);
  assert.ok(stopped.ms < 30_000);
  daemon = await stack.startDaemon(['--no-watch']);
  await eventually(async () => (await serverState('imap/support'))?.state === 'running', 20_000, 'resumed imap loop');
  await eventually(async () => (await serverState('smtp/support'))?.state === 'running', 20_000, 'resumed smtp loop');
});

test("an apply logs in once per IMAP server (the verified connection becomes the loop's); an aborted apply leaves no session", async () => {
  const SALES = 'sales@example.com';
  await dovecot.createFolder(SALES, 'ContactStorage').catch(() => undefined); // an earlier test may have made it
  const salesRef = `\${file:${await ws.writeSecret('sales-password', 'sales-pass')}}`;
  const wrong = `\${file:${await ws.writeSecret('wrong-sales', 'not-the-password')}}`;
  const logins = async () =>
    (await dovecot.log())
      .split('\n')
      .filter((l) => /imap-login: (Info: )?Login: /.test(l) && l.includes(`user=<${SALES}>`)).length;
  const sessions = async () =>
    (await dovecot.doveadm(['who', '-1'])).split('\n').filter((l) => l.includes(SALES)).length;
  const before = await logins();
  await ws.writeServer(
    'imap-sales.yaml',
    imapYaml({ shortName: 'sales', user: SALES, port: dovecot.ports.imap, caFile: dovecot.caFile, password: salesRef }),
  );
  const r = await apply();
  assert.is(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /imap\/sales: Connection succeeded \(IDLE[^)]*\d+ unseen\)/);
  await eventually(async () => (await serverState('imap/sales'))?.state === 'running', 20_000, 'sales loop running');
  await eventually(async () => (await logins()) > before, 5000, 'the login is in the Dovecot log');
  assert.is(await logins(), before + 1, 'one login for verification and loop');
  assert.is(await sessions(), 1);

  // a good new server next to a failing one: nothing is applied and the good one's verified connection is closed
  const NEWCOMER = 'newcomer@example.com';
  await dovecot.addUser(NEWCOMER, 'sales-pass');
  await dovecot.createFolder(NEWCOMER, 'ContactStorage');
  const newcomerSessions = async () =>
    (await dovecot.doveadm(['who', '-1'])).split('\n').filter((l) => l.includes(NEWCOMER)).length;
  await ws.writeServer(
    'imap-sales2.yaml',
    imapYaml({
      shortName: 'sales2',
      user: NEWCOMER,
      port: dovecot.ports.imap,
      caFile: dovecot.caFile,
      password: salesRef,
    }),
  );
  await ws.writeServer(
    'x.yaml',
    imapYaml({
      shortName: 'x',
      user: 'unknown@example.com',
      port: dovecot.ports.imap,
      caFile: dovecot.caFile,
      password: wrong,
    }),
  );
  const aborted = await apply();
  assert.is(aborted.code, 1, aborted.stdout);
  assert.match(aborted.stdout, /imap\/sales2: Connection succeeded/, aborted.stdout);
  assert.match(aborted.stdout, /imap\/x: Connection failed: auth/);
  await eventually(
    async () => (await newcomerSessions()) === 0,
    10_000,
    'the verified connection of the aborted apply is closed',
  );
  assert.is(await sessions(), 1, 'the running loop keeps its session');
  assert.is(
    (await status()).servers.some((s) => s.id === 'imap/sales2'),
    false,
  );
  for (const file of ['imap-sales2.yaml', 'x.yaml', 'imap-sales.yaml']) await ws.removeServer(file);
  assert.is((await apply()).code, 0);
  await eventually(async () => (await sessions()) === 0, 10_000, 'the sales loop stopped');
});

test('the canary secret appears in no output, log, apply log or state file', async () => {
  for (const output of [...daemonOutputs, daemon.output()]) assert.not.match(output, CANARY);
  for (const name of await readdir(ws.stateDir, { recursive: true })) {
    const file = path.join(ws.stateDir, name);
    if ((await stat(file)).isFile()) assert.not.match(await readFile(file, 'utf8'), CANARY, name);
  }
  const pulled = await cli(['status', '--json'], ws.env);
  assert.not.match(pulled.stdout + pulled.stderr, CANARY);
});

test.run();
