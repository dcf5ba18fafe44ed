import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { serverId, type FlowSpec, type ImapServerSpec, type ServerSpec } from '../../src/config/model.js';
import { completeLegacyBindings, identityBindingsOf, nextBindings } from '../../src/plan/bindings.js';
import { computePlan, desiredDigest, RESTART_FIELDS, stateDigest } from '../../src/plan/compute.js';
import { EMPTY_STATE } from '../../src/plan/desired.js';
import { nextState } from '../../src/plan/policy.js';
import { imapSpec, smtpSpec } from './specs.js';
import {
  hasChanges,
  type DesiredState,
  type ObservedState,
  type ServerConfig,
  type ServerChange,
} from '../../src/plan/model.js';

const FLOW: FlowSpec = {
  name: 'main',
  routes: [{ queue: 'vip', when: { from: '*@vip.example.com' } }, { queue: 'support' }],
  autoReplies: 'deliver',
  deliver: { directory: 'inbox' },
};
const OTHER_FLOW: FlowSpec = {
  name: 'other',
  routes: [{ queue: 'sales' }],
  autoReplies: 'drop',
  deliver: { directory: 'sales' },
};

const imap = imapSpec;

const smtp = smtpSpec;

const flows = new Map([FLOW, OTHER_FLOW].map((f) => [f.name, f]));
const config = (spec: ServerSpec): ServerConfig => {
  const flow = spec.type === 'imap' && spec.flow ? flows.get(spec.flow) : undefined;
  return flow ? { spec, flow } : { spec };
};
const desired = (...specs: ServerSpec[]): DesiredState => ({
  servers: Object.fromEntries(specs.map((s) => [serverId(s), config(s)])),
});

/** The state after applying `specs` (bindings as the daemon would record them); `disabled` ids are saved as disabled. */
function running(specs: ServerSpec[], options: { disabled?: string[]; bindings?: boolean } = {}): ObservedState {
  const servers: ObservedState['servers'] = {};
  for (const spec of specs) {
    const id = serverId(spec);
    const status = !spec.enabled || options.disabled?.includes(id) ? 'disabled' : 'active';
    servers[id] = { config: config(spec), status };
  }
  const bindings = options.bindings === false ? {} : nextBindings({}, servers, new Set(Object.keys(servers)));
  return { servers, bindings, revision: null };
}

function only(changes: ServerChange[]): ServerChange {
  assert.is(changes.length, 1, `expected one change, got ${changes.map((c) => `${c.id}:${c.action}`).join(', ')}`);
  return changes[0]!;
}

// ---- create ---------------------------------------------------------------------------------------------------------

test('create: a new enabled server', () => {
  const plan = computePlan({ desired: desired(imap('support')), observed: EMPTY_STATE });
  const change = only(plan.changes);
  assert.is(change.id, 'imap/support');
  assert.is(change.action, 'create');
  assert.is(change.before, undefined);
  assert.equal(change.after, config(imap('support')));
  assert.equal(change.rebinds, []);
  assert.match(change.reasons.join('\n'), /new server/);
  assert.equal(plan.summary, { create: 1, update: 0, restart: 0, stop: 0, delete: 0, needApproval: 0 });
  assert.ok(hasChanges(plan));
});

test('create-disabled: a new server with enabled: false is created, saved as disabled', () => {
  const plan = computePlan({ desired: desired(imap('later', { enabled: false })), observed: EMPTY_STATE });
  const change = only(plan.changes);
  assert.is(change.action, 'create');
  assert.match(change.reasons.join('\n'), /saved as disabled/);
  assert.is(plan.summary.create, 1);
});

test('create-disabled: reusing a reference bound elsewhere is no rebind while the server sends nothing', () => {
  const observed = running([imap('support')]);
  const plan = computePlan({
    desired: desired(
      imap('support'),
      imap('copy', { enabled: false, host: 'evil.example.net', auth: imap('support').auth }),
    ),
    observed,
  });
  assert.is(only(plan.changes).action, 'create');
});

// ---- update in place --------------------------------------------------------------------------------------------------

