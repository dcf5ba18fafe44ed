/**
 * The group's view (three replicas, six mailboxes): `mailctl status` asked of a replica that does not reconcile shows
 * every replica and every server with the owner and epoch the `leases` table says, the state of servers it does not
 * own coming from their owners' snapshots; a replica started with a folder that differs from the applied one shows
 * config-drift in its row of `status` and on `/readyz?verbose`, and stays ready. The status page's data says the same.
 */
import { cp } from 'node:fs/promises';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { DaemonStatus } from '../../../src/api/index.js';
import { ensureChromium } from '../../harness/chromium.js';
import { startGroup, type Group } from '../../harness/group.js';
import { cli, eventually } from '../../harness/mailctl.js';

let group: Group;

test.before(async () => {
  group = await startGroup({ mailboxes: 6 });
  await group.start('r1'); // the first replica holds the reconciler lease
  await group.apply('r1');
  await group.start('r2');
  // r3's folder lacks one mailbox the others have: it follows the applied generation all the same
  const drifted = path.join(group.stack.ws.root, 'servers-drifted.d');
  await cp(group.stack.ws.dir, drifted, { recursive: true, filter: (f) => path.basename(f) !== 'imap-5.yaml' });
  await group.start('r3', ['--dir', drifted]);
  await group.allRunning();
});

test.after(async () => {
  await group?.stop();
});

const db = (sql: string) => group.stack.pg.admin(sql, group.stack.pg.database);
const leases = async () =>
  Object.fromEntries(
    (
      (await db(
        `SELECT name, holder, epoch::int AS epoch FROM mailctl.leases WHERE expires_at > now() ORDER BY name`,
      )) as { name: string; holder: string; epoch: number }[]
    ).map((l) => [l.name, { holder: l.holder, epoch: l.epoch }]),
  );
const appliedGeneration = async () => (await db(`SELECT generation::int AS g FROM mailctl.applied`))[0]!.g as number;

const statusOf = async (id: string): Promise<DaemonStatus> => {
  const r = await cli(['status', '--json'], group.replica(id).ws.env);
  assert.is(r.code, 0, r.stdout + r.stderr);
  return JSON.parse(r.stdout) as DaemonStatus;
};

/** r2's status once the group is settled: every replica has written a snapshot of the applied generation. */
async function settledStatus(): Promise<{ status: DaemonStatus; leases: Awaited<ReturnType<typeof leases>> }> {
  const generation = await appliedGeneration();
  return eventually(
    async () => {
      const before = await leases();
      const status = await statusOf('r2');
      const after = await leases();
      const settled =
        JSON.stringify(before) === JSON.stringify(after) &&
        status.group?.replicas.length === 3 &&
        status.group.replicas.every((r) => r.generation === generation) &&
        status.servers.every((s) => s.state === 'running');
      return settled && { status, leases: after };
    },
    20_000,
    'the group settled (every replica on the applied generation, every loop running)',
  );
}

test('status --json from a replica that does not reconcile: every replica, every server with its lease', async () => {
  const { status, leases: table } = await settledStatus();
  const group = status.group!;
  assert.is(group.replica, 'r2');
  assert.ok(group.readAt, 'read from the store');
  assert.equal(
    group.replicas.map((r) => [r.id, r.live, r.reconciler, r.drift]),
    [
      ['r1', true, true, false],
      ['r2', true, false, false],
      ['r3', true, false, true],
    ],
  );
  for (const r of group.replicas) {
    const owned = Object.entries(table).filter(([name, l]) => name.startsWith('imap/') && l.holder === r.id).length;
    assert.is(r.loopsOwned, owned, `${r.id} owns ${owned}`);
    assert.ok(r.heartbeatAgeS >= 0 && r.heartbeatAgeS < 3, `${r.id}: heartbeat ${r.heartbeatAgeS} s ago`);
  }
  const imap = status.servers.filter((s) => s.id.startsWith('imap/'));
  assert.is(imap.length, 6);
  for (const s of imap) {
    assert.is(s.owner, table[s.id]?.holder, `${s.id}: owner`);
    assert.is(s.epoch, table[s.id]?.epoch, `${s.id}: epoch`);
    assert.is(s.state, 'running', `${s.id}: state`);
    assert.ok(s.since, `${s.id}: since`);
  }
  // r2 runs at most ceil(1.25 × 6 / 3) of them: the rest show what their owners wrote
  assert.ok(imap.filter((s) => s.owner !== 'r2').length >= 3, 'servers of other replicas are shown');
});

