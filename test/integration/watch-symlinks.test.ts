/**
 * Watch mode with the two ways deployments replace a folder without touching its files: a Kubernetes ConfigMap
 * (files are links into `..data`, and `..data` is swapped to a new timestamped folder) and git-sync (the link
 * `current` above the folder is swapped to a new worktree). No file event reports such a swap; each must be applied
 * by one reconcile. A link that leads out of the folder is not followed by the watcher (a committed `x -> /usr` would
 * have it watch a whole tree).
 */
import { mkdir, readdir, readFile, readlink, rename, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { smtpYaml } from '../harness/fixtures.js';
import { createWorkspace, eventually, startDaemon, type DaemonProcess, type Workspace } from '../harness/mailctl.js';
import { startSmtpServer, type SmtpTestServer } from '../harness/smtp.js';

const USER = 'support@example.com';
let smtp: SmtpTestServer;
let ws: Workspace;
let ref: string;
const daemons: DaemonProcess[] = [];

test.before(async () => {
  smtp = await startSmtpServer({ users: { [USER]: 'pw' } });
  ws = await createWorkspace();
  ref = `\${file:${await ws.writeSecret('pw', 'pw')}}`;
});

test.after(async () => {
  await Promise.all(daemons.map((d) => d.kill().catch(() => undefined)));
  await smtp?.stop();
  await ws?.cleanup();
});

const yamlNamed = (name: string) =>
  smtpYaml({ shortName: 'support', name, user: USER, port: smtp.port, caFile: smtp.caFile, password: ref });
/** Longer than the watcher's debounce and the 2 s check of the links above the folder: a second reconcile would be in. */
const settle = () => new Promise((r) => setTimeout(r, 3_000));
const appliedName = async (d: DaemonProcess) =>
  (await d.api('GET', '/v1/state')).body.state.servers['smtp/support']?.config.spec.name as string | undefined;

/** Replaces the symlink `link` so that it points at `target`, atomically (as kubelet and git-sync do). */
async function swapLink(link: string, target: string): Promise<void> {
  const temp = `${link}.tmp-${Date.now()}`;
  await symlink(target, temp);
  await rename(temp, link);
}

test('a ConfigMap update (the ..data link swapped to a new folder) is applied', async () => {
  const dir = path.join(ws.root, 'configmap');
  await mkdir(path.join(dir, '..2026_01'), { recursive: true });
  await writeFile(path.join(dir, '..2026_01', 'support.yaml'), yamlNamed('Version one'));
  await symlink('..2026_01', path.join(dir, '..data'));
  await symlink('..data/support.yaml', path.join(dir, 'support.yaml'));
  const daemon = await startDaemon({ ...ws, dir, stateDir: path.join(ws.root, 'state-cm') });
  daemons.push(daemon);
  await eventually(async () => (await appliedName(daemon)) === 'Version one', 20_000, 'first version applied');
  // kubelet writes the new version's folder, then swaps `..data`; here the swap comes after the reconcile that the
  // new files' events started (with `..data` still on the old version), so only the swap itself can apply it
  await mkdir(path.join(dir, '..2026_02'));
  await writeFile(path.join(dir, '..2026_02', 'support.yaml'), yamlNamed('Version two'));
  await settle();
  const before = daemon.reconciles();
  await swapLink(path.join(dir, '..data'), '..2026_02');
  await eventually(
    async () => (await appliedName(daemon)) === 'Version two',
    20_000,
    'second version applied after the ..data swap',
  );
  await settle();
  assert.is(daemon.reconciles() - before, 1, 'one reconcile for the swap');
});

test('a git-sync update (the link above the folder swapped to a new worktree) is applied', async () => {
  const root = path.join(ws.root, 'git');
  for (const [rev, name] of [
    ['rev1', 'Revision one'],
    ['rev2', 'Revision two'],
  ] as const) {
    await mkdir(path.join(root, 'worktrees', rev, 'servers.d'), { recursive: true });
    await writeFile(path.join(root, 'worktrees', rev, 'servers.d', 'support.yaml'), yamlNamed(name));
  }
  await symlink('worktrees/rev1', path.join(root, 'current'));
  const dir = path.join(root, 'current', 'servers.d');
  const daemon = await startDaemon({ ...ws, dir, stateDir: path.join(ws.root, 'state-git') });
  daemons.push(daemon);
  await eventually(async () => (await appliedName(daemon)) === 'Revision one', 20_000, 'first revision applied');
  await settle();
  const before = daemon.reconciles();
  await swapLink(path.join(root, 'current'), 'worktrees/rev2');
  await eventually(
    async () => (await appliedName(daemon)) === 'Revision two',
    20_000,
    'second revision applied after the current swap',
  );
  await settle();
  assert.is(daemon.reconciles() - before, 1, 'one reconcile for the swap');
});

/** The inotify watches a process holds (one per watched file or folder), from its file descriptors' fdinfo. */
async function inotifyWatches(pid: number): Promise<number> {
  let watches = 0;
  for (const fd of await readdir(`/proc/${pid}/fd`)) {
    const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
    if (target !== 'anon_inode:inotify') continue;
    const info = await readFile(`/proc/${pid}/fdinfo/${fd}`, 'utf8').catch(() => '');
    watches += info.split('\n').filter((l) => l.startsWith('inotify wd:')).length;
  }
  return watches;
}

test('a link out of the folder is not followed: its tree is not watched and its changes reconcile nothing', async () => {
  const outside = path.join(ws.root, 'outside');
  const FOLDERS = 300;
  for (let i = 0; i < FOLDERS; i++) await mkdir(path.join(outside, `d${i}`), { recursive: true });
  const dir = path.join(ws.root, 'linked');
  await mkdir(dir);
  await writeFile(path.join(dir, 'support.yaml'), yamlNamed('Linked'));
  await symlink(outside, path.join(dir, 'x'));
  const daemon = await startDaemon({ ...ws, dir, stateDir: path.join(ws.root, 'state-linked') });
  daemons.push(daemon);
  await eventually(() => daemon.reconciles() >= 1, 20_000, 'the first reconcile');
  await settle();
  const watches = await inotifyWatches(daemon.child.pid!);
  assert.ok(watches < FOLDERS, `${watches} inotify watches for a folder of one file`);
  const before = daemon.reconciles();
  await writeFile(path.join(outside, 'd7', 'new.yaml'), yamlNamed('Outside'));
  await settle();
  assert.is(daemon.reconciles(), before, 'a file outside the folder changed nothing');
});

test.run();