const inPlace: [string, ServerSpec, ServerSpec, string[]][] = [
  ['name', imap('support'), imap('support', { name: 'Support (EU)' }), ['name']],
  ['description', imap('support'), imap('support', { description: 'Tier 1' }), ['description']],
  ['pollSchedule', imap('support'), imap('support', { pollSchedule: '*/5 * * * *' }), ['pollSchedule']],
  ['backfill', imap('support'), imap('support', { backfill: 'none' }), ['backfill']],
  ['maxMessageSize', imap('support'), imap('support', { maxMessageSize: 1024 }), ['maxMessageSize']],
  ['role', smtp('noreply'), smtp('noreply', { role: 'template' }), ['role']],
  [
    'additionalFromAddresses',
    smtp('support'),
    smtp('support', { additionalFromAddresses: ['help@example.com'] }),
    ['additionalFromAddresses'],
  ],
  ['reauthenticateOnSave', imap('support'), imap('support', { reauthenticateOnSave: true }), ['reauthenticateOnSave']],
  [
    'flow (another flow)',
    imap('support'),
    imap('support', { flow: 'other' }),
    ['flow', 'flow.autoReplies', 'flow.deliver', 'flow.name', 'flow.routes'],
  ],
];

for (const [what, before, after, fields] of inPlace) {
  test(`update in place: ${what}`, () => {
    const plan = computePlan({ desired: desired(after), observed: running([before]) });
    const change = only(plan.changes);
    assert.is(change.action, 'update');
    assert.equal(change.changedFields, fields);
    assert.equal(change.restartFields, []);
    assert.equal(change.before, config(before));
    assert.equal(change.after, config(after));
    assert.match(change.reasons.join('\n'), /in place/);
    assert.is(plan.summary.update, 1);
  });
}

test('update in place: the content of the flow changed (same flow name)', () => {
  const observed = running([imap('support')]);
  const changedFlow: FlowSpec = {
    ...FLOW,
    routes: [{ queue: 'vip', when: { from: '*@vip.example.org' } }, { queue: 'support' }],
  };
  const plan = computePlan({
    desired: { servers: { 'imap/support': { spec: imap('support'), flow: changedFlow } } },
    observed,
  });
  const change = only(plan.changes);
  assert.is(change.action, 'update');
  assert.equal(change.changedFields, ['flow.routes']);
  assert.equal(change.restartFields, []);
});

test('update in place: a rename does not look at credential bindings', () => {
  // The reference is bound to another server's target; a change that does not reconnect sends nothing new.
  const observed = running([imap('support')]);
  observed.bindings['${env:SUPPORT_PASSWORD}'] = [
    { ...observed.bindings['${env:SUPPORT_PASSWORD}']![0]!, host: 'elsewhere.example.com' },
  ];
  const plan = computePlan({ desired: desired(imap('support', { name: 'Renamed' })), observed });
  assert.is(only(plan.changes).action, 'update');
});

test('update: a disabled server whose configuration changed is recorded, nothing restarts', () => {
  const before = imap('parked', { enabled: false });
  const plan = computePlan({
    desired: desired(imap('parked', { enabled: false, host: 'imap2.example.com' })),
    observed: running([before]),
  });
  const change = only(plan.changes);
  assert.is(change.action, 'update');
  assert.equal(change.restartFields, []);
  assert.match(change.reasons.join('\n'), /nothing runs/);
});

// ---- restart --------------------------------------------------------------------------------------------------------

const restartMutations: Record<string, { spec: ServerSpec; field: string }> = {
  host: { spec: imap('support', { host: 'imap2.example.com' }), field: 'host' },
  port: { spec: imap('support', { port: 1993 }), field: 'port' },
  tls: { spec: imap('support', { tls: false }), field: 'tls' },
  allowPlaintext: { spec: imap('support', { tls: false, allowPlaintext: true }), field: 'allowPlaintext' },
  tlsCaFile: { spec: imap('support', { tlsCaFile: '/etc/mailctl/ca.pem' }), field: 'tlsCaFile' },
  auth: {
    spec: imap('support', {
      auth: { type: 'basic', user: 'helpdesk@example.com', password: '${env:SUPPORT_PASSWORD}' },
    }),
    field: 'auth.user',
  },
  folder: { spec: imap('support', { folder: 'Support' }), field: 'folder' },
  storageFolder: { spec: imap('support', { storageFolder: 'Archive' }), field: 'storageFolder' },
  sniServerName: { spec: imap('support', { sniServerName: 'mail.example.com' }), field: 'sniServerName' },
  disableCompression: { spec: imap('support', { disableCompression: true }), field: 'disableCompression' },
};

test('restart: every RESTART_FIELDS entry has a case below', () => {
  assert.equal([...RESTART_FIELDS].sort(), Object.keys(restartMutations).sort());
});

