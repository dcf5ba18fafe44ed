/**
 * The partition fault, shared by its two test files: one replica of three reaches PostgreSQL through a TCP proxy that
 * is cut (`reset`: RST, new connections refused) or stops forwarding without closing (`blackhole`: only the client's
 * query timeout fires). The cut-off replica cannot renew: by its own clock it stops its loops before its leases can
 * expire and `/readyz` fails; the others take its mailboxes over after the TTL; once healed it rejoins.
 */
import * as assert from 'uvu/assert';
import { assertGroupReport, startGroup } from '../../harness/group.js';
import { eventually } from '../../harness/mailctl.js';
import { startTcpProxy } from '../../harness/tcp-proxy.js';

export async function partitionTest(kind: 'reset' | 'blackhole'): Promise<void> {
  const group = await startGroup();
  const proxy = await startTcpProxy({ host: group.stack.pg.host, port: group.stack.pg.port });
  try {
    await group.start('r1');
    await group.start('r2', ['--store', `postgres://mailctl@127.0.0.1:${proxy.port}/${group.stack.pg.database}`]);
    await group.start('r3');
    await group.apply('r1');
    await group.allRunning();
    const cut = group.replica('r2');
    let notReady = false;
    const ids = await group.stream(200, async () => {
      if (kind === 'reset') proxy.reset();
      else proxy.blackhole();
      await eventually(
        async () => {
          const r = await fetch(`${cut.daemon.url}/readyz?verbose`);
          return r.status === 503 && (await r.text()).includes('[-]leases failed');
        },
        group.ttlS * 1000 + 5_000,
        'the cut-off replica not ready',
      );
      notReady = true;
      // its mailboxes are taken over by the others after the TTL
      await eventually(
        async () =>
          (
            await group.stack.pg.admin(
              `SELECT count(*)::int AS n FROM mailctl.leases WHERE holder = 'r2' AND name LIKE 'imap/%' AND expires_at > now()`,
              group.stack.pg.database,
            )
          )[0]!.n === 0,
        group.ttlS * 1000 + 10_000,
        "r2's leases taken over",
      );
      proxy.heal();
    });
    assert.ok(notReady);
    await eventually(async () => (await fetch(`${cut.daemon.url}/readyz`)).status === 200, 20_000, 'r2 ready again');
    assertGroupReport(`partition (${kind})`, await group.check(ids));
  } finally {
    await proxy.close();
    await group.stop();
  }
}
