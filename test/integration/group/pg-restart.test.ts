/**
 * A group of three replicas: `pg_ctl restart -m immediate` in the middle of the stream. Every replica loses its
 * store at once: none can renew, each stops its loops by its own clock, and once the database is back each renews the
 * leases nobody took meanwhile and resumes from its checkpoints.
 */
import { test } from 'uvu';
import { assertGroupReport, startRunningGroup, type Group } from '../../harness/group.js';

let group: Group;

test.before(async () => {
  group = await startRunningGroup({ replicas: 3 });
});

test.after(async () => {
  await group?.stop();
});

test('PostgreSQL restarted immediately mid-stream: every replica resumes, each message once', async () => {
  const ids = await group.stream(200, () => group.stack.pg.restart({ mode: 'immediate' }));
  await group.allRunning();
  assertGroupReport('pg_ctl restart -m immediate', await group.check(ids));
});

test.run();
