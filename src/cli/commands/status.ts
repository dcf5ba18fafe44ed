import type { DaemonStatus, GroupStatus, ServerStatus } from '../../api/index.js';
import { DAEMON_OPTIONS, daemonFor } from '../daemon-client.js';
import type { Command } from '../command.js';
import { EXIT, UserError } from '../errors.js';
import { painter, show } from '../output.js';
import { renderDiagnosticsText } from '../render/diagnostics.js';

/** An enabled server in any of these states, or stale, is not doing its job (`status --check` fails). */
const UNHEALTHY = new Set(['starting', 'backoff', 'failed', 'needs-login', 'stopped', 'pending-approval']);

export const statusCommand: Command = {
  name: 'status',
  summary: 'Show every server and its loop as the daemon sees it',
  usage: 'mailctl status [--server URL] [--state-dir DIR] [--token-file FILE] [--check] [--format text|json|github]',
  options: {
    ...DAEMON_OPTIONS,
    check: { type: 'boolean' },
  },
  async run({ values, output, io }) {
    const daemon = await daemonFor(values, io.env);
    const { status, body } = await daemon.request<DaemonStatus>('GET', '/v1/status');
    if (status !== 200) throw new UserError(`the daemon answered ${status}`);
    const unhealthy: Pick<ServerStatus, 'id' | 'state' | 'stale'>[] = body.servers.filter(
      (s) => s.enabled && (UNHEALTHY.has(s.state) || s.stale),
    );
    // without its send loop the daemon cannot send template mail
    if (body.systemSendLoop && UNHEALTHY.has(body.systemSendLoop.state))
      unhealthy.push({ ...body.systemSendLoop, stale: false });
    // without its store the daemon changes nothing, whatever its loops say
    const storeDown = !body.store.available;
    const check = values.check === true && (unhealthy.length > 0 || storeDown);
    const verdict = () =>
      check &&
      output.err(
        `not healthy: ${[
          ...(storeDown ? ['the store (unavailable)'] : []),
          ...unhealthy.map((s) => `${s.id} (${s.stale ? `${s.state}, stale` : s.state})`),
        ].join(', ')}`,
      );
    show(
      output,
      { ...body },
      {
        text: () => (renderStatusText(output, body), verdict()),
        github: () => (renderStatusText(output, body), renderDriftAnnotations(output, body.group), verdict()),
      },
    );
    if (check) return EXIT.error;
    return EXIT.ok;
  },
};

const countersText = (counters: Record<string, number>) =>
  Object.entries(counters)
    .map(([name, n]) => `${name} ${n}`)
    .join(', ');

