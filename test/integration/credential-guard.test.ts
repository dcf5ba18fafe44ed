/**
 * The credential guard against a real Dovecot and SMTP server: a bound secret under another reference (a link in the
 * secrets folder, a copy of the file) is a rebind at apply even though the offline plan cannot know; a state folder
 * written before identities existed is migrated on start and guarded the same; a CA file must lead into a --ca-dir,
 * and one applied earlier that leads elsewhere now is refused at apply and fails its server on start.
 */
import { copyFile, mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { testCaRoot } from '../harness/ca.js';
import { flowYaml, imapYaml, smtpYaml } from '../harness/fixtures.js';
import { cli, eventually, type DaemonProcess } from '../harness/mailctl.js';
import { startMailStack, type MailStack } from '../harness/stack.js';

const USER = 'support@example.com';
const PASSWORD = 'support-pass-4c1d';

let stack: MailStack;
let daemon: DaemonProcess;
let ref: string;

test.before(async () => {
  stack = await startMailStack({ users: { [USER]: PASSWORD }, smtp: true });
  ref = await stack.ref(USER);
  await stack.ws.writeServer('flow.yaml', flowYaml());
  await stack.ws.writeServer('imap.yaml', support());
  daemon = await stack.startDaemon();
});

test.after(async () => {
  await stack?.stop();
});

function support(over: { caFile?: string; storageFolder?: string } = {}): string {
  const { dovecot } = stack;
  return imapYaml({
    shortName: 'support',
    user: USER,
    port: dovecot.ports.imap,
    caFile: over.caFile ?? dovecot.caFile,
    password: ref,
    ...(over.storageFolder !== undefined && { storageFolder: over.storageFolder }),
  });
}

/** An SMTP server (another host than the IMAP server's) sending with `password`. */
const sneaky = (shortName: string, password: string) =>
  smtpYaml({ shortName, user: USER, port: stack.smtp.port, caFile: stack.smtp.caFile, password });

const apply = (...args: string[]) => cli(['apply', '--dir', stack.ws.dir, ...args], stack.ws.env);
const applied = async () => JSON.parse(await readFile(path.join(stack.ws.stateDir, 'applied.json'), 'utf8'));
const serverStatus = async (id: string) =>
  (JSON.parse((await cli(['status', '--json'], stack.ws.env)).stdout) as { servers: any[] }).servers.find(
    (s) => s.id === id,
  );

test('the first apply binds the password to the IMAP server', async () => {
  const r = await apply();
  assert.is(r.code, 0, r.stdout + r.stderr);
  const record = await applied();
  assert.is(record.formatVersion, '2');
  assert.equal(Object.keys(record.state.bindings), [ref]);
  assert.is(Object.keys(record.identities.bindings).length, 1);
  const pulled = await cli(['state', 'pull'], stack.ws.env);
  assert.not.match(pulled.stdout, 'identities', 'identity bindings stay in the daemon');
});

/** Adds smtp/<name> sending the bound password under `reference`; the plan cannot tell, apply refuses. */
async function refusedUnseen(name: string, reference: string): Promise<void> {
  await stack.ws.writeServer(`${name}.yaml`, sneaky(name, reference));
  const stateFile = path.join(stack.ws.root, 'state.json');
  await writeFile(stateFile, (await cli(['state', 'pull'], stack.ws.env)).stdout);
  const plan = await cli(['plan', '--dir', stack.ws.dir, '--state', stateFile], stack.ws.env);
  assert.is(plan.code, 0, plan.stdout + plan.stderr);
  assert.match(plan.stdout, new RegExp(`\\+ smtp/${name}`));
  assert.match(plan.stdout, /0 need approval/);
  const attempts = stack.smtp.authAttempts.ok + stack.smtp.authAttempts.failed;
  const r = await apply();
  assert.is(r.code, 3, r.stdout + r.stderr);
  assert.match(r.stdout, new RegExp(`! smtp/${name}: credential rebind: .* holds the same secret as a reference`));
  assert.is(stack.smtp.authAttempts.ok + stack.smtp.authAttempts.failed, attempts, 'nothing was sent to the host');
  await stack.ws.removeServer(`${name}.yaml`);
}

test('a link in the secrets folder and a copy of the file are rebinds at apply (exit 3), not in the plan', async () => {
  const link = path.join(stack.ws.secretsDir, 'innocent-looking');
  await symlink(`${USER}.password`, link);
  await refusedUnseen('linked', `\${file:${link}}`);
  const copy = await stack.ws.writeSecret('copy', PASSWORD);
  await refusedUnseen('copied', `\${file:${copy}}`);
});

test('a state folder from before identities is migrated on start and guarded the same', async () => {
  await daemon.stop();
  // as mailctl wrote it before: formatVersion 1, no identities, bindings without the CA file
  const record = await applied();
  const { identities: _identities, ...rest } = structuredClone(record);
  for (const list of Object.values<any[]>(rest.state.bindings)) for (const b of list) delete b.tlsCaFile;
  await writeFile(
    path.join(stack.ws.stateDir, 'applied.json'),
    JSON.stringify({ ...rest, formatVersion: '1' }, null, 2),
    { mode: 0o600 },
  );
  daemon = await stack.startDaemon();
  const migrated = await applied();
  assert.is(migrated.formatVersion, '2');
  assert.equal(migrated.identities, record.identities);
  assert.equal(migrated.state.bindings, record.state.bindings, 'the CA file is back in the binding');
  assert.match(daemon.output(), /applied state migrated/);
  await refusedUnseen('after-migration', `\${file:${path.join(stack.ws.secretsDir, 'innocent-looking')}}`);
  // the migrated binding carries the CA file it was applied with: a restart needs no approval
  await stack.dovecot.createFolder(USER, 'Archive');
  await stack.ws.writeServer('imap.yaml', support({ storageFolder: 'Archive' }));
  const r = await apply();
  assert.is(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /-\/\+ imap\/support/);
});

test('a CA file must lead into a --ca-dir: a file a sink could write, or a link to one, is refused', async () => {
  const outside = path.join(stack.ws.stateDir, 'queues', 'general', 'ca.eml');
  await mkdir(path.dirname(outside), { recursive: true });
  await copyFile(stack.dovecot.caFile, outside);
  const link = path.join(testCaRoot(), 'looks-allowed.pem');
  await symlink(outside, link);
  for (const caFile of [outside, link]) {
    await stack.ws.writeServer('imap.yaml', support({ caFile, storageFolder: 'Archive' }));
    const r = await apply('--approve-rebind', 'imap/support');
    assert.is(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /refused-config: imap\/support: tlsCaFile .* is not inside a folder allowed by --ca-dir/);
  }
  await rm(link);
  await stack.ws.writeServer('imap.yaml', support({ storageFolder: 'Archive' }));
});

test('a CA file applied earlier that now leads outside: refused at the next apply, failed (config) on start', async () => {
  const link = path.join(testCaRoot(), 'corp-ca.pem');
  await symlink(stack.dovecot.caFile, link);
  await stack.ws.writeServer('imap.yaml', support({ caFile: link, storageFolder: 'Archive' }));
  let r = await apply('--approve-rebind', 'imap/support');
  assert.is(r.code, 0, r.stdout + r.stderr);
  // the link now leads to a copy outside every --ca-dir
  const copy = path.join(stack.ws.root, 'ca-copy.pem');
  await copyFile(stack.dovecot.caFile, copy);
  await rm(link);
  await symlink(copy, link);
  const other = `\${file:${await stack.ws.writeSecret('other', 'x-other')}}`;
  await stack.ws.writeServer('unrelated.yaml', sneaky('unrelated', other));
  r = await apply();
  assert.is(r.code, 1, r.stdout + r.stderr);
  assert.match(
    r.stdout,
    /refused-config: imap\/support: tlsCaFile .*corp-ca\.pem is not inside a folder allowed by --ca-dir/,
    r.stdout,
  );
  await daemon.stop();
  daemon = await stack.startDaemon();
  const server = await eventually(
    async () => {
      const s = await serverStatus('imap/support');
      return s?.state === 'failed' && s;
    },
    20_000,
    'imap/support failed',
  );
  assert.is(server.lastError.class, 'config');
  assert.match(server.lastError.message, /--ca-dir/);
});

test.run();
