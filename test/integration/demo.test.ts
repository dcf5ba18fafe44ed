/**
 * `npm run demo -- --once`: the README's main job runs the whole tour against real servers and ends cleanly; with
 * `--store postgres`, the same tour on a private PostgreSQL, its queued rows shown and one claimed.
 */
import { spawn } from 'node:child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

async function tour(args: string[]): Promise<string> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/demo.ts', '--once', ...args], {
    env: { ...process.env, NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.is(code, 0, out);
  assert.match(out, /valid \(5 servers, 2 flows/);
  assert.match(out, /Plan: 5 to create/);
  assert.match(out, /applied: applied 5 change\(s\)/);
  for (const queue of [
    'support/vip',
    'support/billing',
    'support/support',
    'support/auto-replies',
    'sales/partners',
    'sales/sales',
  ])
    assert.match(out, new RegExp(`^${queue} `, 'm'));
  assert.match(out, /support@example.com: 6\/6 INBOX messages \\Seen, 6 in ContactStorage/);
  assert.match(out, /SMTP server received: from support@example.com to dave@example.net/);
  assert.match(out, /SMTP server received: from noreply@example.com to erin@example.net/);
  assert.match(out, /including the sent reply \(flags: [^)]*\\Seen/);
  assert.match(out, /Tour finished/);
  assert.not.match(out, /support-demo-password|demo-client-secret|demo-refresh-token/);
  return out;
}

test('the demo tour runs end to end and exits 0', async () => {
  const out = await tour([]);
  assert.match(out, /Where they ended up \(queue files under /);
});

test('the tour with --store postgres: the state and the queues in PostgreSQL, rows shown, one claimed', async () => {
  const out = await tour(['--store', 'postgres']);
  assert.match(out, /^store: postgres postgres:\/\/mailctl@127\.0\.0\.1:\d+\/mailctl \(schema mailctl\)$/m);
  assert.match(out, /Where they ended up \(rows of mailctl\.inbound_messages\)/);
  assert.match(out, /^claimed: support\.\d+\.5\.[0-9a-f]{8} "The app crashes \(default route\)"$/m);
});

test.run();
