/**
 * Golden outputs of a plan covering every action kind: text, JSON and step-summary Markdown.
 * Regenerate after an intended change with:  UPDATE_GOLDEN=1 node --import tsx test/plan/render.test.ts
 * (then review the diff of test/plan/golden/ like any other code change).
 */
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { planJson } from '../../src/cli/commands/plan.js';
import { renderPlanMarkdown } from '../../src/cli/render/plan-markdown.js';
import {
  describeAction,
  linePaths,
  NO_CHANGES,
  planAnnotations,
  renderPlanText,
  RESTART_MARK,
  serverDiff,
  summaryLine,
} from '../../src/cli/render/plan-text.js';
import {
  serverId,
  type FlowSpec,
  type ImapServerSpec,
  type ServerSpec,
  type SmtpServerSpec,
} from '../../src/config/model.js';
import { nextBindings } from '../../src/plan/bindings.js';
import { computePlan } from '../../src/plan/compute.js';
import { imapSpec, smtpSpec } from './specs.js';
import {
  ACTION_SYMBOL,
  type ActionName,
  type DesiredState,
  type ObservedState,
  type Plan,
  type ServerConfig,
} from '../../src/plan/model.js';

const GOLDEN = path.join(path.dirname(fileURLToPath(import.meta.url)), 'golden');
const UPDATE = process.env.UPDATE_GOLDEN === '1';

async function golden(name: string, actual: string): Promise<void> {
  const file = path.join(GOLDEN, name);
  if (UPDATE) {
    await mkdir(GOLDEN, { recursive: true });
    await writeFile(file, actual);
    return;
  }
  const expected = await readFile(file, 'utf8').catch(() => {
    throw new Error(`missing golden file ${file}: run UPDATE_GOLDEN=1 node --import tsx test/plan/render.test.ts`);
  });
  if (actual !== expected) {
    // uvu prints a line diff of the two strings.
    assert.fixture(
      actual,
      expected,
      `${name} differs from the golden file (UPDATE_GOLDEN=1 regenerates it after an intended change)`,
    );
  }
}

// The secret references point at this value; plan never resolves them, so it must never appear in any output.
const CANARY = 'CANARY-PLAN-SECRET-1234';
process.env.MAILCTL_PLAN_CANARY = CANARY;
process.env.SUPPORT_PASSWORD = CANARY;
const CANARY_REF = '${env:MAILCTL_PLAN_CANARY}';

const FLOW: FlowSpec = {
  name: 'support',
  routes: [
    { queue: 'billing', when: { subject: ['*invoice*', '*billing*'] } },
    { queue: 'vip', when: { from: '*@vip.example.com' } },
    { queue: 'support' },
  ],
  autoReplies: 'deliver',
  deliver: { directory: 'inbox/support' },
};

const imap = (shortName: string, over: Partial<ImapServerSpec> = {}) =>
  imapSpec(shortName, { flow: 'support', ...over });

const smtp = (shortName: string, over: Partial<SmtpServerSpec> = {}) =>
  smtpSpec(shortName, { auth: { type: 'basic', user: `${shortName}@example.com`, password: CANARY_REF }, ...over });

const config = (spec: ServerSpec, flow: FlowSpec = FLOW): ServerConfig =>
  spec.type === 'imap' && spec.flow ? { spec, flow } : { spec };

