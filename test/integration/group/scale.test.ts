/**
 * Scaling a group 1 → 3 → 2 while messages arrive: the first replica owns every mailbox, two joining replicas take
 * their shares (handed over: stop, release, take with epoch + 1), one leaving (SIGTERM) gives its share back. `apply`
 * goes through a replica that does not hold the reconciler lease (it is forwarded).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { assertGroupReport, startGroup, type Group } from '../../harness/group.js';
import { cli, eventually } from '../../harness/mailctl.js';

let group: Group;

test.before(async () => {
  // without the watcher, only the forwarded apply can apply the folder change of the last test (a watching
  // reconciler could apply it first and leave the forwarded apply with nothing to do)
  group = await startGroup({ args: ['--no-watch'] });
  await group.start('r1');
  await group.apply('r1');
  await group.allRunning();
});

test.after(async () => {
  await group?.stop();
});

const owners = async () =>
  (await group.stack.pg.admin(
    `SELECT holder, count(*)::int AS n FROM mailctl.leases WHERE name LIKE 'imap/%' AND expires_at > now() GROUP BY holder`,
    group.stack.pg.database,
  )) as { holder: string; n: number }[];

test('scaling 1 → 3 → 2 mid-stream: shares move, each message once', async () => {
  const ids = await group.stream(200, async () => {
    await group.start('r2');
    await group.start('r3');
    await eventually(async () => (await owners()).length === 3, 20_000, 'three owners');
    const shares = await owners();
    for (const { holder, n } of shares) assert.ok(n <= Math.ceil((1.25 * 20) / 3), `${holder} owns ${n}: bounded`);
    await group.replica('r3').daemon.stop('SIGTERM');
    group.replicas.delete('r3');
    await eventually(async () => (await owners()).length === 2, 20_000, 'two owners');
    await group.allRunning(10_000);
  });
  assertGroupReport('scaling 1 → 3 → 2', await group.check(ids));
});

test('apply through a replica that does not reconcile is forwarded to the one that does', async () => {
  const holder = (
    await group.stack.pg.admin(`SELECT holder FROM mailctl.leases WHERE name = 'reconciler'`, group.stack.pg.database)
  )[0]!.holder as string;
  const other = holder === 'r1' ? 'r2' : 'r1';
  await group.stack.ws.removeServer('imap-19.yaml');
  const r = await cli(['apply', '--dir', group.stack.ws.dir], group.replica(other).ws.env);
  assert.is(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /applied 1 change/, r.stdout + r.stderr);
});

test.run();
