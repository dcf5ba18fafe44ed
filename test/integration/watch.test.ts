/**
 * Watch mode (the GitOps pull loop) against a real Dovecot and a real SMTP server: an editor's atomic save, a bad
 * edit (the last good configuration keeps running, status shows file:line:col), a credential rebind waiting for
 * approval, secret file rotation restarting exactly its server, a 50-file burst becoming one reconcile, an emptied
 * folder stopping nothing, and SIGHUP with --no-watch.
 */
import { readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startDovecot, type Dovecot } from '../harness/dovecot.js';
import { flowYaml, imapYaml, smtpYaml } from '../harness/fixtures.js';
import {
  cli,
  createWorkspace,
  eventually,
  startDaemon,
  type DaemonProcess,
  type Workspace,
} from '../harness/mailctl.js';
import { startSmtpServer, type SmtpTestServer } from '../harness/smtp.js';

const A = 'alice@example.com';
const B = 'bob@example.com';
const BULK = 50;
/** Longer than the watcher's debounce (250 ms) plus a reconcile: used only to show that NO further reconcile follows. */
const QUIET_MS = 1_200;

let dovecot: Dovecot;
let smtp: SmtpTestServer;
let ws: Workspace;
let daemon: DaemonProcess;
let refA: string;
let refB: string;
let refBulk: string;

type Status = { id: string; state: string; since: string | null; name: string }[];
type Last = {
  outcome: string;
  message: string;
  diagnostics: { file: string; line: number; column: number; code: string }[];
} | null;

const imapA = (over: Partial<Parameters<typeof imapYaml>[0]> = {}) =>
  imapYaml({ shortName: 'a', user: A, port: dovecot.ports.imap, caFile: dovecot.caFile, password: refA, ...over });
const imapB = () =>
  imapYaml({ shortName: 'b', user: B, port: dovecot.ports.imap, caFile: dovecot.caFile, password: refB });
const smtpA = () => smtpYaml({ shortName: 'a', user: A, port: smtp.port, caFile: smtp.caFile, password: refA });

async function statusOf(d: DaemonProcess = daemon): Promise<{ servers: Status; lastReconcile: Last }> {
  const r = await d.api('GET', '/v1/status');
  assert.is(r.status, 200);
  return r.body;
}
const server = async (id: string, d: DaemonProcess = daemon) => (await statusOf(d)).servers.find((s) => s.id === id);
const appliedSpec = async (id: string, d: DaemonProcess = daemon) =>
  (await d.api('GET', '/v1/state')).body.state.servers[id]?.config.spec;
/** Reconciles the daemon ran so far (one JSON log line each, whatever the outcome). */
const applyLogLines = async (w: Workspace = ws) =>
  (await readFile(path.join(w.stateDir, 'apply-log.jsonl'), 'utf8').catch(() => '')).trim().split('\n').filter(Boolean)
    .length;
const quiet = () => new Promise((r) => setTimeout(r, QUIET_MS));
const running = (id: string, d?: DaemonProcess) =>
  eventually(async () => (await server(id, d))?.state === 'running', 20_000, `${id} running`);

/** What editors (vim with backupcopy=no, VS Code, JetBrains) do: write a temp file next to it, then rename it over. */
async function atomicSave(name: string, text: string): Promise<void> {
  const tmp = path.join(ws.dir, `.${name}.swp-${process.pid}`);
  await writeFile(tmp, text);
  await rename(tmp, path.join(ws.dir, name));
}

test.before(async () => {
  dovecot = await startDovecot({ users: { [A]: 'alice-pass', [B]: 'bob-pass' } });
  await dovecot.createFolder(A, 'ContactStorage');
  await dovecot.createFolder(B, 'ContactStorage');
  const bulkUsers = Object.fromEntries(Array.from({ length: BULK }, (_, i) => [`bulk${i}@example.com`, 'bulk-pass']));
  smtp = await startSmtpServer({ ca: dovecot.ca, users: { [A]: 'alice-pass', ...bulkUsers } });
  ws = await createWorkspace();
  refA = `\${file:${await ws.writeSecret('alice-password', 'alice-pass')}}`;
  refB = `\${file:${await ws.writeSecret('bob-password', 'bob-pass')}}`;
  refBulk = `\${file:${await ws.writeSecret('bulk-password', 'bulk-pass')}}`;
  await ws.writeServer('flow.yaml', flowYaml());
  await ws.writeServer('imap-a.yaml', imapA());
  await ws.writeServer('imap-b.yaml', imapB());
  await ws.writeServer('smtp-a.yaml', smtpA());
  daemon = await startDaemon(ws); // watching (the default)
  await running('imap/a');
  await running('imap/b');
  await running('smtp/a');
});

test.after(async () => {
  await daemon?.kill().catch(() => undefined);
  await smtp?.stop();
  await dovecot?.stop();
  await ws?.cleanup();
});

