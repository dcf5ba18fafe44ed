/**
 * Where the CLI sends a token from MAILCTL_TOKEN or --token-file: to a URL found in a daemon.json only when the state
 * folder was named, the URL is loopback and the file is the user's own and not writable by others. A recording HTTP
 * server stands in for whatever a daemon.json points at and says which tokens reached it.
 */
import { chmod, chown, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cli } from '../harness/mailctl.js';

const TOKEN = 'token-from-the-environment-5d1c';
let root: string;
let recorder: Server;
let port: number;
const seen: string[] = [];

test.before(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'mailctl-client-'));
  recorder = createServer((req, res) => {
    seen.push(req.headers.authorization ?? '(none)');
    res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":"no"}');
  });
  await new Promise<void>((resolve) => recorder.listen(0, '::', resolve));
  port = (recorder.address() as AddressInfo).port;
});

test.after(async () => {
  recorder.close();
  await rm(root, { recursive: true, force: true });
});

const env = (over: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => {
  const base: NodeJS.ProcessEnv = { PATH: process.env.PATH, NO_COLOR: '1' };
  return { ...base, ...over };
};

/** A folder holding a state folder whose daemon.json names `url` (mode 0600 unless said otherwise). */
async function stateFolder(name: string, url: string, mode = 0o600): Promise<{ cwd: string; stateDir: string }> {
  const cwd = path.join(root, name);
  const stateDir = path.join(cwd, '.mailctl');
  await mkdir(stateDir, { recursive: true });
  await writeFile(path.join(stateDir, 'daemon.json'), JSON.stringify({ formatVersion: '1', url, pid: 1, dir: '/x' }));
  await chmod(path.join(stateDir, 'daemon.json'), mode);
  return { cwd, stateDir };
}

const loopback = () => `http://127.0.0.1:${port}`;

async function refused(args: string[], environment: NodeJS.ProcessEnv, cwd: string, reason: RegExp): Promise<void> {
  seen.length = 0;
  const r = await cli(['status', ...args], environment, cwd);
  assert.is(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stderr, /not sending the token from (MAILCTL_TOKEN|--token-file .*) to http:/);
  assert.match(r.stderr, reason);
  assert.equal(seen, [], 'nothing reached the URL');
}

test("a repository's ./.mailctl/daemon.json does not get MAILCTL_TOKEN (the state folder was not named)", async () => {
  const { cwd } = await stateFolder('repo', loopback());
  await refused([], env({ MAILCTL_TOKEN: TOKEN }), cwd, /the state folder was not named/);
});

test('a named state folder whose daemon.json points beyond loopback does not get the token', async () => {
  const { cwd, stateDir } = await stateFolder('remote', `http://[::ffff:127.0.0.1]:${port}`);
  const tokenFile = path.join(root, 'token');
  await writeFile(tokenFile, TOKEN, { mode: 0o600 });
  await refused(['--state-dir', stateDir, '--token-file', tokenFile], env(), cwd, /is not a loopback address/);
});

test('a daemon.json others may write, or another user owns, does not get the token', async () => {
  const writable = await stateFolder('writable', loopback(), 0o664);
  await refused(
    [],
    env({ MAILCTL_TOKEN: TOKEN, MAILCTL_STATE_DIR: writable.stateDir }),
    writable.cwd,
    /written by others/,
  );
  if (process.getuid?.() !== 0) return console.log('  (owner case skipped: needs root to chown)');
  const foreign = await stateFolder('foreign', loopback());
  await chown(path.join(foreign.stateDir, 'daemon.json'), 65534, 65534);
  await refused(
    [],
    env({ MAILCTL_TOKEN: TOKEN, MAILCTL_STATE_DIR: foreign.stateDir }),
    foreign.cwd,
    /not owned by you/,
  );
});

test('a named state folder, a loopback URL and your own private daemon.json: the token is sent', async () => {
  const { cwd, stateDir } = await stateFolder('mine', loopback());
  seen.length = 0;
  const r = await cli(['status', '--state-dir', stateDir], env({ MAILCTL_TOKEN: TOKEN }), cwd);
  assert.match(r.stderr, /refused the API token/);
  assert.equal(seen, [`Bearer ${TOKEN}`]);
});

test('URL and token from the same state folder work as before, also in ./.mailctl', async () => {
  const { cwd, stateDir } = await stateFolder('same', loopback());
  await writeFile(path.join(stateDir, 'api-token'), 'the-folders-own-token\n', { mode: 0o600 });
  seen.length = 0;
  await cli(['status'], env(), cwd);
  assert.equal(seen, ['Bearer the-folders-own-token']);
});

test('an empty --server is an error, not a reason to look for daemon.json', async () => {
  const { cwd } = await stateFolder('empty-server', loopback());
  seen.length = 0;
  const r = await cli(['status', '--server', ''], env({ MAILCTL_TOKEN: TOKEN }), cwd);
  assert.is(r.code, 1);
  assert.match(r.stderr, /--server must not be empty/);
  assert.equal(seen, []);
});

test.run();
