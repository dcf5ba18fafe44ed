/**
 * Running and moving to a PostgreSQL store: a postgres sink refused by `plan` and `apply` against a file-store daemon;
 * `mailctl store import` of a file daemon's state folder (refused for a running daemon's folder, a non-empty store,
 * twice), after which the folder refuses a file daemon and a daemon on the database resumes exactly where the file
 * daemon stopped; a second daemon on the same store refuses to start, naming the holder; start-up errors that name the
 * store without a stack trace; `store migrate` and the refusal of a schema newer than this mailctl.
 */
import { spawn } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LATEST_VERSION } from '../../src/store/postgres/index.js';
import { flowYaml, imapYaml, postgresFlowYaml, smtpYaml } from '../harness/fixtures.js';
import {
  BIN,
  cli,
  createWorkspace,
  type CliResult,
  eventually,
  startDaemon,
  type DaemonProcess,
  type Workspace,
} from '../harness/mailctl.js';
import { startMailStack, type MailStack } from '../harness/stack.js';
import { startTcpProxy } from '../harness/tcp-proxy.js';

const AGENT = 'agent@example.com';
const STORAGE = 'ContactStorage';

let stack: MailStack;
let ws: Workspace;
let url: string;
/** `mailctl` with the password in the environment, as an operator would run it. */
let env: NodeJS.ProcessEnv;
let tokenFile: string;
const others: Workspace[] = [];
let seq = 0;

function mail(tag: string): { id: string; raw: string } {
  const id = `<admin-${tag}-${++seq}@test.example>`;
  return {
    id,
    raw: [`From: c@example.org`, `To: ${AGENT}`, `Subject: Question ${seq}`, `Message-ID: ${id}`, '', 'body', ''].join(
      '\r\n',
    ),
  };
}

async function queueIds(): Promise<string[]> {
  const dir = path.join(ws.stateDir, 'queues');
  const ids: string[] = [];
  for (const q of await readdir(dir).catch(() => [] as string[]))
    for (const f of (await readdir(path.join(dir, q))).filter((n) => n.endsWith('.json')))
      ids.push((JSON.parse(await readFile(path.join(dir, q, f), 'utf8')) as { messageId: string }).messageId);
  return ids;
}

