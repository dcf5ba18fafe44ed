/**
 * Runs the real `mailctl` binary (bin/mailctl.js → dist/, built by `npm test`) as separate processes: the daemon in
 * the background and one-shot commands, each with its own state, secrets and config folders.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { testCaRoot } from './ca.js';
import { describeStuckProcess, reportFlags } from './stuck-process.js';

export const BIN = fileURLToPath(new URL('../../bin/mailctl.js', import.meta.url));

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** A scratch workspace: `servers.d/`, `state/`, `secrets/`. */
export interface Workspace {
  root: string;
  dir: string;
  stateDir: string;
  secretsDir: string;
  env: NodeJS.ProcessEnv;
  writeServer(name: string, yaml: string): Promise<void>;
  removeServer(name: string): Promise<void>;
  writeSecret(name: string, value: string): Promise<string>;
  cleanup(): Promise<void>;
}

export async function createWorkspace(): Promise<Workspace> {
  const root = await mkdtemp(path.join(tmpdir(), 'mailctl-ws-'));
  const dir = path.join(root, 'servers.d');
  const stateDir = path.join(root, 'state');
  const secretsDir = path.join(root, 'secrets');
  await mkdir(dir);
  await mkdir(secretsDir);
  return {
    root,
    dir,
    stateDir,
    secretsDir,
    env: { ...process.env, NO_COLOR: '1', MAILCTL_STATE_DIR: stateDir, MAILCTL_SERVER: '', MAILCTL_TOKEN: '' },
    writeServer: (name, yaml) => writeFile(path.join(dir, name), yaml),
    removeServer: (name) => rm(path.join(dir, name), { force: true }),
    async writeSecret(name, value) {
      const file = path.join(secretsDir, name);
      await writeFile(file, value, { mode: 0o600 });
      return file;
    },
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
}

/** `bin`: another mailctl than this checkout's, e.g. one installed from the packed tarball. */
export function cli(args: string[], env: NodeJS.ProcessEnv, cwd?: string, bin = BIN): Promise<CliResult> {
  return new Promise((resolve) => {
    // MAILCTL_CLI_NODE_FLAGS: extra node flags for CLI processes, for profiling a benchmark (e.g. `--cpu-prof`)
    const nodeFlags = process.env.MAILCTL_CLI_NODE_FLAGS?.split(' ').filter(Boolean) ?? [];
    const child = spawn(process.execPath, [...nodeFlags, bin, ...args], {
      env,
      cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** A command still running: its output so far, a wait for a line of it, and its result. */
export interface RunningCli {
  output(): string;
  /** Resolves with the first match of `pattern` in stdout (as it arrives); rejects after `ms` or at exit. */
  waitFor(pattern: RegExp, ms?: number): Promise<RegExpExecArray>;
  done: Promise<CliResult>;
}

/** Runs a command in the background (one that waits for someone, e.g. `auth login`). */
export function cliRunning(args: string[], env: NodeJS.ProcessEnv, bin = BIN): RunningCli {
  const child = spawn(process.execPath, [bin, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  let stdout = '';
  let stderr = '';
  const listeners = new Set<() => void>();
  child.stdout.on('data', (d) => ((stdout += d), listeners.forEach((l) => l())));
  child.stderr.on('data', (d) => (stderr += d));
  const done = new Promise<CliResult>((resolve) =>
    child.on('close', (code) => {
      running.delete(child);
      resolve({ code: code ?? -1, stdout, stderr });
      listeners.forEach((l) => l());
    }),
  );
  let exited = false;
  void done.then(() => (exited = true));
  return {
    output: () => stdout + stderr,
    done,
    waitFor: (pattern, ms = 20_000) =>
      new Promise((resolve, reject) => {
        const check = () => {
          const m = pattern.exec(stdout);
          if (m) finish(() => resolve(m));
          else if (exited)
            finish(() =>
              reject(
                new Error(`exited without printing ${pattern}:
${stdout}${stderr}`),
              ),
            );
        };
        const finish = (outcome: () => void) => {
          clearTimeout(timer);
          listeners.delete(check);
          outcome();
        };
        const timer = setTimeout(
          () =>
            finish(() =>
              reject(
                new Error(`no ${pattern} within ${ms} ms:
${stdout}${stderr}`),
              ),
            ),
          ms,
        );
        listeners.add(check);
        check();
      }),
  };
}

export interface DaemonProcess {
  child: ChildProcess;
  url: string;
  token: string;
  /** Everything the daemon printed so far (JSON log lines and messages). */
  output(): string;
  /** How many reconciles it has run so far (each logs one line with its outcome). */
  reconciles(): number;
  api(
    method: 'GET' | 'POST',
    route: string,
    body?: unknown,
    token?: string | null,
  ): Promise<{ status: number; body: any }>;
  /** Sends a signal and waits for the exit; returns the exit code and how long it took. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; ms: number }>;
  kill(): Promise<void>;
}

/** How long a daemon may take to print its listening line (it normally takes well under a second). */
const START_TIMEOUT_MS = 30_000;

const running = new Set<ChildProcess>();
process.on('exit', () => running.forEach((c) => c.kill('SIGKILL')));

export async function startDaemon(
  ws: Workspace,
  extraArgs: string[] = [],
  env: NodeJS.ProcessEnv = {},
  bin = BIN,
): Promise<DaemonProcess> {
  const args = [
    'run',
    '--dir',
    ws.dir,
    '--state-dir',
    ws.stateDir,
    '--secrets-dir',
    ws.secretsDir,
    '--listen',
    '127.0.0.1:0',
    // the harness's private CAs (Dovecot's, the SMTP server's) live there
    '--ca-dir',
    testCaRoot(),
    ...extraArgs,
  ];
  // MAILCTL_DAEMON_NODE_FLAGS: extra node flags for the daemon only, for profiling a benchmark (e.g. `--cpu-prof`)
  const nodeFlags = process.env.MAILCTL_DAEMON_NODE_FLAGS?.split(' ').filter(Boolean) ?? [];
  const reportDir = path.join(ws.root, 'reports');
  const child = spawn(process.execPath, [...reportFlags(reportDir), ...nodeFlags, bin, ...args], {
    env: { ...ws.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  let text = '';
  child.stdout.on('data', (d) => (text += d));
  child.stderr.on('data', (d) => (text += d));
  const exited = new Promise<number | null>((resolve) =>
    child.on('exit', (code) => (running.delete(child), resolve(code))),
  );
  const url = await new Promise<string>((resolve, reject) => {
    let settled = false;
    const settle = (outcome: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      outcome();
    };
    const check = () => {
      const m = /listening on (http:\/\/\S+)/.exec(text);
      if (m) settle(() => resolve(m[1]!));
    };
    // At the deadline the daemon is described (what each thread waits for) before the verdict: output that arrived
    // meanwhile still counts (after a pause of the whole machine the timer fires before the pipes are read), and a
    // daemon that really is stuck is killed, so the test fails at once instead of being kept alive by its pipes.
    const timer = setTimeout(() => {
      void describeStuckProcess(child, reportDir).then((what) => {
        check();
        if (settled) return;
        child.kill('SIGKILL');
        settle(() =>
          reject(
            new Error(
              `daemon did not print its listening line within ${START_TIMEOUT_MS / 1000} s; it printed:\n${text}\n${what}`,
            ),
          ),
        );
      });
    }, START_TIMEOUT_MS);
    child.stdout.on('data', check);
    child.stderr.on('data', check);
    void exited.then((code) =>
      settle(() => reject(new Error(`daemon exited with ${code} before listening:\n${text}`))),
    );
  });
  const token = (await readFile(path.join(ws.stateDir, 'api-token'), 'utf8')).trim();
  return {
    child,
    url,
    token,
    output: () => text,
    reconciles: () => (text.match(/"trigger":"reconcile"/g) ?? []).length,
    async api(method, route, body, tokenOverride) {
      const auth = tokenOverride === null ? undefined : (tokenOverride ?? token);
      const res = await fetch(`${url}${route}`, {
        method,
        headers: {
          ...(auth && { authorization: `Bearer ${auth}` }),
          ...(body !== undefined && { 'content-type': 'application/json' }),
        },
        ...(body !== undefined && { body: JSON.stringify(body) }),
      });
      const raw = await res.text();
      let parsed: unknown = raw;
      try {
        parsed = JSON.parse(raw);
      } catch {
        /* text answer */
      }
      return { status: res.status, body: parsed };
    },
    async stop(signal = 'SIGTERM') {
      const started = Date.now();
      child.kill(signal);
      const code = await exited;
      return { code, ms: Date.now() - started };
    },
    async kill() {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Polls `check` until it returns a truthy value or the time is up. */
export async function eventually<T>(
  check: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  timeoutMs = 20_000,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
