/**
 * Runs the `run:` scripts of examples/ci/github-actions.yml as GitHub would (bash -eo pipefail, GITHUB_ACTIONS=true,
 * GITHUB_STEP_SUMMARY and GITHUB_OUTPUT files), with `mailctl` on PATH: the trusted job's `state pull` against a real
 * daemon, then the pull-request job's validate and plan on examples/servers.d and on a broken copy.
 */
import { spawn } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BIN, createWorkspace, startDaemon, type DaemonProcess, type Workspace } from '../harness/mailctl.js';
import { exampleFile, workflowCommands } from './commands.js';

interface StepRun {
  code: number;
  stdout: string;
  stderr: string;
  outputs: string;
  summary: string;
}

const { workflow } = await workflowCommands();
const step = (job: string, name: string) => {
  const found = workflow.jobs[job].steps.find((s: { name?: string }) => s.name === name);
  if (!found?.run) throw new Error(`no run step "${name}" in job ${job}`);
  return found as { run: string; env?: Record<string, string> };
};

let root = '';
let ws: Workspace;
let daemon: DaemonProcess;
let binDir = '';

/** One step in `repo` (the checkout): its script, its job's and its own `env:` with `${{ … }}` replaced from `context`. */
async function runStep(
  repo: string,
  job: string,
  name: string,
  context: Record<string, string> = {},
): Promise<StepRun> {
  const { run, env = {} } = step(job, name);
  const files = await mkdtemp(path.join(root, 'step-'));
  const outputFile = path.join(files, 'output');
  const summaryFile = path.join(files, 'summary.md');
  await writeFile(outputFile, '');
  await writeFile(summaryFile, '');
  const stepEnv = Object.fromEntries(
    Object.entries({ ...workflow.jobs[job].env, ...env }).map(([k, v]) => [
      k,
      String(v).replace(/\$\{\{[^}]*\}\}/g, context[k] ?? ''),
    ]),
  );
  const script = path.join(files, 'script.sh');
  await writeFile(script, run);
  const child = spawn('bash', ['--noprofile', '--norc', '-eo', 'pipefail', script], {
    cwd: repo,
    env: {
      PATH: `${binDir}:${process.env.PATH}`,
      HOME: files,
      NO_COLOR: '1',
      GITHUB_ACTIONS: 'true',
      GITHUB_STEP_SUMMARY: summaryFile,
      GITHUB_OUTPUT: outputFile,
      MAILCTL_STATE_DIR: path.join(files, 'no-daemon-here'),
      ...stepEnv,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const code = await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? -1)));
  return {
    code,
    stdout,
    stderr,
    outputs: await readFile(outputFile, 'utf8'),
    summary: await readFile(summaryFile, 'utf8'),
  };
}

/** A checkout: servers.d copied from `from`, plus the state file the trusted job published. */
async function checkout(name: string, from: string): Promise<string> {
  const repo = path.join(root, name);
  await cp(from, path.join(repo, 'servers.d'), { recursive: true });
  await cp(path.join(root, 'published', 'state.json'), path.join(repo, 'state.json'));
  return repo;
}

test.before(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'mailctl-gha-'));
  binDir = path.join(root, 'bin');
  await mkdir(binDir);
  await writeFile(path.join(binDir, 'mailctl'), `#!/bin/sh\nexec "${process.execPath}" "${BIN}" "$@"\n`, {
    mode: 0o755,
  });
  ws = await createWorkspace(); // the daemon's folder: nothing applied yet
  daemon = await startDaemon(ws);
});

test.after(async () => {
  await daemon?.stop();
  await ws?.cleanup();
  await rm(root, { recursive: true, force: true });
});

