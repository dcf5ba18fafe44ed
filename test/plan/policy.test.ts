/** plan/policy.ts as tables: which changes start a loop, the delete guards, the state an apply leaves, the steps. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { serverId, type ServerSpec } from '../../src/config/model.js';
import { nextBindings } from '../../src/plan/bindings.js';
import { computePlan } from '../../src/plan/compute.js';
import { EMPTY_STATE } from '../../src/plan/desired.js';
import { effectiveAction, type ObservedState, type ServerChange } from '../../src/plan/model.js';
import { nextState, refuseDeletes, startsLoop, stepOf } from '../../src/plan/policy.js';
import { imapSpec, smtpSpec } from './specs.js';

const config = (spec: ServerSpec) => ({ spec });
const desired = (...specs: ServerSpec[]) => ({
  servers: Object.fromEntries(specs.map((s) => [serverId(s), config(s)])),
});

function running(...specs: ServerSpec[]): ObservedState {
  const servers: ObservedState['servers'] = {};
  for (const s of specs) servers[serverId(s)] = { config: config(s), status: s.enabled ? 'active' : 'disabled' };
  return { servers, bindings: nextBindings({}, servers, new Set(Object.keys(servers))), revision: null };
}

const planOf = (observed: ObservedState, ...specs: ServerSpec[]) =>
  computePlan({ desired: desired(...specs), observed });
const change = (observed: ObservedState, ...specs: ServerSpec[]): ServerChange => {
  const plan = planOf(observed, ...specs);
  assert.is(plan.changes.length, 1);
  return plan.changes[0]!;
};

const a = imapSpec('a');
const rows: { name: string; change: ServerChange; starts: boolean; step: ReturnType<typeof stepOf> }[] = [
  { name: 'create (enabled)', change: change(EMPTY_STATE, a), starts: true, step: 'start' },
  {
    name: 'create (disabled)',
    change: change(EMPTY_STATE, imapSpec('a', { enabled: false })),
    starts: false,
    step: 'stop',
  },
  {
    name: 'restart (host)',
    change: change(running(a), imapSpec('a', { host: 'other.example.com' })),
    starts: true,
    step: 'start',
  },
  {
    name: 'update in place',
    change: change(running(a), imapSpec('a', { name: 'renamed' })),
    starts: false,
    step: 'update',
  },
  {
    name: 'stop (enabled: false)',
    change: change(running(a), imapSpec('a', { enabled: false })),
    starts: false,
    step: 'stop',
  },
  {
    name: 'start (enabled again)',
    change: change(running(imapSpec('a', { enabled: false })), a),
    starts: true,
    step: 'start',
  },
  { name: 'delete', change: change(running(a, smtpSpec('a')), smtpSpec('a')), starts: false, step: 'stop' },
];

for (const row of rows) {
  test(`startsLoop and stepOf: ${row.name}`, () => {
    assert.is(startsLoop(row.change), row.starts);
    assert.is(stepOf(row.change, false), row.step);
    assert.is(stepOf(row.change, true), 'keep-disabled', 'a failed verification always keeps it disabled');
  });
}

test('a rebind counts as what happens once it is approved', () => {
  const observed = running(
    a,
    smtpSpec('b', { auth: { type: 'basic', user: 'b@example.com', password: '${env:SHARED}' } }),
  );
  const moved = smtpSpec('b', {
    host: 'evil.example.net',
    auth: { type: 'basic', user: 'b@example.com', password: '${env:SHARED}' },
  });
  const plan = computePlan({ desired: desired(a, moved), observed, approvals: ['smtp/b'] });
  const rebind = plan.changes.find((c) => c.id === 'smtp/b')!;
  assert.is(rebind.action, 'rebind');
  assert.is(effectiveAction(rebind), 'restart');
  assert.ok(startsLoop(rebind));
  assert.is(stepOf(rebind, false), 'start');
});

const many = (n: number) => Array.from({ length: n }, (_, i) => imapSpec(`m${i}`));
const guardRows: {
  name: string;
  running: number;
  keep: number;
  allowEmpty?: boolean;
  allowMassDelete?: boolean;
  refused: RegExp | null;
}[] = [
  { name: 'nothing running: never refused', running: 0, keep: 0, refused: null },
  { name: 'the folder emptied', running: 3, keep: 0, refused: /no longer holds any of the 3 running server/ },
  {
    name: 'the folder emptied, --allow-empty',
    running: 3,
    keep: 0,
    allowEmpty: true,
    allowMassDelete: true,
    refused: null,
  },
  { name: 'more than half go', running: 4, keep: 1, refused: /3 of 4 servers would be deleted/ },
  { name: 'more than half go, --allow-mass-delete', running: 4, keep: 1, allowMassDelete: true, refused: null },
  { name: 'exactly half go', running: 4, keep: 2, refused: null },
];

for (const row of guardRows) {
  test(`refuseDeletes: ${row.name}`, () => {
    const specs = many(row.running);
    const observed = running(...specs);
    const plan = planOf(observed, ...specs.slice(0, row.keep));
    const refused = refuseDeletes(plan, observed, {
      allowEmpty: row.allowEmpty ?? false,
      allowMassDelete: row.allowMassDelete ?? false,
    });
    if (row.refused === null) assert.is(refused, null);
    else assert.match(refused ?? '', row.refused);
  });
}

test('nextState: applied servers run, failed ones are saved as disabled with the reason, deleted ones go', () => {
  const observed = running(a, smtpSpec('gone'));
  const b = imapSpec('b');
  const plan = planOf(observed, imapSpec('a', { host: 'new.example.com' }), b);
  const failed = new Map([['imap/b', { failureClass: 'auth', reason: 'password rejected' }]]);
  const next = nextState(observed, plan, failed, 'abc123');
  assert.equal(Object.keys(next.servers).sort(), ['imap/a', 'imap/b']);
  assert.is(next.servers['imap/a']!.status, 'active');
  assert.is(next.servers['imap/a']!.config.spec.host, 'new.example.com');
  assert.is(next.servers['imap/a']!.revision, 'abc123');
  assert.equal(
    { status: next.servers['imap/b']!.status, reason: next.servers['imap/b']!.disabledReason },
    { status: 'disabled', reason: 'verification failed: auth: password rejected' },
  );
  assert.is(next.revision, 'abc123');
  const password = a.auth.type === 'basic' ? a.auth.password : '';
  assert.equal(
    next.bindings[password]!.map((t) => t.host).sort(),
    ['imap.example.com', 'new.example.com'],
    'the new target is bound, the old binding is kept',
  );
  const bPassword = b.auth.type === 'basic' ? b.auth.password : '';
  assert.is(next.bindings[bPassword], undefined, 'a server that failed verification binds nothing');
  assert.ok(observed.servers['smtp/gone'], 'the observed state itself is not changed');
});

test('nextState: a disabled server records its configuration and binds nothing', () => {
  const off = imapSpec('off', { enabled: false });
  const next = nextState(EMPTY_STATE, planOf(EMPTY_STATE, off), new Map(), null);
  assert.equal(
    { status: next.servers['imap/off']!.status, reason: next.servers['imap/off']!.disabledReason },
    { status: 'disabled', reason: 'enabled: false' },
  );
  assert.equal(next.bindings, {});
});

test.run();