for (const [top, { spec, field }] of Object.entries(restartMutations)) {
  test(`restart: ${top} forces a restart and is named in restartFields`, () => {
    // No bindings: this test is about the restart, not about credential binding.
    const plan = computePlan({ desired: desired(spec), observed: running([imap('support')], { bindings: false }) });
    const change = only(plan.changes);
    assert.is(change.action, 'restart');
    assert.ok(change.restartFields.includes(field), `${field} in ${change.restartFields.join(', ')}`);
    assert.ok(change.restartFields.every((f) => change.changedFields.includes(f)));
    assert.match(change.reasons.join('\n'), new RegExp(`${field.replace('.', '\\.')}.* new connection`));
    assert.equal(plan.summary, { create: 0, update: 0, restart: 1, stop: 0, delete: 0, needApproval: 0 });
  });
}

test('restart: a new password reference (auth.password) restarts', () => {
  const plan = computePlan({
    desired: desired(
      smtp('support', { auth: { type: 'basic', user: 'support@example.com', password: '${file:/run/secrets/smtp}' } }),
    ),
    observed: running([smtp('support')]),
  });
  const change = only(plan.changes);
  assert.is(change.action, 'restart');
  assert.equal(change.restartFields, ['auth.password']);
});

test('restart: in-place and restart fields together restart; only the restart fields are marked', () => {
  const plan = computePlan({
    desired: desired(imap('support', { name: 'New name', folder: 'Support' })),
    observed: running([imap('support')]),
  });
  const change = only(plan.changes);
  assert.is(change.action, 'restart');
  assert.equal(change.changedFields, ['folder', 'name']);
  assert.equal(change.restartFields, ['folder']);
});

test('restart: a host that only changes case is a restart, not a rebind', () => {
  const plan = computePlan({
    desired: desired(imap('support', { host: 'IMAP.example.com' })),
    observed: running([imap('support')]),
  });
  const change = only(plan.changes);
  assert.is(change.action, 'restart');
  assert.equal(change.rebinds, []);
});

test('restart: a changed secret digest restarts exactly that server', () => {
  const observed = running([imap('support'), imap('sales')]);
  const plan = computePlan({
    desired: desired(imap('support'), imap('sales')),
    observed,
    secretDigests: {
      desired: { 'imap/support': 'sha256:new', 'imap/sales': 'sha256:same' },
      observed: { 'imap/support': 'sha256:old', 'imap/sales': 'sha256:same' },
    },
  });
  const change = only(plan.changes);
  assert.is(change.id, 'imap/support');
  assert.is(change.action, 'restart');
  assert.equal(change.restartFields, ['secret value']);
  assert.equal(change.changedFields, []);
  assert.equal(plan.unchanged, ['imap/sales']);
});

test('restart: no secret digest on one side is no restart', () => {
  const plan = computePlan({
    desired: desired(imap('support')),
    observed: running([imap('support')]),
    secretDigests: { desired: { 'imap/support': 'sha256:new' }, observed: {} },
  });
  assert.equal(plan.changes, []);
});

// ---- stop / delete / start ------------------------------------------------------------------------------------------

test('stop: enabled: false on a running server', () => {
  const plan = computePlan({
    desired: desired(imap('support', { enabled: false })),
    observed: running([imap('support')]),
  });
  const change = only(plan.changes);
  assert.is(change.action, 'stop');
  assert.equal(change.changedFields, []);
  assert.equal(change.restartFields, []);
  assert.equal(change.rebinds, []);
  assert.is(plan.summary.stop, 1);
});

test('stop: with other changes it is still a stop (and lists them)', () => {
  const plan = computePlan({
    desired: desired(imap('support', { enabled: false, host: 'evil.example.net' })),
    observed: running([imap('support')]),
  });
  const change = only(plan.changes);
  assert.is(change.action, 'stop');
  assert.equal(change.changedFields, ['host']);
  assert.equal(change.restartFields, []);
});

test('delete: removed from the folder', () => {
  const plan = computePlan({ desired: desired(imap('support')), observed: running([imap('support'), smtp('old')]) });
  const change = only(plan.changes);
  assert.is(change.id, 'smtp/old');
  assert.is(change.action, 'delete');
  assert.equal(change.before, config(smtp('old')));
  assert.is(change.after, undefined);
  assert.match(change.reasons.join('\n'), /removed from the folder/);
  assert.is(plan.summary.delete, 1);
});