/** One server per action kind. */
function fixture(): { desired: DesiredState; observed: ObservedState; approvals: string[] } {
  const running: [ServerSpec, 'active' | 'disabled'][] = [
    [imap('sales', { pollSchedule: '* * * * *' }), 'active'], // update
    [imap('support'), 'active'], // restart
    [smtp('marketing'), 'active'], // stop
    [
      smtp('legacy', {
        host: 'old-smtp.example.com',
        auth: { type: 'basic', user: 'legacy@example.com', password: '${env:LEGACY_PASSWORD}' },
      }),
      'active',
    ], // delete
    [
      imap('returning', {
        enabled: false,
        auth: { type: 'basic', user: 'returning@example.com', password: '${file:/run/secrets/returning}' },
      }),
      'disabled',
    ], // start
    [
      smtp('support', {
        auth: { type: 'basic', user: 'support@example.com', password: '${env:SUPPORT_SMTP_PASSWORD}' },
      }),
      'active',
    ], // rebind
    [
      imap('billing', { auth: { type: 'basic', user: 'billing@example.com', password: '${env:BILLING_PASSWORD}' } }),
      'active',
    ], // approved rebind
    [
      smtp('noreply', {
        role: 'template',
        auth: { type: 'basic', user: 'noreply@example.com', password: '${file:/run/secrets/noreply}' },
      }),
      'active',
    ], // no-op
  ];
  const servers: ObservedState['servers'] = Object.fromEntries(
    running.map(([spec, status]) => [serverId(spec), { config: config(spec), status }]),
  );
  const observed: ObservedState = {
    servers,
    bindings: nextBindings({}, servers, new Set(Object.keys(servers))),
    revision: 'abc1234',
  };
  const wanted: ServerConfig[] = [
    config(imap('new-inbox', { description: 'Created by the plan' })), // create
    config(
      smtp('parked', {
        enabled: false,
        auth: { type: 'basic', user: 'parked@example.com', password: '${env:PARKED_PASSWORD}' },
      }),
    ), // create, disabled
    config(imap('sales', { name: 'Sales (EU)', pollSchedule: '*/5 * * * *' })), // update in place
    config(imap('support', { folder: 'Support', storageFolder: 'SupportArchive' }), {
      ...FLOW,
      routes: [{ queue: 'billing', when: { subject: '*invoice*' } }, { queue: 'support' }],
    }), // restart
    config(smtp('marketing', { enabled: false })), // stop
    config(
      imap('returning', {
        auth: { type: 'basic', user: 'returning@example.com', password: '${file:/run/secrets/returning}' },
      }),
    ), // start
    config(
      smtp('support', {
        host: 'smtp.evil.example.net',
        auth: { type: 'basic', user: 'support@example.com', password: '${env:SUPPORT_SMTP_PASSWORD}' },
      }),
    ), // rebind
    config(
      imap('billing', {
        host: 'imap2.example.com',
        auth: { type: 'basic', user: 'billing@example.com', password: '${env:BILLING_PASSWORD}' },
      }),
    ), // approved rebind
    config(
      smtp('noreply', {
        role: 'template',
        auth: { type: 'basic', user: 'noreply@example.com', password: '${file:/run/secrets/noreply}' },
      }),
    ), // no-op
  ];
  const desired: DesiredState = { servers: Object.fromEntries(wanted.map((c) => [serverId(c.spec), c])) };
  return { desired, observed, approvals: ['imap/billing'] };
}

const plan = (): Plan => computePlan(fixture());

test('the fixture covers every action kind (and a no-op)', () => {
  const p = plan();
  const kinds = new Set<ActionName>(p.changes.map((c) => c.action));
  for (const kind of Object.keys(ACTION_SYMBOL) as ActionName[])
    if (kind !== 'no-op') assert.ok(kinds.has(kind), `missing ${kind}`);
  assert.ok(
    p.changes.some((c) => c.action === 'create' && !c.after!.spec.enabled),
    'create-disabled',
  );
  assert.ok(
    p.changes.some((c) => c.action === 'rebind' && c.approved),
    'approved rebind',
  );
  assert.ok(
    p.changes.some((c) => c.action === 'rebind' && !c.approved),
    'unapproved rebind',
  );
  assert.equal(p.unchanged, ['smtp/noreply']);
});

test('golden: text', async () => {
  await golden('plan.txt', `${renderPlanText(plan())}\n`);
});

test('golden: JSON', async () => {
  await golden('plan.json', `${JSON.stringify({ formatVersion: '1', ...planJson(plan()) }, null, 2)}\n`);
});

test('golden: step-summary Markdown', async () => {
  await golden(
    'plan.md',
    renderPlanMarkdown(plan(), { subtitle: 'Folder `servers.d` compared with the running state saved in state.json.' }),
  );
});

test('golden: no changes', async () => {
  const { desired } = fixture();
  const observed: ObservedState = {
    servers: Object.fromEntries(
      Object.entries(desired.servers).map(([id, c]) => [
        id,
        { config: c, status: c.spec.enabled ? ('active' as const) : ('disabled' as const) },
      ]),
    ),
    bindings: {},
  };
  const p = computePlan({ desired, observed });
  assert.is(renderPlanText(p), NO_CHANGES);
  await golden('no-changes.md', renderPlanMarkdown(p));
});

