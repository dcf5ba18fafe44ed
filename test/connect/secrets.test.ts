/**
 * Secret files as the daemon reads them: confined to --secrets-dir on the path as written (no existence oracle) and
 * on the real path (Kubernetes Secret volumes link into `..data/`), regular files of at most 64 KiB opened without
 * blocking (a FIFO), a warning for files others may read, and no empty --secret-env-prefix.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, open, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readAtMost, SecretResolver } from '../../src/connect/secrets.js';
import { cli } from '../harness/mailctl.js';

const run = promisify(execFile);
let root: string;
let secrets: string;
let outside: string;
const warnings: string[] = [];
let resolver: SecretResolver;

test.before(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'mailctl-secrets-'));
  secrets = path.join(root, 'secrets');
  outside = path.join(root, 'outside');
  await mkdir(secrets);
  await mkdir(outside);
  resolver = new SecretResolver({
    secretsDir: secrets,
    envPrefix: 'MAILCTL_SECRET_',
    caDirs: [],
    env: {},
    onWarning: (message) => warnings.push(message),
  });
});

test.after(async () => {
  await rm(root, { recursive: true, force: true });
});

const ref = (file: string) => `\${file:${file}}`;

/** Rejects with the resolver's message, or fails the test when it resolves or takes longer than `ms`. */
async function refusal(reference: string, ms = 3000): Promise<string> {
  const timeout = new Promise<string>((resolve) =>
    setTimeout(() => resolve(`still waiting after ${ms} ms`), ms).unref(),
  );
  const outcome = resolver.resolve(reference).then(
    () => 'resolved',
    (err: Error) => err.message,
  );
  return Promise.race([outcome, timeout]);
}

test('a Kubernetes Secret volume (name → ..data/name → ..<timestamp>/name) resolves', async () => {
  const version = path.join(secrets, '..2026_05_01_10_00_00.123456789');
  await mkdir(version);
  await writeFile(path.join(version, 'support-password'), 'k8s-secret\n', { mode: 0o600 });
  await symlink(path.basename(version), path.join(secrets, '..data'));
  await symlink('..data/support-password', path.join(secrets, 'support-password'));
  assert.is(await resolver.resolve(ref(path.join(secrets, 'support-password'))), 'k8s-secret');
});

test('a link inside the folder that leads outside it is refused', async () => {
  await writeFile(path.join(outside, 'other'), 'not-for-you', { mode: 0o600 });
  await symlink(path.join(outside, 'other'), path.join(secrets, 'escape'));
  assert.match(
    await refusal(ref(path.join(secrets, 'escape'))),
    /is not allowed: it leads outside .* \(--secrets-dir\)/,
  );
});

test('a path outside the folder as written gets the same answer whether or not the file exists', async () => {
  await writeFile(path.join(outside, 'exists'), 'x', { mode: 0o600 });
  const existing = await refusal(ref(path.join(outside, 'exists')));
  const missing = await refusal(ref(path.join(outside, 'missing')));
  assert.match(existing, /is not allowed: secret files must be inside .* \(--secrets-dir\)/);
  assert.is(missing.replace('missing', 'exists'), existing);
});

test('a reference not in normal form is refused even when it would lead inside', async () => {
  await writeFile(path.join(secrets, 'pw'), 'pw', { mode: 0o600 });
  assert.match(await refusal(ref(`${secrets}/./pw`)), /is not allowed/);
  assert.match(await refusal(ref(`${outside}/../secrets/pw`)), /is not allowed/);
});

test('a FIFO is refused at once instead of blocking the resolver', async () => {
  const fifo = path.join(secrets, 'fifo');
  await run('mkfifo', ['-m', '0600', fifo]);
  assert.match(await refusal(ref(fifo)), /is not a regular file/);
});

test('a folder, and a file over 64 KiB, are refused', async () => {
  await mkdir(path.join(secrets, 'folder'));
  assert.match(await refusal(ref(path.join(secrets, 'folder'))), /is not a regular file/);
  await writeFile(path.join(secrets, 'big'), 'x'.repeat(64 * 1024 + 1), { mode: 0o600 });
  assert.match(await refusal(ref(path.join(secrets, 'big'))), /is larger than 64 KiB/);
});

test('a file exactly 64 KiB is read whole', async () => {
  const file = path.join(secrets, 'largest');
  await writeFile(file, 'y'.repeat(64 * 1024), { mode: 0o600 });
  assert.is(await resolver.resolve(ref(file), 'pem'), 'y'.repeat(64 * 1024));
});

test('readAtMost: a file that grew past the size stat gave is still read whole, up to limit + 1 bytes', async () => {
  const file = path.join(outside, 'grown');
  await writeFile(file, 'z'.repeat(100));
  const handle = await open(file, 'r');
  try {
    assert.is((await readAtMost(handle, 1000, 10)).toString(), 'z'.repeat(100));
    assert.is((await readAtMost(handle, 1000, 0)).length, 100);
    assert.is((await readAtMost(handle, 1000, 100)).length, 100);
    assert.is((await readAtMost(handle, 40, 10)).length, 41);
    assert.is((await readAtMost(handle, 99, 100)).length, 100);
  } finally {
    await handle.close();
  }
});

test('a file others may read is used, with one warning', async () => {
  const file = path.join(secrets, 'readable');
  await writeFile(file, 'readable-secret', { mode: 0o644 });
  warnings.length = 0;
  assert.is(await resolver.resolve(ref(file)), 'readable-secret');
  assert.is(await resolver.resolve(ref(file)), 'readable-secret');
  assert.is(warnings.length, 1);
  assert.match(warnings[0]!, /readable by group or others \(mode 0644\)/);
  assert.not.match(warnings[0]!, 'readable-secret');
});

test('mailctl run refuses an empty --secret-env-prefix', async () => {
  const r = await cli(
    [
      'run',
      '--dir',
      root,
      '--state-dir',
      path.join(root, 'state'),
      '--listen',
      '127.0.0.1:0',
      '--secret-env-prefix',
      '',
    ],
    { ...process.env, NO_COLOR: '1' },
  );
  assert.is(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stderr, /--secret-env-prefix must not be empty/);
});

test.run();