/** `mailctl run` that is expected to refuse to start: its exit code and what it printed (one that starts is stopped). */
function runRefused(args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  const argv = [
    'run',
    '--dir',
    ws.dir,
    '--secrets-dir',
    ws.secretsDir,
    '--listen',
    '127.0.0.1:0',
    '--no-watch',
    ...args,
  ];
  const child = spawn(process.execPath, [BIN, ...argv], {
    env: { ...env, ...extraEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const started = setTimeout(() => child.kill('SIGTERM'), 20_000);
  return new Promise((resolve) =>
    child.on('close', (code) => {
      clearTimeout(started);
      resolve({ code: code ?? -1, stdout, stderr: stderr.includes('listening on') ? `it started: ${stderr}` : stderr });
    }),
  );
}

test.before(async () => {
  stack = await startMailStack({ users: { [AGENT]: 'agent-pass' }, smtp: true, store: 'postgres' });
  ws = stack.ws;
  url = stack.pg.url;
  env = { ...ws.env, ...stack.storeEnv };
  tokenFile = stack.storeArgs[stack.storeArgs.indexOf('--token-file') + 1]!;
  const ref = await stack.ref(AGENT);
  await ws.writeServer('flow.yaml', flowYaml('main', 'queues'));
  await ws.writeServer(
    'imap.yaml',
    imapYaml({
      shortName: 'agent',
      user: AGENT,
      port: stack.dovecot.ports.imap,
      caFile: stack.dovecot.caFile,
      password: ref,
      storageFolder: STORAGE,
    }),
  );
  await ws.writeServer(
    'smtp.yaml',
    smtpYaml({ shortName: 'agent', user: AGENT, port: stack.smtp.port, caFile: stack.smtp.caFile, password: ref }),
  );
});

test.after(async () => {
  await stack?.stop();
  await Promise.all(others.map((o) => o.cleanup()));
});

const inFile = { delivered: [] as string[], queued: [] as string[] };

test('a file-store daemon: plan and apply refuse a flow delivering into PostgreSQL, naming it', async () => {
  // a plain file-store daemon (none of the stack's PostgreSQL flags): it makes its own credentials key
  const daemon = await startDaemon(ws, ['--no-watch']);
  const status = await daemon.api('GET', '/v1/status');
  assert.equal([status.body.store.kind, status.body.store.location], ['file', ws.stateDir]);
  assert.is((await cli(['apply', '--dir', ws.dir], ws.env)).code, 0);

  await ws.writeServer('flow-rows.yaml', postgresFlowYaml('rows'));
  const plan = await cli(['plan', '--dir', ws.dir], ws.env);
  assert.is(plan.code, 1, plan.stdout + plan.stderr);
  assert.match(plan.stdout + plan.stderr, 'sink-needs-postgres-store');
  assert.match(plan.stdout + plan.stderr, 'the email flow "rows" delivers into PostgreSQL');
  const pulled = await cli(['state', 'pull'], ws.env);
  assert.equal(JSON.parse(pulled.stdout).store, { kind: 'file' });
  const stateFile = path.join(ws.root, 'state.json');
  await writeFile(stateFile, pulled.stdout);
  const offline = await cli(['plan', '--dir', ws.dir, '--state', stateFile], ws.env);
  assert.is(offline.code, 1, 'the same against a pulled state file');
  assert.match(offline.stdout + offline.stderr, 'the email flow "rows" delivers into PostgreSQL');
  const apply = await cli(['apply', '--dir', ws.dir], ws.env);
  assert.is(apply.code, 1);
  assert.match(apply.stdout + apply.stderr, 'the email flow "rows" delivers into PostgreSQL');
  await ws.removeServer('flow-rows.yaml');

  // state for the import: delivered mail (a ledger, a checkpoint), outbound mail still waiting
  for (let i = 0; i < 5; i++) {
    const m = mail('file');
    await stack.dovecot.deliver(AGENT, m.raw);
    inFile.delivered.push(m.id);
  }
  await eventually(async () => (await queueIds()).length >= 5, 20_000, 'delivered by the file daemon');
  stack.smtp.failNext(1_000_000, 451, '4.3.0 try later');
  for (let i = 0; i < 3; i++) {
    const a = await daemon.api('POST', '/v1/outbound', {
      from: AGENT,
      to: 'c@example.org',
      subject: `queued ${i}`,
      text: 'x',
    });
    assert.is(a.status, 202);
    inFile.queued.push(a.body.messageId as string);
  }
  await daemon.stop();
});

test('store import: refused for a running daemon’s folder and a non-empty store; the folder then refuses a file daemon', async () => {
  const busy = await createWorkspace();
  others.push(busy);
  const running: DaemonProcess = await startDaemon(busy, ['--no-watch']);
  const refused = await cli(['store', 'import', '--from-state-dir', busy.stateDir, '--store', url], env);
  assert.is(refused.code, 1);
  assert.match(refused.stderr, `pid ${running.child.pid}`);
  await running.kill();

  const imported = await cli(['store', 'import', '--from-state-dir', ws.stateDir, '--store', url], env);
  assert.is(imported.code, 0, imported.stdout + imported.stderr);
  assert.match(imported.stdout, '1 checkpoints, 5 delivered-ledger entries');
  assert.match(imported.stdout, 'outbox: 3 waiting');
  assert.match(imported.stdout, `--credentials-key-file ${path.join(ws.stateDir, 'credentials-key')}`);

  const again = await cli(['store', 'import', '--from-state-dir', ws.stateDir, '--store', url], env);
  assert.is(again.code, 1);
  assert.match(again.stderr, 'was imported into postgres://mailctl@127.0.0.1');
  const intoFull = await cli(['store', 'import', '--from-state-dir', busy.stateDir, '--store', url], env);
  assert.is(intoFull.code, 1);
  assert.match(intoFull.stderr, 'is not empty');
  assert.not.ok((await readdir(busy.stateDir)).includes('imported.json'), 'a refused import leaves no mark');

  const fileDaemon = await runRefused(['--state-dir', ws.stateDir, '--store', 'file']);
  assert.is(fileDaemon.code, 1);
  assert.match(fileDaemon.stderr, `the state folder ${ws.stateDir} was imported into postgres://`);
});

test('a daemon on the database resumes where the file daemon stopped; a second daemon on the store refuses', async () => {
  // with the folder's credentials key, as the import says
  const daemon = await stack.startDaemon([
    '--no-watch',
    '--credentials-key-file',
    path.join(ws.stateDir, 'credentials-key'),
  ]);
  const status = await daemon.api('GET', '/v1/status');
  assert.is(status.body.store.kind, 'postgres');
  assert.equal(
    status.body.servers.map((s: { id: string }) => s.id),
    ['imap/agent', 'smtp/agent'],
    'the applied configuration came along',
  );
  const fresh = [mail('pg'), mail('pg')];
  for (const m of fresh) await stack.dovecot.deliver(AGENT, m.raw);
  await eventually(async () => (await queueIds()).length >= 7, 20_000, 'new mail delivered');
  const ids = await queueIds();
  for (const id of [...inFile.delivered, ...fresh.map((m) => m.id)])
    assert.is(ids.filter((x) => x === id).length, 1, `${id} once`);

  stack.smtp.failNext(0, 0, '');
  await eventually(
    () => inFile.queued.every((id) => stack.smtp.messages.some((m) => m.messageId === id)),
    30_000,
    'the outbox waiting in the folder is sent from the database',
  );

  const second = await runRefused([
    '--state-dir',
    path.join(ws.root, 'other-state'),
    ...stack.storeArgs,
    '--format',
    'json',
  ]);
  assert.is(second.code, 1);
  const error = JSON.parse(second.stdout).error as { code: string; message: string };
  assert.is(error.code, 'lock-held');
  assert.match(
    error.message,
    `another mailctl daemon (pid ${daemon.child.pid}) already uses the store ${url} (schema mailctl)`,
  );

  // what a daemon that took the store over once this one's lease expired leaves in the row: this one stops, exit 1
  await stack.pg.admin(`UPDATE mailctl.leases SET holder = 'another', epoch = epoch + 1`, stack.pg.database);
  const code = await new Promise<number | null>((resolve) => daemon.child.once('exit', resolve));
  assert.is(code, 1);
  assert.match(daemon.output(), 'another daemon took over the store');
});

test('start-up errors name the store and the reason, without a stack trace', async () => {
  const closed = await startTcpProxy({ host: '127.0.0.1', port: 1 });
  const port = closed.port;
  await closed.close();
  const cases: [string[], NodeJS.ProcessEnv, string][] = [
    [
      ['--store', `postgres://mailctl@127.0.0.1:${port}/mailctl`, '--token-file', tokenFile],
      {},
      `cannot use the store postgres://mailctl@127.0.0.1:${port}/mailctl (schema mailctl): connection refused (ECONNREFUSED)`,
    ],
    [
      stack.storeArgs,
      { PGPASSWORD: 'wrong-password' },
      'password authentication failed for user "mailctl" (SQLSTATE 28P01)',
    ],
    [
      ['--store', `postgres://mailctl:s3cret@127.0.0.1:${stack.pg.port}/mailctl`, '--token-file', tokenFile],
      {},
      'must not contain a password',
    ],
    [['--store', url], {}, 'give the token with --token-file FILE'],
    [['--store', url, '--token-file', tokenFile], {}, 'the postgres store needs --credentials-key-file'],
    [['--token-file', tokenFile], { MAILCTL_STORE: 'mysql://x@y/z' }, '--store must be "file" or a URL postgres://'],
  ];
  for (const [args, extra, expected] of cases) {
    const r = await runRefused(['--state-dir', path.join(ws.root, 'errors-state'), ...args], extra);
    assert.is(r.code, 1, r.stderr);
    assert.match(r.stderr, expected);
    assert.not.match(r.stderr, /\n\s+at /, 'no stack trace');
    assert.not.match(r.stderr, 's3cret');
  }
});

test('store migrate brings a schema to the latest version; a schema newer than this mailctl is refused', async () => {
  const migrate = (...more: string[]) =>
    cli(['store', 'migrate', '--store', url, '--store-schema', 'future', ...more], env);
  const first = await migrate();
  assert.is(first.code, 0, first.stderr);
  assert.match(first.stdout, `schema migrated from version 0 to ${LATEST_VERSION}`);
  assert.match((await migrate()).stdout, 'nothing to do');
  await stack.pg.admin(
    `INSERT INTO future.migrations (version, name) VALUES (${LATEST_VERSION + 1}, 'next')`,
    stack.pg.database,
  );
  const newer = `has schema "future" at version ${LATEST_VERSION + 1}, newer than this mailctl knows (${LATEST_VERSION})`;
  const refused = await migrate('--format', 'json');
  assert.is(refused.code, 1);
  assert.equal(JSON.parse(refused.stdout).error.code, 'store-schema-newer');
  const run = await runRefused([
    '--state-dir',
    path.join(ws.root, 'future-state'),
    ...stack.storeArgs,
    '--store-schema',
    'future',
  ]);
  assert.is(run.code, 1);
  assert.match(run.stderr, newer);
});

test.run();
