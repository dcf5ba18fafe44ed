import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { SecretResolver } from '../../connect/secrets.js';
import { warmValidators } from '../../config/schema.js';
import type { LoadedServer } from '../../config/model.js';
import { stateDigest } from '../../plan/compute.js';
import { PLAN_FORMAT_VERSION } from '../../plan/model.js';
import { createApiServer, type Route } from './http.js';
import { createLogging, type Logging } from './logging.js';
import { metrics } from './metrics.js';
import { isLoopback } from '../paths.js';
import { Reconciler, type ReconcileRequest } from '../reconcile/reconciler.js';
import { StateStore } from '../state-store.js';
import { buildStatus } from './status.js';
import { InboundMailProcessor } from '../inbound/processor.js';
import { StalenessWatchdog, watchedServers } from '../loops/staleness.js';
import { publicStatus, STATUS_PAGE_HTML } from './status-page.js';
import { quarantineRoutes } from './routes/quarantine.js';
import { createOutbound } from '../outbound/index.js';
import { Supervisor } from '../loops/supervisor.js';
import { watchFolders } from '../reconcile/watcher.js';

export interface DaemonOptions {
  dir: string;
  stateDir: string;
  listen: { host: string; port: number };
  watch: boolean;
  saveFailedAsDisabled: boolean;
  allowEmpty: boolean;
  allowMassDelete: boolean;
  secretsDir: string;
  secretEnvPrefix: string;
  logLevel: string;
  env: NodeJS.ProcessEnv;
  /** `--system-smtp`: the SMTP server for template emails when no server has `role: template`. */
  systemSmtp?: LoadedServer | null;
}

/** SIGTERM must finish within Kubernetes' default 30 s grace period. */
const DRAIN_DEADLINE_MS = 25_000;

export interface RunningDaemon {
  url: string;
  stop(): Promise<void>;
  reconcile(request: ReconcileRequest): ReturnType<Reconciler['reconcile']>;
}

function approvalsOf(body: Record<string, unknown>): string[] {
  return Array.isArray(body.approvals) ? body.approvals.filter((a): a is string => typeof a === 'string') : [];
}

