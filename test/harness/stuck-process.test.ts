/**
 * The harness's description of a daemon that stopped answering (used when a daemon does not start in time): an idle
 * event loop is reported with its open handles, a blocked one by the kernel's view of its main thread.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { describeStuckProcess, reportFlags } from './stuck-process.js';

let dir: string;
const children: ChildProcess[] = [];

async function nodeChild(code: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [...reportFlags(dir), '-e', code], { stdio: ['ignore', 'pipe', 'ignore'] });
  children.push(child);
  // started once it says so (the report handler is installed before user code runs)
  await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
  return child;
}

test.before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'mailctl-stuck-'));
});

test.after(async () => {
  children.forEach((c) => c.kill('SIGKILL'));
  await rm(dir, { recursive: true, force: true });
});

test('an idle event loop: the open handles it waits for, and the report file is cleaned up', async () => {
  const child = await nodeChild('require("net").createServer().listen(0, "127.0.0.1", () => console.log("up"))');
  // on a busy machine the child may still be finishing its start-up after "up": let it fall asleep first
  for (let i = 0; i < 50 && process.platform === 'linux'; i++) {
    if (/^State:\s*S/m.test(await readFile(`/proc/${child.pid}/status`, 'utf8').catch(() => ''))) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const text = await describeStuckProcess(child, dir);
  assert.match(text, `pid ${child.pid}:`);
  if (process.platform === 'linux') assert.match(text, /main thread: S \(sleeping\)/);
  assert.match(text, /the event loop is idle; active handles: .*tcp/);
  assert.equal(await readdir(dir), [], 'no report left behind');
});

test('a blocked main thread: the kernel view, and no report', async () => {
  const child = await nodeChild('console.log("up"); for (;;) {}');
  const text = await describeStuckProcess(child, dir);
  if (process.platform === 'linux') assert.match(text, /main thread: R \(running\)/);
  assert.match(text, /no diagnostic report within 3 s/);
});

test.run();