test('text: one block per change with symbol, identity and action in words; the summary line ends it', () => {
  const text = renderPlanText(plan());
  const expectations: [string, string][] = [
    ['  + imap/new-inbox', 'will be created'],
    ['  + smtp/parked', 'will be created, saved as disabled'],
    ['  ~ imap/sales', 'will be updated in place'],
    ['-/+ imap/support', 'must be restarted'],
    ['  - smtp/marketing', 'will be stopped'],
    ['  - smtp/legacy', 'will be deleted (removed from the folder)'],
    ['  + imap/returning', 'will be started (re-enabled)'],
    ['  ! smtp/support', 'needs approval: credential rebind, then must be restarted'],
    ['  ! imap/billing', 'credential rebind approved, then must be restarted'],
  ];
  for (const [head, words] of expectations) assert.ok(text.includes(`${head} ${words}`), `${head} ${words}`);
  assert.not.ok(text.includes('smtp/noreply'));
  // A start counts with the creations; the approved rebind with the restarts and not with the approvals.
  assert.ok(
    text.endsWith('\n\nPlan: 3 to create, 1 to update, 3 to restart, 1 to stop, 1 to delete, 1 need approval.'),
  );
  assert.is(
    summaryLine(plan()),
    'Plan: 3 to create, 1 to update, 3 to restart, 1 to stop, 1 to delete, 1 need approval.',
  );
});

test('text: restart fields are marked in the diff, other changed lines are not', () => {
  const support = plan().changes.find((c) => c.id === 'imap/support')!;
  const diff = serverDiff(support);
  assert.ok(diff.includes(`-folder: INBOX  ${RESTART_MARK}`));
  assert.ok(diff.includes(`+folder: Support  ${RESTART_MARK}`));
  assert.ok(diff.includes(`+storageFolder: SupportArchive  ${RESTART_MARK}`));
  const flowLines = diff.split('\n').filter((l) => /^[-+] {4}/.test(l));
  assert.ok(flowLines.length > 0, 'the flow change is in the diff');
  assert.ok(
    flowLines.every((l) => !l.includes(RESTART_MARK)),
    'flow lines are updated in place',
  );
  const sales = serverDiff(plan().changes.find((c) => c.id === 'imap/sales')!);
  assert.not.ok(sales.includes(RESTART_MARK));
  assert.ok(sales.startsWith('--- running/imap/sales\n+++ desired/imap/sales\n@@ '));
  assert.ok(sales.includes('-name: sales inbox\n+name: Sales (EU)'));
});

test('text: secrets appear as references only', () => {
  const text = renderPlanText(plan());
  assert.ok(text.includes('+  password: ${env:PARKED_PASSWORD}'));
  assert.ok(text.includes('-  password: ${env:LEGACY_PASSWORD}'));
  assert.ok(text.includes('password: ${env:MAILCTL_PLAN_CANARY}'));
});

test('text: a create diffs from /dev/null, a delete to /dev/null, a start without changes says so', () => {
  const p = plan();
  assert.ok(
    serverDiff(p.changes.find((c) => c.id === 'imap/new-inbox')!).startsWith(
      '--- /dev/null\n+++ desired/imap/new-inbox\n@@ -0,0 +1,',
    ),
  );
  assert.ok(
    serverDiff(p.changes.find((c) => c.id === 'smtp/legacy')!).startsWith(
      '--- running/smtp/legacy\n+++ /dev/null\n@@ -1,',
    ),
  );
  const { desired, observed } = fixture();
  observed.servers['smtp/noreply']!.status = 'disabled';
  const start = computePlan({ desired, observed }).changes.find((c) => c.id === 'smtp/noreply')!;
  assert.is(start.action, 'start');
  assert.is(serverDiff(start), '');
  assert.match(renderPlanText({ ...p, changes: [start] }), /\(configuration unchanged\)/);
});

test('text: the running configuration is shown in the key order of the desired one', () => {
  const p = plan();
  const sales = p.changes.find((c) => c.id === 'imap/sales')!;
  const shuffled = {
    ...sales,
    before: {
      spec: Object.fromEntries(Object.entries(sales.before!.spec).reverse()) as unknown as ServerSpec,
      flow: sales.before!.flow!,
    },
  };
  assert.is(serverDiff(shuffled), serverDiff(sales));
});

