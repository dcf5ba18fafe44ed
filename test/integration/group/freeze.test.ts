/**
 * A group of three replicas (lease TTL 3 s): SIGSTOP one for longer than its TTL while messages arrive, then SIGCONT.
 * The others take its mailboxes over once its leases expired; the frozen replica wakes believing it holds them, but
 * its own clock says its renewal is too old, so its loops stop without another change on the mail server, any write
 * it had in flight is fenced off by the newer epochs, and it rejoins: mailboxes move back to it with new epochs.
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

/** How many loops replica `id` runs. */
const running = async (id: string): Promise<number> => (await group.running()).get(id)?.size ?? 0;

test('SIGSTOP one replica past its TTL, then SIGCONT: fenced off, stops its loops, rejoins; each message once', async () => {
  const frozen = group.replica('r2');
  const ids = await group.stream(200, async () => {
    assert.ok((await running('r2')) > 0, 'r2 owned mailboxes');
    frozen.daemon.child.kill('SIGSTOP');
    // the others take over r2's mailboxes once its leases expired
    await group.stack.pg.admin(`SELECT pg_sleep(${group.ttlS + 3})`, group.stack.pg.database);
    const { rows } = await leasesOf('r2');
    assert.is(rows, 0, 'none of its leases is r2 any more');
    frozen.daemon.child.kill('SIGCONT');
  });
  await eventually(() => /leases not renewed for 2\/3 of their TTL/.test(frozen.daemon.output()), 10_000, 'r2 stops');
  await eventually(async () => (await running('r2')) > 0, 20_000, 'r2 rejoins and owns mailboxes again');
  const report = await group.check(ids);
  assertGroupReport('SIGSTOP past the TTL', report);
  assert.ok(report.epochs > group.users.length, 'mailboxes changed owners (new epochs)');
});

async function leasesOf(replica: string): Promise<{ rows: number }> {
  const rows = await group.stack.pg.admin(
    `SELECT name FROM mailctl.leases WHERE holder = '${replica}' AND name LIKE 'imap/%' AND expires_at > now()`,
    group.stack.pg.database,
  );
  return { rows: rows.length };
}

test.run();
