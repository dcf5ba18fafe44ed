/**
 * A full disk under a real daemon (small tmpfs mounts, real Dovecot): the state folder's inbound files on a full disk
 * make the server `failed` with class `local` saying what and where, until space is back; the directory sink on a full
 * disk makes the server pause with class `sink`, leaves no temporary file behind (a partial one would hold the space
 * the next delivery needs), and delivers everything once space is freed.
 */
import { mkdir, readdir } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { flowYaml, imapYaml } from '../harness/fixtures.js';
import { cli, eventually, type DaemonProcess } from '../harness/mailctl.js';
import { startMailStack, type MailStack } from '../harness/stack.js';
import { mountTmpfs, type Tmpfs } from '../harness/tmpfs.js';

const USER = 'support@example.com';
const BURST = 20;

let stack: MailStack;
let daemon: DaemonProcess;
let inboundDisk: Tmpfs;
let sinkDisk: Tmpfs;

test.before(async () => {
  stack = await startMailStack({ users: { [USER]: 'support-pass' } });
  const { ws, dovecot } = stack;
  await mkdir(ws.stateDir, { recursive: true, mode: 0o700 });
  inboundDisk = await mountTmpfs(path.join(ws.stateDir, 'inbound'), 256 * 1024);
  sinkDisk = await mountTmpfs(path.join(ws.stateDir, 'queues'), 2 * 1024 * 1024);
  await ws.writeServer('flow.yaml', flowYaml('main', 'queues'));
  await ws.writeServer(
    'imap.yaml',
    imapYaml({
      shortName: 'support',
      user: USER,
      port: dovecot.ports.imap,
      caFile: dovecot.caFile,
      password: await stack.ref(USER),
      storageFolder: 'ContactStorage',
      pollSchedule: '*/10 * * * * *',
    }),
  );
});

test.after(async () => {
  await daemon?.kill().catch(() => undefined);
  await inboundDisk?.unmount();
  await sinkDisk?.unmount();
  await stack?.stop();
});

const server = async () => {
  const status = await daemon.api('GET', '/v1/status');
  return status.body.servers.find((s: { id: string }) => s.id === 'imap/support');
};
/** Every file under a folder, recursively (relative names). */
async function files(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true }))
    if (e.isFile()) out.push(path.relative(dir, path.join(e.parentPath, e.name)));
  return out;
}
const temps = async (dir: string) => (await files(dir)).filter((f) => f.endsWith('.tmp'));
const delivered = async () => (await files(sinkDisk.dir)).filter((f) => f.endsWith('.json')).length;

function mail(i: number): string {
  const body = `${'Lorem ipsum dolor sit amet, consectetur adipiscing elit. '.repeat(700)}\r\n`; // ~40 KB
  return [`From: c@example.org`, `To: ${USER}`, `Subject: burst ${i}`, `Message-ID: <burst-${i}@x>`, '', body].join(
    '\r\n',
  );
}

test("the state folder's disk full: class local with what and where, failed until space is back", async () => {
  await inboundDisk.fill();
  daemon = await stack.startDaemon(['--no-watch']);
  const applied = await cli(['apply', '--dir', stack.ws.dir], stack.ws.env);
  assert.is(applied.code, 0, applied.stdout + applied.stderr);
  const failed = await eventually(
    async () => {
      const s = await server();
      return s?.lastError ? s : null;
    },
    20_000,
    'a failed poll',
  );
  assert.is(failed.state, 'failed');
  assert.is(failed.lastError.class, 'local');
  assert.match(failed.lastError.message, 'no space left on device (ENOSPC)');
  assert.match(failed.lastError.message, inboundDisk.dir, 'where');
  assert.equal(await temps(inboundDisk.dir), [], 'no temporary file of the failed checkpoint write is left');
  await inboundDisk.free();
  await eventually(async () => (await server())?.state === 'running', 20_000, 'running again');
});

test('the sink disk full: class sink, no temporary file left, and the burst is delivered once space is freed', async () => {
  await stack.dovecot.deliver(USER, mail(0));
  await eventually(async () => (await delivered()) === 1, 20_000, 'the first message');
  await sinkDisk.fill();
  for (let i = 1; i <= BURST; i++) await stack.dovecot.deliver(USER, mail(i));
  const down = await eventually(
    async () => {
      const s = await server();
      return s?.lastError?.class === 'sink' ? s : null;
    },
    20_000,
    'the sink reported down',
  );
  assert.is(down.state, 'backoff');
  assert.match(down.lastError.message, 'no space left on device (ENOSPC)');
  await eventually(async () => (await temps(sinkDisk.dir)).length === 0, 5_000, 'no .tmp in the sink');
  assert.is(await delivered(), 1);
  await sinkDisk.free();
  await eventually(async () => (await delivered()) === BURST + 1, 60_000, 'the burst delivered');
  assert.equal(await temps(sinkDisk.dir), []);
  await eventually(async () => (await server())?.state === 'running', 20_000, 'running again');
});

test.run();
