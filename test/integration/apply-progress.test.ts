/**
 * Progress of a long apply: `POST /v1/apply` with `Accept: application/x-ndjson` streams one line per verified server
 * and ends with the usual result; a plain JSON caller sees no change; `mailctl apply` shows the progress on a terminal
 * (run under `script`, which gives it one) and never in JSON, GitHub or piped output.
 */
import { spawn } from 'node:child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { flowYaml, imapYaml } from '../harness/fixtures.js';
import { BIN, cli, type DaemonProcess, type Workspace } from '../harness/mailctl.js';
import { refusedPort } from '../harness/ports.js';
import { startMailStack, type MailStack } from '../harness/stack.js';

const REACHABLE = 4;
const UNREACHABLE = 2;
const TOTAL = REACHABLE + UNREACHABLE;

let stack: MailStack;
let ws: Workspace;
let daemon: DaemonProcess;

test.before(async () => {
  const user = (i: number) => `box-${i}@example.com`;
  stack = await startMailStack({ users: Object.fromEntries(Array.from({ length: TOTAL }, (_, i) => [user(i), 'pw'])) });
  ws = stack.ws;
  const { dovecot } = stack;
  await ws.writeServer('flow.yaml', flowYaml());
  for (let i = 0; i < TOTAL; i++) {
    const port = i < REACHABLE ? dovecot.ports.imap : await refusedPort();
    const password = await stack.ref(user(i));
    await ws.writeServer(
      `imap-${i}.yaml`,
      imapYaml({ shortName: `box-${i}`, user: user(i), port, caFile: dovecot.caFile, password }),
    );
  }
  daemon = await stack.startDaemon(['--no-watch']);
});

test.after(() => stack?.stop());

async function streamApply(body: unknown): Promise<{ type: string; [k: string]: any }[]> {
  const res = await fetch(`${daemon.url}/v1/apply`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${daemon.token}`,
      'content-type': 'application/json',
      accept: 'application/x-ndjson',
    },
    body: JSON.stringify(body),
  });
  assert.is(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^application\/x-ndjson/);
  return (await res.text())
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
}

test('the API streams one progress line per verified server, then the result', async () => {
  const lines = await streamApply({ trigger: 'cli', dryRun: true });
  const progress = lines.filter((l) => l.type === 'progress');
  const last = lines.at(-1)!;
  assert.is(last.type, 'result');
  assert.is(last.formatVersion, '1');
  assert.is(last.outcome, 'dry-run');
  assert.is(last.verifications.length, TOTAL);
  assert.is(progress.length, TOTAL + 1, 'one line before the first verification, then one per server');
  assert.equal(
    progress.map((p) => p.verified),
    Array.from({ length: TOTAL + 1 }, (_, i) => i),
  );
  assert.ok(progress.every((p) => p.total === TOTAL));
  assert.is(progress.at(-1)!.failed, UNREACHABLE);
  assert.ok(progress.every((p, i) => i === 0 || p.elapsedMs >= progress[i - 1]!.elapsedMs));
});

test('a plain JSON caller sees the usual answer, with no progress', async () => {
  const answer = await daemon.api('POST', '/v1/apply', { trigger: 'cli', dryRun: true });
  assert.is(answer.status, 200);
  assert.is(answer.body.outcome, 'dry-run');
  assert.is(answer.body.type, undefined);
});

/** Runs `mailctl` with a terminal (util-linux `script` gives the child a pseudo-terminal). */
function onTerminal(args: string[]): Promise<{ code: number | null; output: string }> {
  const command = [process.execPath, BIN, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  return new Promise((resolve) => {
    const child = spawn('script', ['-qefc', command, '/dev/null'], {
      env: { ...ws.env, TERM: 'xterm' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    child.on('close', (code) => resolve({ code, output }));
  });
}

test('apply --dry-run on a terminal shows the progress in place; JSON and piped output never do', async () => {
  const shown = await onTerminal(['apply', '--dry-run', '--dir', ws.dir]);
  assert.is(shown.code, 1, shown.output); // two servers cannot be reached: a dry run that fails verification
  assert.match(
    shown.output,
    new RegExp(`verifying ${TOTAL}/${TOTAL} servers, ${UNREACHABLE} failed \\(\\d+\\.\\d s\\)`),
  );
  assert.match(shown.output, /\r\u001b\[2Kverifying 0\/6 servers/, 'rewritten in place');
  assert.match(shown.output, /dry-run: 2 server\(s\) failed verification/);

  const json = await onTerminal(['apply', '--dry-run', '--dir', ws.dir, '--json']);
  assert.not.match(json.output, /verifying/);
  assert.is(JSON.parse(json.output.slice(json.output.indexOf('{'))).outcome, 'dry-run');

  const piped = await cli(['apply', '--dry-run', '--dir', ws.dir], ws.env);
  assert.not.match(piped.stdout + piped.stderr, /verifying/);
  assert.is(piped.code, 1);
});

test.run();