test('status text: a replicas table, and OWNER and EPOCH columns', async () => {
  const { leases: table } = await settledStatus();
  const r = await cli(['status'], group.replica('r2').ws.env);
  assert.is(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /^replicas \(asked: r2; read \S+\):$/m);
  assert.match(r.stdout, /^ {2}REPLICA +LIVE +HEARTBEAT +LOOPS +RECONCILER +GENERATION +DRIFT$/m);
  assert.match(r.stdout, /^ {2}r1 +yes +[\d.]+ s ago +\d+ +yes +\d+ +-$/m);
  assert.match(r.stdout, /^ {2}r3 +yes +[\d.]+ s ago +\d+ +- +\d+ +config-drift$/m);
  assert.match(r.stdout, /^SERVER +STATE +OWNER +EPOCH +NAME$/m);
  for (const [name, lease] of Object.entries(table).filter(([n]) => n.startsWith('imap/')))
    assert.match(r.stdout, new RegExp(`^${name} +running +${lease.holder} +${lease.epoch} +\\S`, 'm'), name);
});

test("config-drift: in the drifting replica's row, GitHub's warnings and /readyz?verbose, which stays 200", async () => {
  const generation = await appliedGeneration();
  const own = await statusOf('r3');
  assert.equal(
    own.group?.replicas.filter((r) => r.drift).map((r) => r.id),
    ['r3'],
  );
  const github = await cli(['status', '--format', 'github'], group.replica('r2').ws.env);
  assert.match(
    github.stdout,
    `::warning title=mailctl config-drift::replica r3: its folder differs from the applied generation ${generation}`,
  );
  assert.not.match(github.stdout, 'config-drift::replica r1');
  const r3 = group.replica('r3').daemon.url;
  const verbose = await fetch(`${r3}/readyz?verbose`);
  const text = await verbose.text();
  assert.is(verbose.status, 200, text);
  assert.match(text, `[+]config-drift: the folder differs from the applied generation ${generation}`);
  assert.match(text, 'readyz check passed');
  assert.is((await fetch(`${r3}/readyz`)).status, 200);
  const r2 = await (await fetch(`${group.replica('r2').daemon.url}/readyz?verbose`)).text();
  assert.not.match(r2, 'config-drift');
});

test("the status page data: replicas, and each server's owner", async () => {
  const { leases: table } = await settledStatus();
  const page = (await (await fetch(`${group.replica('r2').daemon.url}/status.json`)).json()) as {
    group: { replica: string; replicas: { id: string; live: boolean; drift: boolean; reconciler: boolean }[] };
    servers: { id: string; owner: string | null }[];
  };
  assert.is(page.group.replica, 'r2');
  assert.equal(
    page.group.replicas.map((r) => [r.id, r.live, r.reconciler, r.drift]),
    [
      ['r1', true, true, false],
      ['r2', true, false, false],
      ['r3', true, false, true],
    ],
  );
  for (const s of page.servers.filter((s) => s.id.startsWith('imap/'))) assert.is(s.owner, table[s.id]?.holder, s.id);
});

test('the status page in a browser: the replicas table, and the owner in each server row', async () => {
  const { leases: table } = await settledStatus();
  const browser = await chromium.launch({
    executablePath: await ensureChromium(),
    args: ['--headless', '--no-sandbox'],
  });
  try {
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on('pageerror', (err) => problems.push(err.message));
    page.on('console', (m) => /Content Security Policy/.test(m.text()) && problems.push(m.text()));
    await page.goto(`${group.replica('r2').daemon.url}/`);
    await eventually(async () => (await page.locator('tr.replica').count()) === 3, 10_000, 'three replica rows');
    assert.match(await page.locator('#group-title').innerText(), /from r2/);
    assert.match(
      await page.locator('tr.replica[data-replica="r1"]').innerText(),
      /^r1\s+live\s+\d+ s ago\s+\d+\s+yes\s+none$/,
    );
    assert.match(await page.locator('tr.replica[data-replica="r3"]').innerText(), /config-drift/);
    for (const [name, lease] of Object.entries(table).filter(([n]) => n.startsWith('imap/')))
      assert.match(
        await page.locator(`tr.server[data-server="${name}"] .id`).innerText(),
        `${name} · on ${lease.holder}`,
      );
    assert.equal(problems, [], 'no script or policy errors');
  } finally {
    await browser.close();
  }
});

test.run();
