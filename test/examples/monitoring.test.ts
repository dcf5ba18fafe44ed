/**
 * The monitoring examples: the alerting rules pass `promtool check rules` and their unit tests (`promtool test rules`,
 * where every alert both fires and stays quiet), each alert carries a runbook naming a `mailctl` command, the
 * dashboard's queries parse as PromQL, and every `mailctl_*` metric the rules and the dashboard use, with the labels
 * they select on, is in the /metrics of a real daemon polling a real Dovecot and sending through an SMTP server — or,
 * for the metrics only a replica of a group has (GROUP_ONLY), in the /metrics of a replica on a real PostgreSQL.
 * promtool comes from Debian's `prometheus` package, installed by the harness when the tests run as root.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parse, stringify } from 'yaml';
import { startDovecot, type Dovecot } from '../harness/dovecot.js';
import { flowYaml, imapYaml, smtpYaml } from '../harness/fixtures.js';
import {
  cli,
  createWorkspace,
  eventually,
  startDaemon,
  type DaemonProcess,
  type Workspace,
} from '../harness/mailctl.js';
import { ensurePromtool } from '../harness/promtool.js';
import { startSmtpServer, type SmtpTestServer } from '../harness/smtp.js';
import { startMailStack, type MailStack } from '../harness/stack.js';
import { ROOT } from './package-install.js';

const run = promisify(execFile);
const DIR = path.join(ROOT, 'examples/monitoring');
const rulesText = await readFile(path.join(DIR, 'mailctl.rules.yml'), 'utf8');
const rules: { alert: string; expr: string; annotations: Record<string, string> }[] = parse(rulesText).groups.flatMap(
  (g: { rules: unknown[] }) => g.rules,
);
const unitTests = parse(await readFile(path.join(DIR, 'mailctl.rules.test.yml'), 'utf8'));
const dashboard = JSON.parse(await readFile(path.join(DIR, 'mailctl.dashboard.json'), 'utf8'));
const panels: any[] = dashboard.panels;
/** Each dashboard query with Grafana's variables replaced by what they stand for. */
const dashboardExprs: { where: string; expr: string }[] = panels.flatMap((p) =>
  p.targets.map((t: { refId: string; expr: string }) => ({
    where: `panel ${p.id} "${p.title}" ${t.refId}`,
    expr: t.expr.replaceAll('$__rate_interval', '5m').replaceAll('$instance', '.*').replaceAll('$server', '.*'),
  })),
);
const allExprs = [...rules.map((r) => ({ where: `rule ${r.alert}`, expr: r.expr })), ...dashboardExprs];

let promtool = '';
let scratch = '';
let healthy: Dovecot | undefined;
let doomed: Dovecot | undefined;
let smtp: SmtpTestServer | undefined;
let ws: Workspace | undefined;
let daemon: DaemonProcess | undefined;
let groupStack: MailStack | undefined;
let replica: DaemonProcess | undefined;
/** Metrics a daemon exports only as a replica of a group (several daemons on one PostgreSQL store). */
const GROUP_ONLY = /^mailctl_(replica_|group_|fenced_writes)/;
const USER = 'support@example.com';
const OTHER = 'sales@example.com';

