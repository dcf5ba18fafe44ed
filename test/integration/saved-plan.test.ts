/**
 * `plan` against a running daemon and saved plans: `plan --out FILE` then `apply FILE` applies exactly that plan;
 * a saved plan is refused as stale (exit 1) once the folder or the running state has moved on.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { type Dovecot } from '../harness/dovecot.js';
import { flowYaml, imapYaml, smtpYaml } from '../harness/fixtures.js';
import { cli, eventually, type DaemonProcess, type Workspace } from '../harness/mailctl.js';
import { type SmtpTestServer } from '../harness/smtp.js';
import { startMailStack, type MailStack } from '../harness/stack.js';

const A = 'alice@example.com';
const B = 'bob@example.com';
const PW_A = 'Qz7-first-secret';
const PW_B = 'Kx4-second-secret';

let stack: MailStack;
let dovecot: Dovecot;
let smtp: SmtpTestServer;
let ws: Workspace;
let daemon: DaemonProcess;
let refA: string;
let refB: string;

const imapA = (name?: string) =>
  imapYaml({ shortName: 'a', name, user: A, port: dovecot.ports.imap, caFile: dovecot.caFile, password: refA });
const smtpA = (enabled = true) =>
  smtpYaml({ shortName: 'a', enabled, user: A, port: smtp.port, caFile: smtp.caFile, password: refA });
const smtpB = () => smtpYaml({ shortName: 'b', user: B, port: smtp.port, caFile: smtp.caFile, password: refB });

const plan = (...args: string[]) => cli(['plan', '--dir', ws.dir, ...args], ws.env);
const apply = (...args: string[]) => cli(['apply', ...args], ws.env);
const planFile = (name: string) => path.join(ws.root, name);
const appliedSpec = async (id: string) => (await daemon.api('GET', '/v1/state')).body.state.servers[id]?.config.spec;
const serverState = async (id: string) =>
  (await daemon.api('GET', '/v1/status')).body.servers.find((s: { id: string }) => s.id === id);

test.before(async () => {
  stack = await startMailStack({ users: { [A]: PW_A }, smtp: { users: { [A]: PW_A, [B]: PW_B } } });
  ({ dovecot, smtp, ws } = stack);
  refA = `\${file:${await ws.writeSecret('alice-password', PW_A)}}`;
  refB = `\${file:${await ws.writeSecret('bob-password', PW_B)}}`;
  await ws.writeServer('flow.yaml', flowYaml());
  await ws.writeServer('imap-a.yaml', imapA());
  await ws.writeServer('smtp-a.yaml', smtpA());
  daemon = await stack.startDaemon(['--no-watch']);
  const r = await apply('--dir', ws.dir);
  assert.is(r.code, 0, r.stdout + r.stderr);
  await eventually(async () => (await serverState('imap/a'))?.state === 'running', 20_000, 'imap/a running');
});

test.after(async () => {
  await stack?.stop();
});

test('plan against the daemon (found through MAILCTL_STATE_DIR): no changes → --detailed-exitcode 0', async () => {
  const r = await plan('--detailed-exitcode');
  assert.is(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /running state of the daemon at http:\/\/127\.0\.0\.1:\d+/);
  assert.match(r.stdout, /No changes/);
});

test('plan against the daemon shows the right symbols; --detailed-exitcode 2; --server URL works too', async () => {
  await ws.writeServer('imap-a.yaml', imapA('Alice inbox (renamed)'));
  await ws.writeServer('smtp-b.yaml', smtpB());
  await ws.writeServer('smtp-a.yaml', smtpA(false));
  const r = await plan('--detailed-exitcode');
  assert.is(r.code, 2, r.stdout + r.stderr);
  assert.match(r.stdout, /^\s*~ imap\/a will be updated in place/m);
  assert.match(r.stdout, /^\s*\+ smtp\/b will be created/m);
  assert.match(r.stdout, /^\s*- smtp\/a will be stopped/m);
  assert.match(r.stdout, /Plan: 1 to create, 1 to update, 0 to restart, 1 to stop, 0 to delete, 0 need approval\./);
  assert.not.match(r.stdout + r.stderr, PW_A);
  assert.not.match(r.stdout + r.stderr, PW_B);
  const viaUrl = await cli(['plan', '--dir', ws.dir, '--server', daemon.url, '--json'], {
    ...ws.env,
    MAILCTL_TOKEN: daemon.token,
    MAILCTL_STATE_DIR: '',
  });
  assert.is(viaUrl.code, 0, viaUrl.stdout + viaUrl.stderr);
  const json = JSON.parse(viaUrl.stdout);
  const actions = Object.fromEntries(
    json.changes.map((c: { id: string; action: string; symbol: string }) => [c.id, `${c.symbol} ${c.action}`]),
  );
  assert.equal(actions, { 'imap/a': '~ update', 'smtp/b': '+ create', 'smtp/a': '- stop' });
});

test('plan --out FILE, then apply FILE applies exactly that plan (exit 0)', async () => {
  const file = planFile('plan.json');
  const p = await plan('--out', file);
  assert.is(p.code, 0, p.stdout + p.stderr);
  assert.match(p.stdout, new RegExp(`mailctl apply ${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}`));
  const saved = JSON.parse(await readFile(file, 'utf8'));
  assert.ok(saved.plan?.desiredDigest && saved.plan?.stateDigest, 'the plan file carries both digests');
  const r = await apply(file);
  assert.is(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /smtp\/b: Connection succeeded/);
  assert.is((await appliedSpec('imap/a'))?.name, 'Alice inbox (renamed)');
  assert.is((await appliedSpec('smtp/a'))?.enabled, false);
  await eventually(async () => (await serverState('smtp/b'))?.state === 'running', 20_000, 'smtp/b running');
  const again = await plan('--detailed-exitcode');
  assert.is(again.code, 0, again.stdout);
});

test('a saved plan is stale once the folder changed (exit 1, "stale"); nothing is applied', async () => {
  await ws.writeServer('imap-a.yaml', imapA('Alice v2'));
  const file = planFile('plan-folder.json');
  assert.is((await plan('--out', file)).code, 0);
  await ws.writeServer('imap-a.yaml', imapA('Alice v3'));
  const r = await apply(file);
  assert.is(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stdout + r.stderr, /stale/);
  assert.match(r.stdout + r.stderr, /the folder changed/);
  assert.is((await appliedSpec('imap/a'))?.name, 'Alice inbox (renamed)');
});

test('a saved plan is stale once the running state changed (something else applied first)', async () => {
  await ws.writeServer('imap-a.yaml', imapA('Alice v4'));
  const file = planFile('plan-state.json');
  assert.is((await plan('--out', file)).code, 0);
  const other = await apply('--dir', ws.dir); // the same folder, applied by someone else first
  assert.is(other.code, 0, other.stdout);
  const r = await apply(file);
  assert.is(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stdout + r.stderr, /stale/);
  assert.match(r.stdout + r.stderr, /the running state changed/);
});

test.run();
