/**
 * The file store's lock (`daemon.lock` in the state folder) does not trust a PID alone: a leftover lock naming a live
 * process that is not its holder (the PID was reused after a reboot or a container restart) is taken over, a lock of a
 * live holder is not, and when several starts find a stale lock together exactly one of them takes it over.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LocalState, LOCK_FILE } from '../../../src/store/local.js';
import { LockHeldError } from '../../../src/store/errors.js';
import { LOCK_CHILD, lockTogether } from '../contract.js';

let root: string;
let other: ChildProcess;
let seq = 0;

test.before(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'mailctl-lock-'));
  other = spawn('sleep', ['600'], { stdio: 'ignore' }); // a live process that holds no lock
});

test.after(async () => {
  other?.kill();
  await rm(root, { recursive: true, force: true });
});

const bootId = async () => (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
const startTimeOf = async (pid: number) => {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8');
  return Number(text.slice(text.lastIndexOf(')') + 2).split(' ')[19]);
};

/** A fresh state folder whose `daemon.lock` says `record`. */
async function withLock(record: Record<string, unknown>): Promise<LocalState> {
  const local = new LocalState(path.join(root, `state-${++seq}`));
  await local.init();
  await writeFile(path.join(local.dir, LOCK_FILE), JSON.stringify({ host: hostname(), ...record }));
  return local;
}

const takes = async (local: LocalState) => {
  const lock = await local.lock();
  const written = JSON.parse(await readFile(path.join(local.dir, LOCK_FILE), 'utf8'));
  await lock.release();
  return written as { pid: number; bootId: string; startTime: number };
};

test('the lock records the boot id and the start time with the PID', async () => {
  const local = new LocalState(path.join(root, `state-${++seq}`));
  await local.init();
  const written = await takes(local);
  assert.is(written.pid, process.pid);
  assert.is(written.bootId, await bootId());
  assert.is(written.startTime, await startTimeOf(process.pid));
});

test('a leftover lock naming a live unrelated process is taken over', async () => {
  const pid = other.pid!;
  const since = new Date(Date.now() - 3_600_000).toISOString();
  const cases = {
    'the PID now belongs to a process started at another time': {
      formatVersion: '2',
      pid,
      since,
      bootId: await bootId(),
      startTime: (await startTimeOf(pid)) - 1,
    },
    'written before a reboot': { formatVersion: '2', pid, since, bootId: 'another-boot', startTime: 1 },
    'a version 1 lock written before the process with its PID started': { formatVersion: '1', pid, since },
  };
  for (const [what, record] of Object.entries(cases))
    assert.is((await takes(await withLock(record))).pid, process.pid, what);
});

test('a lock of a live holder is not taken over: LockHeldError names it', async () => {
  const pid = other.pid!;
  const cases = {
    'the process that wrote it': {
      formatVersion: '2',
      pid,
      since: new Date().toISOString(),
      bootId: await bootId(),
      startTime: await startTimeOf(pid),
    },
    'a version 1 lock written after the process started': { formatVersion: '1', pid, since: new Date().toISOString() },
  };
  for (const [what, record] of Object.entries(cases)) {
    const refused = await (await withLock(record)).lock().then(
      () => null,
      (err: Error) => err,
    );
    assert.instance(refused, LockHeldError, what);
    assert.match(refused!.message, `pid ${pid}`);
  }
});

test('starts that find a stale lock together: exactly one takes it over (in one process, 30 rounds)', async () => {
  for (let round = 0; round < 30; round++) {
    const dead = { formatVersion: '2', pid: 2 ** 22 + 7, since: new Date().toISOString(), bootId: await bootId() };
    const dir = (await withLock(dead)).dir;
    const results = await Promise.allSettled([1, 2, 3].map(() => new LocalState(dir).lock()));
    const won = results.filter((r) => r.status === 'fulfilled');
    assert.is(won.length, 1, `round ${round}: ${won.length} winners`);
    for (const r of results) if (r.status === 'rejected') assert.instance(r.reason, LockHeldError, String(r.reason));
    await (won[0] as PromiseFulfilledResult<{ release(): Promise<void> }>).value.release();
  }
});

test('daemons started together on a stale lock: exactly one takes it (four processes; before, most rounds had two)', async () => {
  const local = await withLock({ formatVersion: '1', pid: 2 ** 22 + 7, since: new Date().toISOString() });
  const child = ['--import', 'tsx', LOCK_CHILD, 'file', local.dir];
  const results = await lockTogether([child, child, child, child], path.join(root, `start-${seq}`), 2_000);
  assert.equal(results.map((r) => r.code).sort(), [0, 3, 3, 3], results.map((r) => r.output).join('\n'));
});

test.run();
