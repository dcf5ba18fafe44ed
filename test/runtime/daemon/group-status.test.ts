/**
 * A replica's status with its group's (withGroup): owners and epochs from the leases, the state of servers other
 * replicas own from their snapshots, its own servers and what the applied configuration decides left as they are.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { DaemonStatus, ServerStatus } from '../../../src/api/status.js';
import { withGroup } from '../../../src/runtime/daemon/status.js';
import type { GroupView, ReplicaView } from '../../../src/store/group-ports.js';

const server = (id: string, state: ServerStatus['state'], more: Partial<ServerStatus> = {}): ServerStatus => ({
  id,
  name: id,
  type: 'imap',
  host: 'imap.example.com',
  enabled: state !== 'disabled',
  state,
  since: state === 'running' ? '2026-12-03T10:00:00.000Z' : null,
  lastSuccess: null,
  lastError: null,
  disabledReason: null,
  revision: null,
  counters: { polls_ok: 3 },
  stale: false,
  credential: null,
  ...more,
});

const own: DaemonStatus = {
  dir: '/srv/servers.d',
  store: {
    kind: 'postgres',
    location: 'postgres://mailctl@db:5432/mailctl (schema mailctl)',
    available: true,
    problem: null,
  },
  systemSmtp: null,
  systemSendLoop: null,
  outbox: null,
  ready: true,
  draining: false,
  revision: null,
  lastReconcile: null,
  servers: [
    server('imap/mine', 'running'),
    server('imap/theirs', 'stopped', { stale: true }),
    server('imap/nobody', 'stopped'),
    server('imap/off', 'disabled'),
    server('imap/waiting', 'pending-approval'),
  ],
  credentials: [],
};

const replica = (id: string, snapshot: ReplicaView['snapshot'], live = true): ReplicaView => ({
  id,
  url: `http://${id}:8425`,
  host: id,
  pid: 1,
  startedAt: '2026-12-03T09:00:00.000Z',
  heartbeatAt: '2026-12-03T10:00:00.000Z',
  heartbeatAgeS: 1.234,
  live,
  sinkShared: false,
  snapshot,
});

const view: GroupView = {
  replicas: [
    replica('r1', { generation: 4, drift: true, loops: {} }), // what r1 last wrote; r1 asks, and knows better
    replica('r2', {
      generation: 4,
      drift: true,
      loops: {
        'imap/theirs': { state: 'backoff', since: '2026-12-03T09:59:00.000Z', lastSuccess: null, epoch: 3 },
        'imap/off': { state: 'running', since: '2026-12-03T09:59:00.000Z', lastSuccess: null, epoch: 1 },
      },
    }),
    replica('r3', null, false),
  ],
  leases: {
    reconciler: { holder: 'r2', epoch: 9 },
    'imap/mine': { holder: 'r1', epoch: 2 },
    'imap/theirs': { holder: 'r2', epoch: 3 },
    'imap/off': { holder: 'r2', epoch: 1 },
  },
};

const status = withGroup(own, {
  me: 'r1',
  view,
  readAt: '2026-12-03T10:00:01.000Z',
  self: { generation: 5, drift: false },
});
const byId = (id: string) => status.servers.find((s) => s.id === id)!;

test('each server has the owner and epoch of its lease, or none', () => {
  assert.equal(
    status.servers.map((s) => [s.id, s.owner, s.epoch]),
    [
      ['imap/mine', 'r1', 2],
      ['imap/theirs', 'r2', 3],
      ['imap/nobody', null, null],
      ['imap/off', 'r2', 1],
      ['imap/waiting', null, null],
    ],
  );
});

test("another replica's server shows what it wrote; this replica's own and unowned ones what its loops say", () => {
  assert.equal(
    { state: byId('imap/theirs').state, since: byId('imap/theirs').since, counters: byId('imap/theirs').counters },
    { state: 'backoff', since: '2026-12-03T09:59:00.000Z', counters: {} },
  );
  assert.is(byId('imap/theirs').stale, false, "this replica's watchdog does not watch it");
  assert.equal(byId('imap/mine'), { ...own.servers[0]!, owner: 'r1', epoch: 2 });
  assert.is(byId('imap/nobody').state, 'stopped');
});

test('what the applied configuration decides (disabled, pending approval) is not taken from a snapshot', () => {
  assert.is(byId('imap/off').state, 'disabled');
  assert.is(byId('imap/waiting').state, 'pending-approval');
});

test('the replicas: loops owned by lease, the reconciler, generation and drift (this one as it knows itself)', () => {
  assert.equal(status.group, {
    replica: 'r1',
    readAt: '2026-12-03T10:00:01.000Z',
    replicas: [
      {
        id: 'r1',
        host: 'r1',
        live: true,
        heartbeatAt: '2026-12-03T10:00:00.000Z',
        heartbeatAgeS: 1.2,
        loopsOwned: 1,
        reconciler: false,
        generation: 5,
        drift: false,
      },
      {
        id: 'r2',
        host: 'r2',
        live: true,
        heartbeatAt: '2026-12-03T10:00:00.000Z',
        heartbeatAgeS: 1.2,
        loopsOwned: 2,
        reconciler: true,
        generation: 4,
        drift: true,
      },
      {
        id: 'r3',
        host: 'r3',
        live: false,
        heartbeatAt: '2026-12-03T10:00:00.000Z',
        heartbeatAgeS: 1.2,
        loopsOwned: 0,
        reconciler: false,
        generation: null,
        drift: false,
      },
    ],
  });
});

test('the rest of the status is untouched', () => {
  const { servers: _a, group: _b, ...rest } = status;
  const { servers: _c, ...before } = own;
  assert.equal(rest, before);
});

test.run();
