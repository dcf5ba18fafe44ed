/**
 * A rolling restart of a group of three replicas (SIGTERM, start again, next) while messages arrive: a replica that
 * stops releases its leases at once, so its mailboxes are taken over within two seconds, and every message arrives
 * exactly once.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { assertGroupReport, startRunningGroup, type Group } from '../../harness/group.js';
import { eventually } from '../../harness/mailctl.js';

let group: Group;

test.before(async () => {
  group = await startRunningGroup({ replicas: 3 });
});

test.after(async () => {
  await group?.stop();
});

/** Leases of imap servers held by `replica` and not expired. */
const held = async (replica: string) =>
  (
    await group.stack.pg.admin(
      `SELECT count(*)::int AS n FROM mailctl.leases WHERE holder = '${replica}' AND name LIKE 'imap/%' AND expires_at > now()`,
      group.stack.pg.database,
    )
  )[0]!.n as number;

test('a rolling restart of all replicas mid-stream: each SIGTERM hands over within 2 s; each message once', async () => {
  const handovers: number[] = [];
  const ids = await group.stream(200, async () => {
    for (const id of ['r1', 'r2', 'r3']) {
      const before = await held(id);
      const stopped = Date.now();
      const { code } = await group.replica(id).daemon.stop('SIGTERM');
      assert.is(code, 0, `${id} exits 0`);
      assert.is(await held(id), 0, `${id} released its leases as it stopped`);
      if (before > 0) {
        await group.allRunning(10_000);
        handovers.push(Date.now() - stopped);
      }
      await group.start(id);
    }
  });
  console.log(`  takeover after SIGTERM: ${handovers.join(', ')} ms`);
  for (const ms of handovers) assert.ok(ms < 2_000 + 1_000, `taken over in ${ms} ms (goal < 2 s after the exit)`);
  await eventually(
    async () => (await held('r1')) > 0 && (await held('r3')) > 0,
    20_000,
    'the restarted replicas own mailboxes again',
  );
  assertGroupReport('rolling restart', await group.check(ids));
});

test.run();