/** Wires the state folder, loops, reconciler, API and watcher together. */
export async function startDaemon(
  options: DaemonOptions,
  logging: Logging = createLogging({ level: options.logLevel }),
): Promise<RunningDaemon> {
  const { log, scrubber } = logging;
  const store = new StateStore(options.stateDir);
  await store.init();
  const releaseLock = await store.acquireLock();
  const token = await store.apiToken();
  const dir = path.resolve(options.dir);
  const resolver = new SecretResolver({
    secretsDir: options.secretsDir,
    envPrefix: options.secretEnvPrefix,
    env: options.env,
    onResolved: (value, user) => scrubber.add(value, user),
  });
  const inbound = new InboundMailProcessor({ stateDir: options.stateDir, log, resolver });
  const outbound = await createOutbound({
    stateDir: options.stateDir,
    resolver,
    log,
    state: () => reconciler.state,
    systemSmtp: options.systemSmtp ?? null,
  });
  const supervisor = new Supervisor({ log, resolver, processor: inbound, outbound: outbound.consumer });
  const reconciler = new Reconciler(
    {
      dir,
      saveFailedAsDisabled: options.saveFailedAsDisabled,
      allowEmpty: options.allowEmpty,
      allowMassDelete: options.allowMassDelete,
    },
    store,
    supervisor,
    resolver,
    log,
  );
  let ready = false;
  let draining = false;
  const watchdog = new StalenessWatchdog(log);
  const watchdogTimer = setInterval(
    () => watchdog.check(watchedServers(reconciler.state, supervisor.statuses())),
    1000,
  ).unref();

  const status = () =>
    buildStatus({
      systemSmtp: options.systemSmtp?.id ?? null,
      systemLoopId: outbound.systemLoopId,
      outbox: outbound.outboxSummary(),
      dir,
      ready,
      draining,
      applied: reconciler.state,
      loops: supervisor.statuses(),
      pendingApproval: reconciler.pendingApproval,
      last: reconciler.last,
      stale: watchdog.staleIds,
    });
  metrics.bind(status);
  const checks = () => ({
    'config-loaded': ready || reconciler.last !== null,
    'first-reconcile': ready,
    'not-draining': !draining,
  });

  const livez: Route['handler'] = (_r, _b, url) => ({
    status: 200,
    body: url.searchParams.has('verbose') ? '[+]ping ok\nlivez check passed\n' : 'ok\n',
  });
  const routes: Route[] = [
    { method: 'GET', path: '/livez', public: true, handler: livez },
    // deprecated in Kubernetes since 1.16; kept as an alias of /livez, so a probe that still uses it never kills a draining daemon
    { method: 'GET', path: '/healthz', public: true, handler: livez },
    {
      method: 'GET',
      path: '/metrics',
      public: true,
      handler: () => metrics.text().then(({ contentType, body }) => ({ status: 200, body, type: contentType })),
    },
    {
      method: 'GET',
      path: '/',
      public: true,
      handler: () => ({ status: 200, body: STATUS_PAGE_HTML, type: 'text/html; charset=utf-8' }),
    },
    {
      method: 'GET',
      path: '/status.json',
      public: true,
      handler: () => ({
        status: 200,
        body: scrubber.scrub(JSON.stringify(publicStatus(status()))),
        type: 'application/json',
      }),
    },
    {
      method: 'GET',
      path: '/readyz',
      public: true,
      handler: (_r, _b, url) => {
        const results = checks();
        const ok = Object.values(results).every(Boolean);
        const verbose = Object.entries(results)
          .map(([name, passed]) => `[${passed ? '+' : '-'}]${name} ${passed ? 'ok' : 'failed'}`)
          .join('\n');
        return {
          status: ok ? 200 : 503,
          body: url.searchParams.has('verbose')
            ? `${verbose}\nreadyz check ${ok ? 'passed' : 'failed'}\n`
            : ok
              ? 'ok\n'
              : 'not ready\n',
        };
      },
    },
    ...quarantineRoutes(inbound, supervisor),
    ...outbound.routes,
    {
      method: 'GET',
      path: '/v1/status',
      handler: () => ({ status: 200, body: { formatVersion: PLAN_FORMAT_VERSION, ...status() } }),
    },
    {
      method: 'GET',
      path: '/v1/state',
      handler: () => ({
        status: 200,
        body: {
          formatVersion: PLAN_FORMAT_VERSION,
          kind: 'mailctl-state',
          stateDigest: stateDigest(reconciler.state),
          state: reconciler.state,
        },
      }),
    },
    {
      method: 'POST',
      path: '/v1/apply',
      handler: async (_r, raw) => {
        const body = (raw ?? {}) as Record<string, unknown>;
        if (draining) return { status: 503, body: { error: 'the daemon is shutting down' } };
        const savedPlan = body.savedPlan as ReconcileRequest['savedPlan'] | undefined;
        const result = await reconciler.reconcile({
          trigger: typeof body.trigger === 'string' ? body.trigger : 'cli',
          approvals: approvalsOf(body),
          dryRun: body.dryRun === true,
          saveFailedAsDisabled: body.saveFailedAsDisabled === true ? true : undefined,
          ...(typeof body.folderDigest === 'string' && { expectedFolderDigest: body.folderDigest }),
          ...(savedPlan && { savedPlan }),
        });
        return { status: 200, body: { formatVersion: PLAN_FORMAT_VERSION, ...result } };
      },
    },
  ];

  if (!isLoopback(options.listen.host))
    log.warn({ listen: options.listen.host }, 'the API listens beyond loopback (--allow-remote)');
  const server = createApiServer(routes, token, log);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.listen.port, options.listen.host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  await store.writeDiscovery({ url, pid: process.pid, dir });

  const resumed = await reconciler.resume();
  await outbound.start(supervisor);
  log.info({ url, dir, stateDir: options.stateDir, resumed }, 'mailctl daemon started');
  let watcher: { close(): Promise<void> } | null = null;
  if (options.watch) {
    await reconciler.reconcile({ trigger: 'start' });
    watcher = await watchFolders(
      { config: dir, secrets: options.secretsDir },
      () => void reconciler.reconcile({ trigger: 'watch' }),
    );
  }
  setImmediate(warmValidators); // off the request path: the first `apply` would otherwise compile them
  ready = true;

  let stopping: Promise<void> | null = null;
  return {
    url,
    reconcile: (request) => reconciler.reconcile(request),
    stop() {
      stopping ??= (async () => {
        draining = true;
        clearInterval(watchdogTimer);
        log.info('draining: stopping loops');
        await watcher?.close();
        const deadline = new Promise<void>((resolve) => setTimeout(resolve, DRAIN_DEADLINE_MS).unref());
        await Promise.race([supervisor.stopAll(), deadline]);
        await outbound.stop();
        server.closeAllConnections?.();
        await new Promise<void>((resolve) => server.close(() => resolve()));
        await store.removeDiscovery();
        await releaseLock();
        log.info('stopped');
      })();
      return stopping;
    },
  };
}