test('start: enabled again after enabled: false', () => {
  const plan = computePlan({
    desired: desired(imap('support')),
    observed: running([imap('support', { enabled: false })]),
  });
  const change = only(plan.changes);
  assert.is(change.action, 'start');
  assert.match(change.reasons.join('\n'), /enabled again/);
  assert.is(plan.summary.create, 1, 'a start counts with the creations');
});

test('start: a server saved as disabled after a failure starts again', () => {
  const plan = computePlan({
    desired: desired(imap('support')),
    observed: running([imap('support')], { disabled: ['imap/support'] }),
  });
  assert.is(only(plan.changes).action, 'start');
});

test('no-op: a disabled server that stays disabled and unchanged', () => {
  const spec = imap('parked', { enabled: false });
  const plan = computePlan({ desired: desired(spec), observed: running([spec]) });
  assert.equal(plan.changes, []);
  assert.equal(plan.unchanged, ['imap/parked']);
});

// ---- rebind ---------------------------------------------------------------------------------------------------------

test('rebind: the host changes while the password reference stays the same', () => {
  const plan = computePlan({
    desired: desired(imap('support', { host: 'evil.example.net' })),
    observed: running([imap('support')]),
  });
  const change = only(plan.changes);
  assert.is(change.action, 'rebind');
  assert.is(change.thenAction, 'restart');
  assert.is(change.approved, false);
  assert.equal(change.rebinds, [
    {
      reference: '${env:SUPPORT_PASSWORD}',
      from: { host: 'imap.example.com', port: 993, tls: true, allowPlaintext: false, boundBy: 'imap/support' },
      to: { host: 'evil.example.net', port: 993, tls: true, allowPlaintext: false },
    },
  ]);
  const reasons = change.reasons.join('\n');
  assert.match(
    reasons,
    /credential rebind: \$\{env:SUPPORT_PASSWORD\} was applied with imap\.example\.com:993 \(TLS\)/,
  );
  assert.match(reasons, /evil\.example\.net:993/);
  assert.match(reasons, /needs approval: apply --approve-rebind imap\/support/);
  assert.equal(plan.summary, { create: 0, update: 0, restart: 1, stop: 0, delete: 0, needApproval: 1 });
});

test('rebind: the port or TLS setting changes under the same reference', () => {
  for (const over of [{ port: 143, tls: false }, { port: 1993 }]) {
    const plan = computePlan({ desired: desired(imap('support', over)), observed: running([imap('support')]) });
    assert.is(only(plan.changes).action, 'rebind');
  }
});

test('rebind: approved with --approve-rebind', () => {
  const plan = computePlan({
    desired: desired(imap('support', { host: 'imap2.example.com' })),
    observed: running([imap('support')]),
    approvals: ['imap/support'],
  });
  const change = only(plan.changes);
  assert.is(change.action, 'rebind');
  assert.is(change.approved, true);
  assert.match(change.reasons.join('\n'), /approved with --approve-rebind/);
  assert.equal(plan.summary, { create: 0, update: 0, restart: 1, stop: 0, delete: 0, needApproval: 0 });
});

test('rebind: an approval of another server does not cover it', () => {
  const plan = computePlan({
    desired: desired(imap('support', { host: 'imap2.example.com' })),
    observed: running([imap('support')]),
    approvals: ['imap/sales'],
  });
  assert.is(only(plan.changes).approved, false);
});

test('rebind: a new server reusing a reference bound to another host', () => {
  const observed = running([imap('support')]);
  const thief = smtp('thief', {
    host: 'smtp.evil.example.net',
    auth: { type: 'basic', user: 'x@example.com', password: '${env:SUPPORT_PASSWORD}' },
  });
  const plan = computePlan({ desired: desired(imap('support'), thief), observed });
  const change = only(plan.changes);
  assert.is(change.id, 'smtp/thief');
  assert.is(change.action, 'rebind');
  assert.is(change.thenAction, 'create');
  assert.is(change.rebinds[0]!.from.boundBy, 'imap/support');
  assert.equal(plan.summary, { create: 1, update: 0, restart: 0, stop: 0, delete: 0, needApproval: 1 });
});