test('the daemon applied the folder on start (watch mode)', async () => {
  assert.is((await statusOf()).lastReconcile?.outcome, 'applied');
  assert.is(await applyLogLines(), 1);
});

test('an atomic save (temp file + rename) of an in-place change is applied with one reconcile', async () => {
  const before = await server('imap/a');
  const [count, logLines] = [daemon.reconciles(), await applyLogLines()];
  await atomicSave('imap-a.yaml', imapA({ name: 'Alice (renamed)' }));
  await eventually(
    async () => (await appliedSpec('imap/a'))?.name === 'Alice (renamed)',
    10_000,
    'renamed in /v1/state',
  );
  await quiet();
  assert.is(daemon.reconciles() - count, 1, 'one reconcile');
  assert.is((await applyLogLines()) - logLines, 1, 'one apply-log entry');
  const after = await server('imap/a');
  assert.is(after?.name, 'Alice (renamed)');
  assert.is(after?.state, 'running');
  assert.is(after?.since, before?.since, 'an in-place update does not reconnect');
});

test('a bad edit keeps the old configuration running; status shows file:line:col; the fix applies', async () => {
  const before = await server('imap/a');
  // 1. invalid YAML
  await atomicSave('imap-a.yaml', `${imapA({ name: 'Broken' })}port: [\n`);
  await eventually(async () => (await statusOf()).lastReconcile?.outcome === 'invalid', 10_000, 'invalid reconcile');
  let text = await cli(['status'], ws.env);
  assert.is(text.code, 0, text.stderr);
  assert.match(text.stdout, /imap-a\.yaml:\d+:\d+: error\[/);
  assert.is((await server('imap/a'))?.state, 'running');
  assert.is((await server('imap/a'))?.since, before?.since);
  assert.is((await appliedSpec('imap/a'))?.name, 'Alice (renamed)');
  // 2. a rule error (storageFolder equal to folder)
  await atomicSave('imap-a.yaml', imapA({ name: 'Broken', folder: 'INBOX', storageFolder: 'INBOX' }));
  await eventually(
    async () => (await statusOf()).lastReconcile?.diagnostics.some((d) => d.code === 'storage-folder-equals-folder'),
    10_000,
    'rule error reported',
  );
  text = await cli(['status'], ws.env);
  assert.match(text.stdout, /imap-a\.yaml:\d+:\d+: error\[storage-folder-equals-folder\]/);
  assert.is((await server('imap/a'))?.state, 'running');
  assert.is((await appliedSpec('imap/a'))?.name, 'Alice (renamed)');
  // 3. the fix
  await atomicSave('imap-a.yaml', imapA({ name: 'Alice (fixed)' }));
  // the new state is visible while its loops start; the reconcile's outcome is recorded when it ends
  await eventually(async () => (await statusOf()).lastReconcile?.outcome === 'applied', 10_000, 'fix applied').catch(
    async (err) =>
      assert.unreachable(`${err.message}; last reconcile: ${JSON.stringify((await statusOf()).lastReconcile)}`),
  );
  assert.is((await appliedSpec('imap/a'))?.name, 'Alice (fixed)');
  assert.is((await server('imap/a'))?.state, 'running');
});

test('a rebind in watch mode waits as pending-approval (old config keeps running) until apply --approve-rebind', async () => {
  const before = await server('imap/a');
  await atomicSave('imap-a.yaml', imapA({ name: 'Alice (fixed)', port: dovecot.ports.imaps, tls: true }));
  await eventually(async () => (await server('imap/a'))?.state === 'pending-approval', 10_000, 'pending-approval');
  assert.is((await statusOf()).lastReconcile?.outcome, 'needs-approval');
  assert.is((await appliedSpec('imap/a'))?.port, dovecot.ports.imap, 'old configuration kept');
  assert.is((await server('imap/a'))?.since, before?.since, 'old loop not restarted');
  const check = await cli(['status', '--check'], ws.env);
  assert.is(check.code, 1, 'pending-approval is not healthy');
  const refused = await cli(['apply', '--dir', ws.dir], ws.env);
  assert.is(refused.code, 3, refused.stdout);
  const r = await cli(['apply', '--dir', ws.dir, '--approve-rebind', 'imap/a'], ws.env);
  assert.is(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /imap\/a: Connection succeeded/);
  await running('imap/a');
  assert.is((await appliedSpec('imap/a'))?.port, dovecot.ports.imaps);
  assert.is.not((await server('imap/a'))?.since, before?.since);
});

test('a rotated secret file restarts exactly the server that uses it', async () => {
  await running('imap/a');
  await running('imap/b');
  const [a, b] = [await server('imap/a'), await server('imap/b')];
  await dovecot.addUser(B, 'bob-rotated');
  await ws.writeSecret('bob-password', 'bob-rotated');
  await eventually(
    async () => {
      const now = await server('imap/b');
      return now?.state === 'running' && now.since !== b?.since;
    },
    15_000,
    'imap/b restarted',
  );
  await quiet();
  assert.is((await server('imap/a'))?.since, a?.since, 'imap/a untouched');
  assert.is((await server('smtp/a'))?.state, 'running');
  assert.is((await statusOf()).lastReconcile?.outcome, 'applied');
});

test(`${BULK} files written at once become exactly one reconcile`, async () => {
  const [count, logLines] = [daemon.reconciles(), await applyLogLines()];
  await Promise.all(
    Array.from({ length: BULK }, (_, i) =>
      ws.writeServer(
        `smtp-bulk${i}.yaml`,
        smtpYaml({
          shortName: `bulk${i}`,
          user: `bulk${i}@example.com`,
          port: smtp.port,
          caFile: smtp.caFile,
          password: refBulk,
        }),
      ),
    ),
  );
  await eventually(
    async () =>
      (await statusOf()).servers.filter((s) => s.id.startsWith('smtp/bulk') && s.state === 'running').length === BULK,
    30_000,
    `${BULK} loops running`,
  ).catch(async (err) =>
    assert.unreachable(`${err.message}; last reconcile: ${JSON.stringify((await statusOf()).lastReconcile)}`),
  );
  await quiet();
  assert.is(daemon.reconciles() - count, 1, 'one reconcile');
  assert.is((await applyLogLines()) - logLines, 1, 'one apply-log entry');
  const last = JSON.parse(
    (await readFile(path.join(ws.stateDir, 'apply-log.jsonl'), 'utf8')).trim().split('\n').at(-1)!,
  );
  assert.is(last.trigger, 'watch');
  assert.is(Object.keys(last.servers).length, BULK);
});

test('an emptied folder stops nothing (refused-deletes); restoring it changes nothing', async () => {
  const files = new Map<string, string>();
  for (const name of await readdir(ws.dir)) files.set(name, await readFile(path.join(ws.dir, name), 'utf8'));
  const before = (await statusOf()).servers;
  await Promise.all([...files.keys()].map((name) => rm(path.join(ws.dir, name))));
  await eventually(
    async () => (await statusOf()).lastReconcile?.outcome === 'refused-deletes',
    10_000,
    'refused-deletes',
  );
  const s = await statusOf();
  assert.match(s.lastReconcile!.message, /--allow-empty/);
  assert.is(s.servers.length, before.length);
  assert.ok(
    s.servers.every((x) => x.state === 'running'),
    'every loop still running',
  );
  const text = await cli(['status'], ws.env);
  assert.match(text.stdout, /refused-deletes/);
  await Promise.all([...files].map(([name, yaml]) => writeFile(path.join(ws.dir, name), yaml)));
  await eventually(
    async () => (await statusOf()).lastReconcile?.outcome === 'no-changes',
    10_000,
    'no-changes after restore',
  ).catch(async (err) =>
    assert.unreachable(`${err.message}; last reconcile: ${JSON.stringify((await statusOf()).lastReconcile)}`),
  );
  const after = (await statusOf()).servers;
  assert.equal(
    after.map((x) => [x.id, x.since]),
    before.map((x) => [x.id, x.since]),
    'nothing restarted',
  );
});

test('SIGHUP reconciles now (--no-watch daemon)', async () => {
  const ws2 = await createWorkspace();
  let d2: DaemonProcess | undefined;
  try {
    const ref = `\${file:${await ws2.writeSecret('alice-password', 'alice-pass')}}`;
    await ws2.writeServer('flow.yaml', flowYaml());
    await ws2.writeServer(
      'smtp-a.yaml',
      smtpYaml({ shortName: 'a', user: A, port: smtp.port, caFile: smtp.caFile, password: ref }),
    );
    d2 = await startDaemon(ws2, ['--no-watch']);
    const r = await cli(['apply', '--dir', ws2.dir], ws2.env);
    assert.is(r.code, 0, r.stdout + r.stderr);
    await running('smtp/a', d2);
    await ws2.writeServer(
      'smtp-a.yaml',
      smtpYaml({
        shortName: 'a',
        name: 'Alice outgoing (HUP)',
        user: A,
        port: smtp.port,
        caFile: smtp.caFile,
        password: ref,
      }),
    );
    await quiet();
    assert.is((await appliedSpec('smtp/a', d2))?.name, 'smtp a', '--no-watch: an edit alone changes nothing');
    d2.child.kill('SIGHUP');
    // the apply log gets its entry once the loops have started, after the new state is visible
    const lastApply = async () =>
      JSON.parse((await readFile(path.join(ws2.stateDir, 'apply-log.jsonl'), 'utf8')).trim().split('\n').at(-1)!);
    await eventually(async () => (await lastApply()).trigger === 'sighup', 10_000, 'apply-log entry for the SIGHUP');
    assert.is((await appliedSpec('smtp/a', d2))?.name, 'Alice outgoing (HUP)');
  } finally {
    await d2?.kill().catch(() => undefined);
    await ws2.cleanup();
  }
});

test.run();
