/**
 * `mailctl init [DIR]`: a commented starter folder that validates with zero findings, whose modelines point at the
 * schema this mailctl ships, and that never overwrites a user's files unless told to.
 */
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cli } from '../harness/mailctl.js';

let root = '';

/** The real binary, with no daemon or state folder of the machine in reach. */
const run = (argv: string[]) =>
  cli(argv, { ...process.env, NO_COLOR: '1', MAILCTL_STATE_DIR: path.join(root, 'no-daemon'), MAILCTL_SERVER: '' });

const yamlFiles = async (dir: string) => (await readdir(dir)).filter((f) => f.endsWith('.yaml')).sort();

test.before(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'mailctl-init-'));
});
test.after(() => rm(root, { recursive: true, force: true }));

test('init DIR writes a mailbox pair, a flow and a README; the folder validates with no errors and no warnings', async () => {
  const dir = path.join(root, 'fresh', 'servers.d'); // parents are created
  const r = await run(['init', dir]);
  assert.is(r.code, 0, r.stderr);
  assert.equal((await readdir(dir)).sort(), ['README.md', 'support-flow.yaml', 'support.yaml']);
  assert.match(r.stdout, /wrote .*support\.yaml/);
  assert.match(r.stdout, /mailctl validate --dir /);

  const strict = await run(['validate', '--dir', dir, '--strict', '--json']);
  assert.is(strict.code, 0, strict.stdout);
  const body = JSON.parse(strict.stdout);
  assert.equal(body.diagnostics, []);
  assert.is(body.servers, 2);
  assert.is(body.flows, 1);

  const plan = await run(['plan', '--dir', dir, '--state', 'empty', '--json']);
  assert.is(plan.code, 0, plan.stderr);
  assert.equal(
    JSON.parse(plan.stdout).changes.map((c: { id: string; action: string }) => `${c.action} ${c.id}`),
    ['create imap/support', 'create smtp/support'],
  );
});

test('every YAML file starts with a modeline whose path, relative to the folder, is the schema mailctl ships', async () => {
  const dir = path.join(root, 'modeline', 'deeper', 'servers.d');
  assert.is((await run(['init', dir])).code, 0);
  const shipped = await readFile(new URL('../../schema/mailctl.schema.json', import.meta.url), 'utf8');
  for (const name of await yamlFiles(dir)) {
    const text = await readFile(path.join(dir, name), 'utf8');
    const m = /^# yaml-language-server: \$schema=(\S+)\n/.exec(text);
    assert.ok(m, `${name} has no modeline on its first line`);
    const ref = m[1]!;
    assert.not.ok(path.isAbsolute(ref), `${name}: ${ref} should be relative`);
    assert.not.match(ref, /\\/);
    assert.is(await readFile(path.resolve(dir, ref), 'utf8'), shipped, `${name}: ${ref} is not the shipped schema`);
    assert.ok(text.split('\n').filter((l) => /^\s*#|\s#\s/.test(l)).length >= 8, `${name} should teach with comments`);
  }
  const readme = await readFile(path.join(dir, 'README.md'), 'utf8');
  assert.match(readme, /mailctl validate --dir /);
});

test('an existing file is never overwritten: exit 1, a message naming it, nothing written; --force overwrites', async () => {
  const dir = path.join(root, 'taken');
  await mkdir(dir);
  await writeFile(path.join(dir, 'support.yaml'), 'mine\n');
  const r = await run(['init', dir]);
  assert.is(r.code, 1);
  assert.match(r.stderr, /taken\/support\.yaml already exists; nothing was written \(--force overwrites\)/);
  assert.is(await readFile(path.join(dir, 'support.yaml'), 'utf8'), 'mine\n');
  assert.equal(await readdir(dir), ['support.yaml'], 'no other file was written either');

  const json = await run(['init', dir, '--json']);
  assert.is(json.code, 1);
  assert.is(JSON.parse(json.stdout).error.code, 'file-exists');

  const forced = await run(['init', dir, '--force']);
  assert.is(forced.code, 0, forced.stderr);
  assert.match(await readFile(path.join(dir, 'support.yaml'), 'utf8'), /^# yaml-language-server/);
  assert.is((await run(['validate', '--dir', dir])).code, 0);
});

test('without DIR: servers.d in the current folder, and a second run refuses', async () => {
  const cwd = path.join(root, 'repo');
  await mkdir(cwd);
  const env = { ...process.env, NO_COLOR: '1' };
  const first = await cli(['init'], env, cwd);
  assert.is(first.code, 0, first.stderr);
  assert.equal(await yamlFiles(path.join(cwd, 'servers.d')), ['support-flow.yaml', 'support.yaml']);
  const validate = await cli(['validate'], env, cwd);
  assert.is(validate.code, 0, validate.stdout);
  assert.match(validate.stdout, /servers\.d: valid \(2 servers, 1 flow in 2 files; 0 errors, 0 warnings\)/);
  const again = await cli(['init'], env, cwd);
  assert.is(again.code, 1);
  assert.match(again.stderr, /already exist; nothing was written/);
});

test('too many arguments are refused; help lists init', async () => {
  const r = await run(['init', 'a', 'b']);
  assert.is(r.code, 1);
  assert.match(r.stderr, /unexpected argument "b"/);
  assert.match((await run(['--help'])).stdout, /\n {2}init +Write a commented starter folder/);
});

test.run();