test('rebind: a new server reusing a reference with the same target is no rebind', () => {
  const observed = running([imap('support')]);
  const twin = imap('support-archive', {
    folder: 'Archive',
    storageFolder: 'ArchiveStorage',
    auth: imap('support').auth,
  });
  const plan = computePlan({ desired: desired(imap('support'), twin), observed });
  assert.is(only(plan.changes).action, 'create');
});

test('rebind: re-enabling a server whose host changed while it was disabled', () => {
  const observed = running([imap('support')]);
  observed.servers['imap/support']!.status = 'disabled';
  const plan = computePlan({ desired: desired(imap('support', { host: 'imap2.example.com' })), observed });
  const change = only(plan.changes);
  assert.is(change.action, 'rebind');
  assert.is(change.thenAction, 'start');
});

test('rebind: an OAuth2 token URL change rebinds the client secret and refresh token (once per reference)', () => {
  const oauth = (tokenUrl: string): ImapServerSpec['auth'] => ({
    type: 'oauth2',
    user: 'support@example.com',
    oauth2: { tokenUrl, clientId: 'mailctl', clientSecret: '${env:OAUTH_SECRET}', refreshToken: '${env:OAUTH_SECRET}' },
  });
  const plan = computePlan({
    desired: desired(imap('support', { auth: oauth('https://login.evil.example.net/token') })),
    observed: running([imap('support', { auth: oauth('https://login.example.com/token') })]),
  });
  const change = only(plan.changes);
  assert.is(change.action, 'rebind');
  assert.equal(change.restartFields, ['auth.oauth2.tokenUrl']);
  assert.equal(
    change.rebinds.map((r) => [r.reference.replace(/^oauth2\/.*/, 'oauth2/…'), r.to.tokenUrl, !!r.movesTo]),
    [
      ['${env:OAUTH_SECRET}', 'https://login.evil.example.net/token', false],
      // what the daemon kept from that refresh token (rotations) would follow it
      ['oauth2/…', 'https://login.evil.example.net/token', true],
    ],
  );
});

const signIn = (tokenUrl: string, over: Record<string, string> = {}): ImapServerSpec['auth'] => ({
  type: 'oauth2',
  user: 'support@example.com',
  oauth2: { tokenUrl, deviceAuthorizationUrl: 'https://login.example.com/device', clientId: 'mailctl', ...over },
});

test('kept credential: its id is bound at apply like a reference; a new mail host for it is a rebind', () => {
  const before = imap('support', { auth: signIn('https://login.example.com/token') });
  const observed = running([before]);
  const [credential, ...more] = Object.keys(observed.bindings).filter((k) => k.startsWith('oauth2/'));
  assert.match(credential!, /^oauth2\/[0-9a-f]{12}$/);
  assert.equal(more, []);
  assert.equal(
    observed.bindings[credential!]!.map((b) => [b.host, b.tokenUrl, b.deviceAuthorizationUrl, b.boundBy]),
    [['imap.example.com', 'https://login.example.com/token', 'https://login.example.com/device', 'imap/support']],
  );
  const moved = desired(
    imap('support', { auth: signIn('https://login.example.com/token'), host: 'imap.evil.example' }),
  );
  const change = only(computePlan({ desired: moved, observed }).changes);
  assert.is(change.action, 'rebind');
  assert.equal(
    change.rebinds.map((r) => [r.reference, r.to.host]),
    [[credential, 'imap.evil.example']],
  );
  assert.match(change.reasons[0]!, `the kept credential ${credential} was applied with imap.example.com:993`);
});

test('kept credential: a new token URL moves it to a new id, only with approval; the new id is then bound', () => {
  const before = imap('support', { auth: signIn('https://login.example.com/token') });
  const observed = running([before]);
  const after = imap('support', { auth: signIn('https://login.other.example/token') });
  const change = only(computePlan({ desired: desired(after), observed }).changes);
  assert.is(change.action, 'rebind');
  assert.not.ok(change.approved);
  const [move] = change.rebinds;
  const [from] = Object.keys(observed.bindings).filter((k) => k.startsWith('oauth2/'));
  assert.is(move!.reference, from);
  assert.match(move!.movesTo!, /^oauth2\/[0-9a-f]{12}$/);
  assert.is.not(move!.movesTo, from);
  assert.is(move!.to.tokenUrl, 'https://login.other.example/token');
  assert.match(change.reasons[0]!, `(kept as ${move!.movesTo} at the new token URL)`);
  const approved = computePlan({ desired: desired(after), observed, approvals: ['imap/support'] });
  const next = nextState(observed, approved, new Map(), null);
  assert.equal(
    next.bindings[move!.movesTo!]!.map((b) => b.tokenUrl),
    ['https://login.other.example/token'],
  );
  // another client id is another credential: nothing moves
  const other = imap('support', { auth: signIn('https://login.other.example/token', { clientId: 'other' }) });
  assert.is(only(computePlan({ desired: desired(other), observed }).changes).action, 'restart');
});