function renderStatusText(output: Parameters<Command['run']>[0]['output'], status: DaemonStatus): void {
  const paint = painter(output.color);
  const color = (s: Pick<ServerStatus, 'state'>) =>
    (s.state === 'running'
      ? 'green'
      : s.state === 'disabled' || s.state === 'stopped'
        ? 'dim'
        : s.state === 'starting'
          ? 'cyan'
          : 'red') as 'green';
  output.out(
    `daemon: ${status.dir} (revision ${status.revision ?? 'none'})` +
      `${status.ready ? '' : ' — not ready'}${status.draining ? ' — draining' : ''}`,
  );
  const store = status.store;
  output.out(`store: ${store.kind} ${store.location}${store.available ? '' : paint('red', ' — unavailable')}`);
  if (store.problem)
    output.out(
      paint(
        'red',
        `    since ${store.problem.since}: ${store.problem.reason}; ` +
          'no mail is fetched, copied, flagged or sent until it answers again',
      ),
    );
  if (status.lastReconcile) {
    output.out(
      `last reconcile: ${status.lastReconcile.outcome} at ${status.lastReconcile.at}: ${status.lastReconcile.message}`,
    );
    renderDiagnosticsText(
      output,
      status.lastReconcile.diagnostics.filter((d) => d.severity === 'error'),
    );
  }
  const group = status.group;
  if (group) renderReplicasText(output, group);
  // in a group, each server's owner and lease epoch between its state and its name
  const ownerWidth = group ? Math.max('OWNER'.length, ...group.replicas.map((r) => r.id.length)) : 0;
  const placed = (s: ServerStatus) =>
    group ? `${(s.owner ?? '-').padEnd(ownerWidth)} ${String(s.epoch ?? '-').padEnd(5)} ` : '';
  if (status.servers.length === 0) output.out('no servers applied yet');
  else if (group) output.out(`${'SERVER'.padEnd(28)} ${'STATE'.padEnd(16)} ${'OWNER'.padEnd(ownerWidth)} EPOCH NAME`);
  for (const s of status.servers) {
    const name = `${s.name}${s.enabled ? '' : ' (disabled)'}`;
    output.out(`${s.id.padEnd(28)} ${paint(color(s), s.state.padEnd(16))} ${placed(s)}${name}`);
    output.out(`    since ${s.since ?? '-'}, last success ${s.lastSuccess ?? 'never'}, revision ${s.revision ?? '-'}`);
    if (s.stale) output.out(paint('red', '    stale: no successful poll for three poll intervals'));
    if (s.lastError) output.out(`    last error: ${s.lastError.class}: ${s.lastError.message} (${s.lastError.at})`);
    if (s.disabledReason) output.out(`    ${s.disabledReason}`);
    if (s.state === 'needs-login')
      output.out(paint('red', `    the OAuth2 provider refuses ${s.credential}: run mailctl auth login ${s.id}`));
    if (Object.keys(s.counters).length) output.out(`    ${countersText(s.counters)}`);
  }
  const system = status.systemSendLoop;
  if (system) {
    output.out(
      `${system.id.padEnd(28)} ${paint(color(system), system.state.padEnd(16))} system send loop (--system-smtp)`,
    );
    if (system.lastError)
      output.out(`    last error: ${system.lastError.class}: ${system.lastError.message} (${system.lastError.at})`);
    if (Object.keys(system.counters).length) output.out(`    ${countersText(system.counters)}`);
  }
  for (const c of status.credentials ?? []) {
    const state = c.needsLogin ? paint('red', 'needs sign-in') : c.lastError ? paint('red', 'failing') : 'ok';
    output.out(`${c.id.padEnd(28)} ${state} (${c.grant}, ${c.servers.join(', ')})`);
    output.out(
      `    last refresh ${c.lastRefresh ?? 'never'}, access token until ${c.accessTokenExpires ?? '-'}` +
        (c.refreshToken ? `, refresh token from ${c.refreshToken.source}` : ''),
    );
    if (c.lastError)
      output.out(
        `    last error: ${c.lastError.providerCode ?? c.lastError.code}: ${c.lastError.message} (${c.lastError.at})`,
      );
  }
  const outbox = status.outbox;
  if (outbox) {
    const damaged = `${outbox.damagedFiles} damaged file(s) set aside in outbox/quarantine/`;
    output.out(
      `outbox: ${outbox.queued} queued, ${outbox.sending} sending, ${outbox.copying} waiting for their sent copy` +
        (outbox.damagedFiles ? `, ${paint('red', damaged)}` : ''),
    );
  }
}

/** A heartbeat's age in at most six characters. */
const ageText = (s: number): string =>
  s < 100 ? `${s.toFixed(1)} s` : s < 6000 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`;

/** The group's replicas: one row each, as the store last showed them (this replica's own row is current). */
function renderReplicasText(output: Parameters<Command['run']>[0]['output'], group: GroupStatus): void {
  const paint = painter(output.color);
  const read = group.readAt === null ? 'the store has not answered yet' : `read ${group.readAt}`;
  output.out(`replicas (asked: ${group.replica}; ${read}):`);
  const width = Math.max('REPLICA'.length, ...group.replicas.map((r) => r.id.length));
  output.out(`  ${'REPLICA'.padEnd(width)} LIVE HEARTBEAT  LOOPS RECONCILER GENERATION DRIFT`);
  for (const r of group.replicas) {
    const cells = [
      r.id.padEnd(width),
      paint(r.live ? 'green' : 'dim', (r.live ? 'yes' : 'no').padEnd(4)),
      `${ageText(r.heartbeatAgeS)} ago`.padEnd(10),
      String(r.loopsOwned).padEnd(5),
      (r.reconciler ? 'yes' : '-').padEnd(10),
      String(r.generation ?? '-').padEnd(10),
      r.drift ? paint('yellow', 'config-drift') : '-',
    ];
    output.out(`  ${cells.join(' ')}`);
  }
}

/** GitHub: a warning per replica whose folder differs from the applied generation (it keeps running that one). */
function renderDriftAnnotations(output: Parameters<Command['run']>[0]['output'], group: GroupStatus | undefined): void {
  for (const r of group?.replicas.filter((r) => r.drift) ?? [])
    output.out(
      `::warning title=mailctl config-drift::replica ${r.id}: its folder differs from the applied generation ` +
        `${r.generation ?? '?'}, which it keeps running`,
    );
}