test.before(async () => {
  promtool = await ensurePromtool().catch((err: Error) => {
    // uvu does not print an error thrown by a hook (it only counts the tests as not passed): say it here
    console.error(`✘ monitoring: ${err.message}`);
    throw err;
  });
  scratch = await mkdtemp(path.join(tmpdir(), 'mailctl-monitoring-'));
});
test.after(async () => {
  await daemon?.kill().catch(() => undefined);
  await replica?.kill().catch(() => undefined);
  await groupStack?.stop();
  await smtp?.stop();
  await Promise.all([healthy?.stop(), doomed?.stop()]);
  await ws?.cleanup();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

test('promtool check rules: the rules file is valid', async () => {
  const { stdout } = await run(promtool, ['check', 'rules', path.join(DIR, 'mailctl.rules.yml')]);
  assert.match(stdout, new RegExp(`SUCCESS: ${rules.length} rules found`));
});

test('promtool test rules: the unit tests pass, and each alert is tested firing and quiet', async () => {
  const r = await run(promtool, ['test', 'rules', 'mailctl.rules.test.yml'], { cwd: DIR }).catch(
    (err: { stdout: string; stderr: string }) => ({ stdout: err.stdout + err.stderr }),
  );
  assert.match(r.stdout, /SUCCESS/, r.stdout);
  const cases = unitTests.tests.flatMap((t: { alert_rule_test: unknown[] }) => t.alert_rule_test) as {
    alertname: string;
    exp_alerts?: unknown[];
  }[];
  for (const { alert } of rules) {
    const mine = cases.filter((c) => c.alertname === alert);
    assert.ok(
      mine.some((c) => c.exp_alerts?.length),
      `${alert} fires in a test`,
    );
    assert.ok(
      mine.some((c) => !c.exp_alerts?.length),
      `${alert} stays quiet in a test`,
    );
  }
});

test('the alerts asked for exist, and every one has a summary and a runbook that names a mailctl command', () => {
  const expr = (alert: string) => rules.find((r) => r.alert === alert)?.expr ?? '';
  assert.match(expr('MailctlDown'), /\bup\{job="mailctl"\}/);
  assert.match(expr('MailctlAbsent'), /^absent\(up\{job="mailctl"\}\)$/);
  assert.match(expr('MailctlServerFailed'), /mailctl_loop_state\{state="failed"\}/);
  assert.match(expr('MailctlServerStale'), /mailctl_server_stale/);
  assert.match(expr('MailctlLoopRestartingOften'), /mailctl_loop_restarts_total/);
  assert.match(expr('MailctlQuarantineGrowing'), /mailctl_messages_quarantined_total/);
  assert.match(expr('MailctlOutboxBacklog'), /mailctl_outbox_messages/);
  assert.match(expr('MailctlSendFailing'), /mailctl_messages_send_failed_total/);
  assert.match(expr('MailctlNeedsLogin'), /mailctl_loop_state\{state="needs-login"\}/);
  assert.match(expr('MailctlReplicaLeasesInvalid'), /mailctl_replica_leases_valid/);
  assert.match(expr('MailctlFencedWrites'), /mailctl_fenced_writes_total/);
  for (const r of rules) {
    assert.ok(r.annotations.summary, `${r.alert} summary`);
    assert.match(r.annotations.runbook ?? '', /`mailctl [a-z]+/, `${r.alert} runbook names a mailctl command`);
  }
});

test('the dashboard: panels for each subject, distinct ids, on the grid, every query on the chosen data source', () => {
  assert.is(dashboard.uid, 'mailctl');
  assert.equal(
    dashboard.templating.list.map((v: { name: string }) => v.name),
    ['datasource', 'instance', 'server'],
  );
  assert.is(new Set(panels.map((p) => p.id)).size, panels.length);
  for (const p of panels) {
    assert.ok(p.gridPos.x + p.gridPos.w <= 24, `panel ${p.id} fits the 24 columns`);
    assert.equal(p.datasource, { type: 'prometheus', uid: '${datasource}' }, `panel ${p.id}`);
    for (const t of p.targets) assert.equal(t.datasource, p.datasource, `panel ${p.id} ${t.refId}`);
  }
  const used = new Set(dashboardExprs.flatMap(({ expr }) => expr.match(/\bmailctl_\w+/g) ?? []));
  for (const subject of [
    'mailctl_imap_polls_total', // polls
    'mailctl_imap_poll_duration_seconds_bucket', // poll latency
    'mailctl_messages_delivered_total',
    'mailctl_messages_sent_total',
    'mailctl_messages_send_failed_total',
    'mailctl_outbox_messages',
    'mailctl_loop_state',
  ])
    assert.ok(used.has(subject), subject);
});

test("the dashboard's queries parse as PromQL (promtool check rules on them as recording rules)", async () => {
  const file = path.join(scratch, 'dashboard-queries.rules.yml');
  const recorded = dashboardExprs.map(({ expr }, i) => ({ record: `dashboard_query_${i}`, expr }));
  await writeFile(file, stringify({ groups: [{ name: 'dashboard', rules: recorded }] }));
  const r = await run(promtool, ['check', 'rules', file]).catch((err: { stdout: string; stderr: string }) => ({
    stdout: err.stdout + err.stderr,
  }));
  assert.match(r.stdout, new RegExp(`SUCCESS: ${recorded.length} rules found`), r.stdout);
});

/** `# TYPE` families of a /metrics text, and the label names their samples carry. */
function families(text: string): Map<string, { type: string; labels: Set<string>; samples: number }> {
  const found = new Map<string, { type: string; labels: Set<string>; samples: number }>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) found.set(type[1]!, { type: type[2]!, labels: new Set(), samples: 0 });
  }
  for (const line of text.split('\n')) {
    const sample = /^(\w+)(?:\{(.*)\})? \S+$/.exec(line);
    if (!sample) continue;
    const family = [...found.entries()].find(([name, f]) => resolves(sample[1]!, name, f.type));
    if (!family) continue;
    family[1].samples += 1;
    for (const m of (sample[2] ?? '').matchAll(/(\w+)="/g)) if (m[1] !== 'le') family[1].labels.add(m[1]!);
  }
  return found;
}

/** Whether the series name `used` belongs to the family `name` of `type` (prom-client names counters with `_total`). */
function resolves(used: string, name: string, type: string): boolean {
  if (type === 'histogram') return ['_bucket', '_sum', '_count'].some((suffix) => used === `${name}${suffix}`);
  if (type === 'summary') return used === name || used === `${name}_sum` || used === `${name}_count`;
  if (type === 'counter') return used === (name.endsWith('_total') ? name : `${name}_total`);
  return used === name;
}

test("a real daemon's /metrics has every metric the rules and the dashboard use, with the labels they select on", async () => {
  // a replica of a group, for the group's metrics: alone on its PostgreSQL store, no servers needed
  const startingReplica = startMailStack({ users: { 'replica@example.com': 'pw-mon' }, store: 'postgres' }).then(
    async (stack) => {
      groupStack = stack;
      replica = await stack.startDaemon(['--no-watch', '--replica-id', 'mailctl-0']);
      return (await fetch(`${replica.url}/metrics`)).text();
    },
  );
  [healthy, doomed] = await Promise.all([
    startDovecot({ users: { [USER]: 'pw-mon' } }),
    startDovecot({ users: { [OTHER]: 'pw-mon' } }),
  ]);
  await healthy.createFolder(USER, 'ContactStorage');
  await doomed.createFolder(OTHER, 'ContactStorage');
  smtp = await startSmtpServer({ ca: healthy.ca, users: { [USER]: 'pw-mon' } });
  ws = await createWorkspace();
  const ref = `\${file:${await ws.writeSecret('password', 'pw-mon')}}`;
  await ws.writeServer('flow.yaml', flowYaml());
  const imap = (shortName: string, user: string, dv: Dovecot) =>
    imapYaml({
      shortName,
      user,
      port: dv.ports.imap,
      caFile: dv.caFile,
      password: ref,
      pollSchedule: '*/10 * * * * *',
    });
  await ws.writeServer('imap-support.yaml', imap('support', USER, healthy));
  await ws.writeServer('imap-sales.yaml', imap('sales', OTHER, doomed));
  await ws.writeServer(
    'smtp-support.yaml',
    smtpYaml({ shortName: 'support', user: USER, port: smtp.port, caFile: smtp.caFile, password: ref }),
  );
  daemon = await startDaemon(ws, ['--no-watch']);
  const apply = await cli(['apply', '--dir', ws.dir], ws.env);
  assert.is(apply.code, 0, apply.stdout + apply.stderr);
  await healthy.deliver(USER, `From: a@example.net\r\nTo: ${USER}\r\nSubject: hello\r\n\r\nhello\r\n`);
  await doomed.stop(); // imap/sales loses its session: its loop restarts (and fails again, and again)
  const scrape = async () => (await fetch(`${daemon!.url}/metrics`)).text();
  const sample = (text: string, series: string) =>
    Number(
      text
        .split('\n')
        .find((l) => l.startsWith(`${series} `))
        ?.slice(series.length + 1) ?? NaN,
    );
  const text = await eventually(
    async () => {
      const t = await scrape();
      return (
        sample(t, 'mailctl_loop_restarts_total{server="imap/sales"}') >= 1 &&
        sample(t, 'mailctl_messages_delivered_total{server="imap/support"}') === 1 &&
        sample(t, 'mailctl_imap_poll_duration_seconds_count{server="imap/support"}') >= 1 &&
        t
      );
    },
    30_000,
    'a restart of imap/sales, a delivery and a poll of imap/support',
  );
  // the healthy loop never restarted, and its counters (and every reconcile result) are exported from 0
  assert.is(sample(text, 'mailctl_loop_restarts_total{server="imap/support"}'), 0);
  assert.is(sample(text, 'mailctl_messages_quarantined_total{server="imap/support"}'), 0);
  assert.is(sample(text, 'mailctl_messages_send_failed_total{server="smtp/support",kind="permanent"}'), 0);
  assert.is(sample(text, 'mailctl_reconciles_total{result="invalid"}'), 0);

  const single = families(text);
  const group = families(await startingReplica);
  const problems: string[] = [];
  for (const { where, expr } of allExprs) {
    for (const m of expr.matchAll(/\b(mailctl_\w+)\s*(?:\{([^}]*)\})?/g)) {
      const [, used, selector] = m;
      const known = GROUP_ONLY.test(used!) ? group : single;
      const family = [...known.entries()].find(([name, f]) => resolves(used!, name, f.type));
      if (!family) {
        const near = [...known.entries()]
          .filter(([n]) => used!.startsWith(n) || n.startsWith(used!))
          .map(([n, f]) => `${n}, a ${f.type}`);
        problems.push(`${where}: ${used} is not exported${near.length ? ` (the daemon has ${near.join(', ')})` : ''}`);
        continue;
      }
      // job and instance are the scrape's own labels; the others must be on the samples
      for (const label of [...(selector ?? '').matchAll(/(\w+)\s*(?:=~|!~|!=|=)\s*"/g)].map((l) => l[1]!)) {
        if (label !== 'job' && label !== 'instance' && !family[1].labels.has(label))
          problems.push(`${where}: ${used} has no label "${label}" (it has ${[...family[1].labels].join(', ')})`);
      }
    }
  }
  assert.equal(problems, []);
  // the split is honest: a daemon alone has no samples of the group's metrics (their families are declared), and the
  // replica has them
  assert.equal(
    [...single].filter(([name, f]) => GROUP_ONLY.test(name) && f.samples > 0).map(([name]) => name),
    [],
  );
  for (const [name, f] of group) if (GROUP_ONLY.test(name)) assert.ok(f.samples > 0, `${name} has a sample`);
  assert.ok([...group.keys()].filter((name) => GROUP_ONLY.test(name)).length >= 6, 'the group metrics are exported');
});

test.run();