test('rebind: a Microsoft tenant change sends the client secret to another tenant (provider and tenant bound)', () => {
  const ms = (tenant: string): ImapServerSpec['auth'] => ({
    type: 'oauth2',
    user: 'support@example.com',
    oauth2: { provider: 'microsoft', tenant, clientId: 'app', clientSecret: '${env:MS_SECRET}' },
  });
  const observed = running([imap('support', { auth: ms('contoso.com') })]);
  assert.equal(
    observed.bindings['${env:MS_SECRET}']!.map((b) => [b.provider, b.tenant, b.tokenUrl]),
    [['microsoft', 'contoso.com', 'https://login.microsoftonline.com/contoso.com/oauth2/v2.0/token']],
  );
  const change = only(
    computePlan({ desired: desired(imap('support', { auth: ms('fabrikam.com') })), observed }).changes,
  );
  assert.is(change.action, 'rebind');
  assert.equal(
    change.rebinds.filter((r) => !r.movesTo).map((r) => [r.reference, r.to.tenant]),
    [['${env:MS_SECRET}', 'fabrikam.com']],
  );
  assert.match(change.reasons[0]!, 'oauth2/v2.0/token (microsoft fabrikam.com)');
  // endpoints written out: the tenant alone still decides where the secret goes (the scope, the authority)
  const pinned = (tenant: string): ImapServerSpec['auth'] => {
    const auth = ms(tenant) as Extract<ImapServerSpec['auth'], { type: 'oauth2' }>;
    const urls = { tokenUrl: 'https://login.example.com/t', deviceAuthorizationUrl: 'https://login.example.com/d' };
    return { ...auth, oauth2: { ...auth.oauth2, ...urls } };
  };
  const observedPinned = running([imap('support', { auth: pinned('contoso.com') })]);
  const retenanted = computePlan({
    desired: desired(imap('support', { auth: pinned('fabrikam.com') })),
    observed: observedPinned,
  });
  assert.is(only(retenanted.changes).action, 'rebind');
});

test('rebind: none for an IMAP and an SMTP server sharing one password on their two hosts', () => {
  const shared = { type: 'basic' as const, user: 'support@example.com', password: '${env:SUPPORT_PASSWORD}' };
  const observed = running([imap('support', { auth: shared }), smtp('support', { auth: shared })]);
  assert.is(observed.bindings['${env:SUPPORT_PASSWORD}']!.length, 2);
  const plan = computePlan({
    desired: desired(
      imap('support', { auth: shared, folder: 'Support' }),
      smtp('support', { auth: shared, port: 587, tls: false }),
    ),
    observed,
  });
  assert.equal(
    plan.changes.map((c) => [c.id, c.action]),
    [
      ['imap/support', 'restart'],
      ['smtp/support', 'rebind'],
    ],
  );
});

test('bindings: a disabled server binds nothing, so enabling it later against a new host is a rebind', () => {
  const observed = running([imap('support')]);
  const sneaky = smtp('sneaky', {
    enabled: false,
    host: 'smtp.evil.example.net',
    auth: { type: 'basic', user: 'x@example.com', password: '${env:SUPPORT_PASSWORD}' },
  });
  const first = computePlan({ desired: desired(imap('support'), sneaky), observed });
  assert.equal(
    first.changes.map((c) => [c.id, c.action]),
    [['smtp/sneaky', 'create']],
  );
  // Apply it: the disabled server is recorded, its target is not bound.
  const servers = { ...observed.servers, 'smtp/sneaky': { config: config(sneaky), status: 'disabled' as const } };
  const applied: ObservedState = {
    servers,
    bindings: nextBindings(observed.bindings, servers, new Set(['smtp/sneaky'])),
  };
  assert.equal(
    applied.bindings['${env:SUPPORT_PASSWORD}']!.map((b) => b.host),
    ['imap.example.com'],
  );
  const second = computePlan({ desired: desired(imap('support'), { ...sneaky, enabled: true }), observed: applied });
  const change = only(second.changes);
  assert.is(change.action, 'rebind');
  assert.is(change.thenAction, 'start');
});