test('text: colours only when asked', () => {
  assert.not.match(renderPlanText(plan()), /\u001b\[/);
  const coloured = renderPlanText(plan(), { color: true });
  assert.match(coloured, /\u001b\[32m/);
  assert.is(coloured.replace(/\u001b\[\d+m/g, ''), renderPlanText(plan()));
});

test('JSON: every change carries action, symbol and description', () => {
  const json = planJson(plan()) as { changes: { action: string; symbol: string; description: string; id: string }[] };
  for (const change of json.changes) {
    assert.is(change.symbol, ACTION_SYMBOL[change.action as ActionName]);
    assert.type(change.description, 'string');
  }
  assert.equal(Object.keys(json.changes[0]!).slice(0, 4), ['id', 'action', 'symbol', 'description']);
});

test('Markdown: heading, summary table, each diff folded in <details>', () => {
  const md = renderPlanMarkdown(plan());
  assert.ok(md.startsWith('## mailctl plan\n'));
  assert.ok(md.includes('| | Server | Action | Reason |'));
  assert.ok(md.includes('| `-/+` | `imap/support` | must be restarted |'));
  assert.is(md.match(/<details><summary>/g)?.length, plan().changes.length);
  assert.is(md.match(/^```diff$/gm)?.length, plan().changes.length - 0);
  assert.ok(md.endsWith('</details>\n'));
});

test('Markdown: a backtick fence in a value cannot close the diff block; table cells and summaries are escaped', () => {
  const { desired, observed } = fixture();
  desired.servers['imap/new-inbox']!.spec.description = 'see ``` and <script>alert(1)</script>';
  const p = computePlan({ desired, observed });
  p.changes[0]!.reasons = ['a <b>bold</b> | reason'];
  const md = renderPlanMarkdown(p);
  assert.ok(md.includes('````diff\n--- /dev/null'));
  const outsideFences = md.replace(/^(`{3,})diff\n[\s\S]*?^\1$/gm, '');
  assert.not.ok(outsideFences.includes('<script>'));
  assert.not.ok(outsideFences.includes('```'));
  assert.ok(md.includes('| a &lt;b&gt;bold&lt;/b&gt; \\| reason |'));
});

test('GitHub annotations: unapproved rebind and delete are warnings, stop and approved rebind notices', () => {
  const lines = planAnnotations(plan(), (change) =>
    change.action === 'delete' ? undefined : { file: 'servers.d/x.yaml', line: 3, column: 7 },
  );
  const byId = (id: string) => lines.find((l) => l.includes(id))!;
  assert.match(
    byId('smtp/support'),
    /^::warning file=servers.d\/x.yaml,line=3,col=7,title=mailctl plan%3A smtp\/support needs approval \(credential rebind\)::credential rebind: /,
  );
  assert.match(byId('smtp/legacy'), /^::warning title=mailctl plan%3A smtp\/legacy will be deleted::/);
  assert.match(byId('smtp/marketing'), /^::notice /);
  assert.match(byId('imap/billing'), /^::notice /);
  assert.is(lines.length, 4);
  for (const line of lines) assert.is(line.split('\n').length, 1, 'one line per annotation');
});

test('describeAction covers a rebind of each follow-up action', () => {
  const base = plan().changes.find((c) => c.id === 'smtp/support')!;
  assert.is(
    describeAction({ ...base, thenAction: 'create' }),
    'needs approval: credential rebind, then will be created',
  );
  assert.is(
    describeAction({ ...base, thenAction: 'start', approved: true }),
    'credential rebind approved, then will be started (re-enabled)',
  );
});

test('linePaths attributes YAML lines to dotted fields', () => {
  const text = [
    'host: a',
    'auth:',
    '  type: basic',
    '  password: ${env:X}',
    'flow:',
    '  routes:',
    '    - queue: q',
    '      when:',
    '        from: "*@x"',
    '    - queue: r',
    'additionalFromAddresses:',
    '  - a@b.c',
    'port: 1',
    '',
  ].join('\n');
  assert.equal(linePaths(text), [
    'host',
    'auth',
    'auth.type',
    'auth.password',
    'flow',
    'flow.routes',
    'flow.routes.queue',
    'flow.routes.when',
    'flow.routes.when.from',
    'flow.routes.queue',
    'additionalFromAddresses',
    'additionalFromAddresses',
    'port',
    'port',
  ]);
});

test('the canary secret value never appears in any output', () => {
  const p = plan();
  const outputs = [
    renderPlanText(p),
    renderPlanText(p, { color: true }),
    JSON.stringify(planJson(p)),
    renderPlanMarkdown(p),
    planAnnotations(p).join('\n'),
    ...p.changes.map((c) => serverDiff(c)),
  ];
  for (const out of outputs) assert.not.ok(out.includes(CANARY), 'canary leaked');
  assert.ok(renderPlanText(p).includes(CANARY_REF), 'the reference itself is shown');
});

test.run();
