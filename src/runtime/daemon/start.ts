/**
 * The daemon's wiring: builds the store, the loops' supervisor, the inbound and outbound stages, the reconciler, the
 * HTTP API and the watcher, and connects them. Nothing here decides anything; each part says what it does.
 */
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { ApplyRequest, ApplyResult } from '../../api/apply.js';
import { isLoopback } from '../../api/discovery.js';
import { SecretResolver } from '../../connect/secrets.js';
import { warmValidators } from '../../config/schema.js';
import type { LoadedServer } from '../../config/model.js';
import { openFileStore } from '../../store/file/index.js';
import { LocalState } from '../../store/local.js';
import { InboundMailProcessor } from '../inbound/processor.js';
import { StalenessWatchdog, watchedServers } from '../loops/staleness.js';
import { Supervisor } from '../loops/supervisor.js';
import { createOutbound } from '../outbound/index.js';
import { inboundMessageId } from '../outbound/stored.js';
import { Reconciler } from '../reconcile/reconciler.js';
import { watchFolders } from '../reconcile/watcher.js';
import { createApiServer } from './http.js';
import { createLogging, type Logging } from './logging.js';
import { ActivityHistory, recordingActivity } from './activity.js';
import { DaemonMetrics } from './metrics.js';
import { applyRoutes } from './routes/apply.js';
import { healthRoutes } from './routes/health.js';
import { outboundRoutes } from './routes/outbound.js';
import { quarantineRoutes } from './routes/quarantine.js';
import { buildStatus } from './status.js';

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
  /** `--smtp-check-interval`: how often an idle SMTP loop checks its connection. */
  smtpCheckIntervalMs?: number;
  /** `--outbox-max`: waiting messages the outbox holds at most. */
  outboxMax?: number;
}

/** SIGTERM must finish within Kubernetes' default 30 s grace period. */
const DRAIN_DEADLINE_MS = 25_000;

export interface RunningDaemon {
  url: string;
  stop(): Promise<void>;
  reconcile(request: ApplyRequest): Promise<ApplyResult>;
}

/** Builds the daemon and connects its parts; resolves once the API listens and the first reconcile ran. */
export async function startDaemon(
  options: DaemonOptions,
  logging: Logging = createLogging({ level: options.logLevel }),
): Promise<RunningDaemon> {
  const { log, scrubber } = logging;
  const local = new LocalState(options.stateDir);
  const store = await openFileStore(local);
  const lock = await store.lock();
  const token = await store.token.establish(undefined);
  const dir = path.resolve(options.dir);
  const metrics = new DaemonMetrics();
  const activity = new ActivityHistory();
  const resolver = new SecretResolver({
    secretsDir: options.secretsDir,
    envPrefix: options.secretEnvPrefix,
    env: options.env,
    onResolved: (value, user) => scrubber.add(value, user),
  });
  const inbound = new InboundMailProcessor({ store: store.inbound, stateDir: options.stateDir, log, resolver });
  const state = () => reconciler.state;
  const outbound = await createOutbound({
    store: store.outbox,
    resolver,
    log,
    state,
    systemSmtp: options.systemSmtp ?? null,
    outboxMax: options.outboxMax,
  });
  const supervisor = new Supervisor({
    log,
    resolver,
    processor: inbound,
    outbound: outbound.consumer,
    recorder: recordingActivity(metrics, activity),
    smtpCheckIntervalMs: options.smtpCheckIntervalMs,
  });
  const reconciler = new Reconciler(
    {
      dir,
      saveFailedAsDisabled: options.saveFailedAsDisabled,
      allowEmpty: options.allowEmpty,
      allowMassDelete: options.allowMassDelete,
    },
    store.applied,
    supervisor,
    resolver,
    log,
    metrics,
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
  /** No enabled SMTP server (nor the system send loop) fails for a reason a retry alone will not fix (TLS, auth). */
  const smtpSending = () => {
    const now = status();
    return (
      now.systemSendLoop?.state !== 'failed' &&
      !now.servers.some((s) => s.type === 'smtp' && s.enabled && s.state === 'failed')
    );
  };
  const readiness = () => ({
    'config-loaded': ready || reconciler.last !== null,
    'first-reconcile': ready,
    'not-draining': !draining,
    'smtp-sending': smtpSending(),
  });

  const routes = [
    ...healthRoutes({ metrics, scrubber, status, readiness, lastHour: (server) => activity.lastHour(server) }),
    ...applyRoutes({ reconcile: (r, p) => reconciler.reconcile(r, p), state, status, draining: () => draining }),
    ...quarantineRoutes(inbound, (server) => supervisor.pollNow(server)),
    ...outboundRoutes({
      outbox: outbound.outbox,
      pool: outbound.pool,
      state,
      systemSmtp: options.systemSmtp ?? null,
      inboundMessageId: (key) =>
        inboundMessageId(key, { inbound: store.inbound, stateDir: options.stateDir, state: state() }),
    }),
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
  await local.writeDiscovery({ url, pid: process.pid, dir });

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
        await local.removeDiscovery();
        await lock.release();
        await store.close();
        log.info('stopped');
      })();
      return stopping;
    },
  };
}