test('bindings: a server stopped with enabled: false keeps its binding, so re-enabling it elsewhere is a rebind', () => {
  const observed = running([imap('support')]);
  const stopped = imap('support', { enabled: false });
  const servers = { 'imap/support': { config: config(stopped), status: 'disabled' as const } };
  const applied: ObservedState = {
    servers,
    bindings: nextBindings(observed.bindings, servers, new Set(['imap/support'])),
  };
  assert.equal(applied.bindings, observed.bindings);
  const plan = computePlan({ desired: desired(imap('support', { host: 'evil.example.net' })), observed: applied });
  assert.is(only(plan.changes).action, 'rebind');
});

test('bindings outlive a deleted server: a new server reusing its reference on another host is a rebind', () => {
  const observed = running([imap('support')]);
  const afterDelete: ObservedState = { servers: {}, bindings: nextBindings(observed.bindings, {}, new Set()) };
  assert.equal(afterDelete.bindings, observed.bindings);
  const reuse = imap('helpdesk', {
    host: 'imap.evil.example.net',
    auth: { type: 'basic', user: 'x@example.com', password: '${env:SUPPORT_PASSWORD}' },
  });
  const change = only(computePlan({ desired: desired(reuse), observed: afterDelete }).changes);
  assert.is(change.action, 'rebind');
  assert.is(change.thenAction, 'create');
});

test('rebind: a changed CA file or SNI name is a rebind (whoever controls them picks the server)', () => {
  const withCa = imap('support', { tlsCaFile: '/etc/ssl/certs/corp.pem', sniServerName: 'imap.example.com' });
  const observed = running([withCa]);
  for (const changed of [
    imap('support', { tlsCaFile: '/var/lib/mailctl/queues/x.eml', sniServerName: 'imap.example.com' }),
    imap('support', { tlsCaFile: '/etc/ssl/certs/corp.pem', sniServerName: 'imap.evil.example.net' }),
    imap('support', { sniServerName: 'imap.example.com' }),
  ]) {
    const change = only(computePlan({ desired: desired(changed), observed }).changes);
    assert.is(change.action, 'rebind');
    assert.is(change.thenAction, 'restart');
  }
  const change = only(
    computePlan({
      desired: desired(imap('support', { tlsCaFile: '/tmp/x.pem', sniServerName: 'imap.example.com' })),
      observed,
    }).changes,
  );
  assert.match(
    change.reasons[0]!,
    /CA file \/etc\/ssl\/certs\/corp\.pem, SNI imap\.example\.com.*CA file \/tmp\/x\.pem/,
  );
});

test('rebind by identity: another reference holding a bound secret is a rebind once the daemon knows the values', () => {
  const observed = running([imap('support')]);
  const copy = '${file:/run/secrets/link-to-support-password}';
  const sneaky = smtp('sneaky', {
    host: 'smtp.evil.example.net',
    auth: { type: 'basic', user: 'x@example.com', password: copy },
  });
  // offline (plan in CI) the new reference is unknown: a create
  assert.is(only(computePlan({ desired: desired(imap('support'), sneaky), observed }).changes).action, 'create');
  const ofReference: Record<string, string> = { '${env:SUPPORT_PASSWORD}': 'id-of-support', [copy]: 'id-of-support' };
  const identities = {
    ofReference,
    bindings: identityBindingsOf(observed.bindings, ofReference),
  };
  const plan = computePlan({ desired: desired(imap('support'), sneaky), observed, identities });
  const change = only(plan.changes);
  assert.is(change.action, 'rebind');
  assert.is(change.thenAction, 'create');
  assert.equal(change.rebinds[0]?.byIdentity, true);
  assert.match(change.reasons[0]!, /holds the same secret as a reference applied with imap\.example\.com:993/);
  assert.is(plan.summary.needApproval, 1);
  // a value bound nowhere (a rotated password) is no rebind
  const rotated = computePlan({
    desired: desired(imap('support'), sneaky),
    observed,
    identities: { ofReference: { ...ofReference, [copy]: 'id-of-a-new-password' }, bindings: identities.bindings },
  });
  assert.is(only(rotated.changes).action, 'create');
  // and binding by identity grows like the reference bindings
  const servers = { ...observed.servers, 'smtp/sneaky': { config: config(sneaky), status: 'active' as const } };
  const grown = nextBindings(identities.bindings, servers, new Set(['smtp/sneaky']), (r) => ofReference[r]);
  assert.equal(
    grown['id-of-support']!.map((b) => [b.host, b.boundBy]),
    [
      ['imap.example.com', 'imap/support'],
      ['smtp.evil.example.net', 'smtp/sneaky'],
    ],
  );
});

