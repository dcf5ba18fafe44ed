/**
 * A group of three replicas (lease TTL 3 s, 20 mailboxes): SIGKILL one while 200 messages arrive. Its servers are
 * taken over by the others after its leases expire (within the TTL and a few seconds), and every message is in its
 * queue exactly once, \Seen, once in its storage folder, with no mailbox worked by two replicas in one epoch.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { assertGroupReport, startRunningGroup, type Group, type LogEntry } from '../../harness/group.js';

let group: Group;

test.before(async () => {
  group = await startRunningGroup({ replicas: 3 });
});

test.after(async () => {
  await group?.stop();
});

test('SIGKILL one replica mid-stream: its mailboxes are taken over within TTL + a few seconds, each message once', async () => {
  let tookOver = 0;
  let loggedSince = (): LogEntry[] => [];
  const ids = await group.stream(200, async () => {
    const victim = group.replica('r2');
    assert.ok((await group.running()).get('r2')!.size > 0, 'the victim owned mailboxes');
    loggedSince = group.logMark();
    const killed = Date.now();
    await victim.daemon.kill();
    group.replicas.delete('r2');
    await group.allRunning(group.ttlS * 1000 + 10_000);
    tookOver = Date.now() - killed;
  });
  const report = await group.check(ids);
  console.log(`  takeover after SIGKILL: ${tookOver} ms (TTL ${group.ttlS} s)`);
  assert.ok(tookOver <= group.ttlS * 1000 + 5_000, `taken over in ${tookOver} ms`);
  assertGroupReport('SIGKILL', report);
  // the survivors noticed the silence at its due renewal and opened sessions before its leases expired
  const steps = loggedSince().filter((e) =>
    /opening sessions for servers|took over servers|started on sessions opened in advance/.test(e.msg),
  );
  const first = (re: RegExp) => Math.min(...steps.filter((s) => re.test(s.msg)).map((s) => s.time));
  assert.ok(first(/opening sessions/) < first(/took over/), JSON.stringify(steps));
  const onPrepared = steps.filter((s) => /opened in advance/.test(s.msg)).reduce((n, s) => n + Number(s.servers), 0);
  console.log(`  loops started on sessions opened before the leases expired: ${onPrepared}`);
});

test.run();