test('the trusted job pulls the running state from the daemon (token from MAILCTL_TOKEN)', async () => {
  const published = path.join(root, 'published');
  await mkdir(published);
  const pulled = await runStep(published, 'apply', 'Pull the running state', { MAILCTL_TOKEN: daemon.token });
  assert.is(pulled.code, 1, 'without MAILCTL_SERVER it must fail, not write an empty state');
  const r = await runStep(published, 'apply', 'Pull the running state', {
    MAILCTL_TOKEN: daemon.token,
    MAILCTL_SERVER: daemon.url,
  });
  assert.is(r.code, 0, r.stderr);
  const state = JSON.parse(await readFile(path.join(published, 'state.json'), 'utf8'));
  assert.is(state.kind, 'mailctl-state');
  assert.not.ok(JSON.stringify(state).includes(daemon.token), 'the token is not in the state file');
});

test('pull request, examples/servers.d: validate passes; plan exits 2 inside, the step succeeds with changes=true and a summary', async () => {
  const repo = await checkout('pr-examples', fileURLToPath(exampleFile('servers.d/')));
  const validate = await runStep(repo, 'plan', 'Validate');
  assert.is(validate.code, 0, validate.stdout + validate.stderr);
  assert.not.match(validate.stdout, /^::error/m);

  const plan = await runStep(repo, 'plan', 'Plan', { STATE_FILE: 'state.json' });
  assert.is(plan.code, 0, plan.stdout + plan.stderr);
  assert.match(plan.outputs, /^changes=true$/m);
  assert.match(plan.stdout, /the running state saved in state\.json/);
  assert.match(plan.stdout, /\+ imap\/support will be created/);
  assert.match(plan.summary, /^## mailctl plan$/m);
  assert.match(plan.summary, /\| :-: \| --- \| --- \| --- \|/);
  assert.match(plan.summary, /\| `\+` \| `imap\/support` \| will be created \|/);
  assert.match(plan.summary, /<details><summary><code>\+ smtp\/noreply<\/code> will be created<\/summary>/);
  assert.match(plan.summary, /```diff\n/);
});

test('pull request, the same folder as the daemon: no changes, changes=false', async () => {
  const repo = await checkout('pr-same', ws.dir);
  const plan = await runStep(repo, 'plan', 'Plan', { STATE_FILE: 'state.json' });
  assert.is(plan.code, 0, plan.stdout + plan.stderr);
  assert.match(plan.outputs, /^changes=false$/m);
  assert.match(plan.summary, /No changes/);
});

test('pull request, a broken copy: ::error annotations with file, line and column; validate and plan fail the job', async () => {
  const repo = await checkout('pr-broken', fileURLToPath(exampleFile('servers.d/')));
  const file = path.join(repo, 'servers.d', 'support.yaml');
  const lines = (await readFile(file, 'utf8')).split('\n');
  const at = lines.findIndex((l) => l.startsWith('storageFolder:'));
  lines[at] = 'storageFolder: INBOX';
  await writeFile(file, lines.join('\n'));

  const validate = await runStep(repo, 'plan', 'Validate');
  assert.is(validate.code, 1);
  const expected = `::error file=servers.d/support.yaml,line=${at + 1},col=16,title=mailctl storage-folder-equals-folder::`;
  assert.ok(validate.stdout.includes(expected), `expected ${expected} in\n${validate.stdout}`);

  const plan = await runStep(repo, 'plan', 'Plan', { STATE_FILE: 'state.json' });
  assert.is(plan.code, 1, 'an invalid folder is an error (1), not "changes" (2)');
  assert.ok(plan.stdout.includes(expected));
  assert.is(plan.outputs, '');
});

test('pull request before anything was published: the Plan step falls back to --state empty', async () => {
  const repo = await checkout('pr-first', fileURLToPath(exampleFile('servers.d/')));
  const plan = await runStep(repo, 'plan', 'Plan', { STATE_FILE: 'empty' });
  assert.is(plan.code, 0, plan.stderr);
  assert.match(plan.stdout, /an empty running state \(first deployment\)/);
  assert.match(plan.outputs, /^changes=true$/m);
});

test.run();