test('legacy bindings (no CA file or SNI recorded) take them from the server that made them', () => {
  const withCa = imap('support', { tlsCaFile: '/etc/ssl/certs/corp.pem', sniServerName: 'imap.example.com' });
  const observed = running([withCa]);
  const legacy: ObservedState = {
    ...observed,
    bindings: Object.fromEntries(
      Object.entries(observed.bindings).map(([ref, list]) => [
        ref,
        list.map(({ tlsCaFile: _ca, sniServerName: _sni, ...rest }) => rest),
      ]),
    ),
  };
  assert.equal(completeLegacyBindings(legacy), observed.bindings);
  // unchanged, the server needs no approval after the migration; with the legacy bindings a restart would
  const restart = desired(imap('support', { ...withCa, folder: 'Other' }));
  assert.is(only(computePlan({ desired: restart, observed: legacy }).changes).action, 'rebind');
  const migrated = { ...legacy, bindings: completeLegacyBindings(legacy) };
  assert.is(only(computePlan({ desired: restart, observed: migrated }).changes).action, 'restart');
});

// ---- no-op, ordering, digests ---------------------------------------------------------------------------------------

test('no-op: the folder matches the running state', () => {
  const specs = [imap('support'), smtp('support'), smtp('noreply', { role: 'template' })];
  const plan = computePlan({ desired: desired(...specs), observed: running(specs) });
  assert.equal(plan.changes, []);
  assert.equal(plan.unchanged, ['imap/support', 'smtp/noreply', 'smtp/support']);
  assert.equal(plan.summary, { create: 0, update: 0, restart: 0, stop: 0, delete: 0, needApproval: 0 });
  assert.not.ok(hasChanges(plan));
});

test('no-op: an empty folder against an empty state', () => {
  const plan = computePlan({ desired: { servers: {} }, observed: EMPTY_STATE });
  assert.equal(plan.changes, []);
  assert.equal(plan.unchanged, []);
});

test('changes come in identity order', () => {
  const plan = computePlan({ desired: desired(smtp('b'), imap('z'), imap('a')), observed: EMPTY_STATE });
  assert.equal(
    plan.changes.map((c) => c.id),
    ['imap/a', 'imap/z', 'smtp/b'],
  );
});

const reversed = <T>(value: T): T => {
  if (Array.isArray(value)) return value.map(reversed) as T;
  if (value && typeof value === 'object')
    return Object.fromEntries(
      Object.entries(value)
        .reverse()
        .map(([k, v]) => [k, reversed(v)]),
    ) as T;
  return value;
};

test('digests: stable under key order', () => {
  const d = desired(imap('support'), smtp('support'));
  assert.is(desiredDigest(reversed(d)), desiredDigest(d));
  const o = running([imap('support'), smtp('support')]);
  assert.is(stateDigest(reversed(o)), stateDigest(o));
  const a = computePlan({ desired: d, observed: o });
  const b = computePlan({ desired: reversed(d), observed: reversed(o) });
  assert.is(a.desiredDigest, b.desiredDigest);
  assert.is(a.stateDigest, b.stateDigest);
  assert.match(a.desiredDigest, /^sha256:[0-9a-f]{64}$/);
});

test('digests: change with any value, not with the revision', () => {
  const d = desired(imap('support'));
  assert.is.not(desiredDigest(desired(imap('support', { pollSchedule: '*/2 * * * *' }))), desiredDigest(d));
  const o = running([imap('support')]);
  assert.is(stateDigest({ ...o, revision: 'abc123' }), stateDigest(o));
  assert.is.not(stateDigest(running([imap('support')], { disabled: ['imap/support'] })), stateDigest(o));
  assert.is.not(stateDigest(running([imap('support')], { bindings: false })), stateDigest(o));
});

test('digests: an undefined optional field is the same as a missing one', () => {
  const withUndefined = { ...imap('support'), description: undefined } as unknown as ImapServerSpec;
  assert.is(desiredDigest(desired(withUndefined)), desiredDigest(desired(imap('support'))));
});

test.run();
