/**
 * The daemon's wiring: builds the store, the loops' supervisor, the inbound and outbound stages, the reconciler, the
 * HTTP API and the watcher, and connects them. Nothing here decides anything; each part says what it does.
 */
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import path from 'node:path';
import type { ApplyRequest, ApplyResult } from '../../api/apply.js';
import { isLoopback } from '../../api/discovery.js';
import { loadCredentialsKey } from '../../connect/credentials-key.js';
import { SecretResolver } from '../../connect/secrets.js';
import { warmValidators } from '../../config/schema.js';
import type { LoadedServer } from '../../config/model.js';
import { LocalState } from '../../store/local.js';
import { Credentials } from '../credentials/manager.js';
import { openStore, type StoreSpec } from '../../store/open.js';
import { type LeaseLostError } from '../../store/errors.js';
import { DEFAULT_LEASE_TTL_S, RECONCILER_LEASE, type ReplicaSnapshot } from '../../store/group-ports.js';
import { type Store, type StoreLock } from '../../store/ports.js';
import { InboundMailProcessor } from '../inbound/processor.js';
import { sinkDirRefusal } from '../inbound/sinks/directory.js';
import { StalenessWatchdog, watchedServers } from '../loops/staleness.js';
import { Supervisor } from '../loops/supervisor.js';
import { createOutbound } from '../outbound/index.js';
import { inboundMessageId } from '../outbound/stored.js';
import { Reconciler, type LoopControl } from '../reconcile/reconciler.js';
import { ReplicaGroup } from '../group/replica.js';
import { advertisedUrl, directorySinkRefusal, groupStatus, replicaSnapshot } from '../group/daemon.js';
import { watchFolders } from '../reconcile/watcher.js';
import { createApiServer, HttpError } from './http.js';
import { forward } from '../group/forward.js';
import { scrubbingStore } from './scrubbed-store.js';
import { createLogging, type Logging } from './logging.js';
import { ActivityHistory, recordingActivity } from './activity.js';
import { DaemonMetrics } from './metrics.js';
import { applyRoutes } from './routes/apply.js';
import { credentialRoutes } from './routes/credentials.js';
import { healthRoutes } from './routes/health.js';
import { outboundRoutes } from './routes/outbound.js';
import { quarantineRoutes } from './routes/quarantine.js';
import { buildStatus } from './status.js';

export interface DaemonOptions {
  dir: string;
  stateDir: string;
  /** Where the state is kept (`--store`): the state folder, or a PostgreSQL store. */
  store: StoreSpec;
  /** The API token from `--token-file` (required with a PostgreSQL store), else the store's own. */
  token?: string;
  listen: { host: string; port: number };
  watch: boolean;
  saveFailedAsDisabled: boolean;
  allowEmpty: boolean;
  allowMassDelete: boolean;
  secretsDir: string;
  secretEnvPrefix: string;
  /** `--ca-dir`: the folders a server's tlsCaFile must lead into. */
  caDirs: readonly string[];
  /** `--credentials-key-file`; without it the store's own key file (created on first start). */
  credentialsKeyFile?: string;
  /** `--public-host`: names the API answers for besides IP addresses and `localhost` (lower case). */
  publicHosts: readonly string[];
  /** `--sink-root`: the folders a flow's `deliver.directory` must lead into. */
  sinkRoots: readonly string[];
  logLevel: string;
  env: NodeJS.ProcessEnv;
  /** `--system-smtp`: the SMTP server for template emails when no server has `role: template`. */
  systemSmtp?: LoadedServer | null;
  /** `--smtp-check-interval`: how often an idle SMTP loop checks its connection. */
  smtpCheckIntervalMs?: number;
  /** `--outbox-max`: waiting messages the outbox holds at most. */
  outboxMax?: number;
  /** A PostgreSQL store: this daemon as a replica of the store's group (`--replica-id`, `--lease-ttl`, …). */
  replica?: { id: string; leaseTtlS: number; sinkShared: boolean; advertiseUrl?: string | undefined };
}

/** SIGTERM must finish within Kubernetes' default 30 s grace period. */
const DRAIN_DEADLINE_MS = 25_000;

export interface RunningDaemon {
  url: string;
  stop(): Promise<void>;
  reconcile(request: ApplyRequest): Promise<ApplyResult>;
  /** Settles if another daemon takes the store over: this one has stopped writing and must exit. */
  lost: Promise<LeaseLostError>;
}

/** Builds the daemon and connects its parts; resolves once the API listens and the first reconcile ran. */
export async function startDaemon(
  options: DaemonOptions,
  logging: Logging = createLogging({ level: options.logLevel }),
): Promise<RunningDaemon> {
  const local = new LocalState(options.stateDir);
  // every text the daemon stores passes the logs' scrubber (scrubbed-store.ts)
  const store = scrubbingStore(
    await openStore(options.store, {
      local,
      env: options.env,
      log: logging.log,
      leaseTtlS: options.replica?.leaseTtlS,
    }),
    logging.scrubber,
  );
  let lock: StoreLock | null = null;
  try {
    const keyFile = options.credentialsKeyFile ?? store.ownCredentialsKeyFile;
    if (keyFile === null)
      throw Object.assign(
        new Error(`the ${store.kind} store needs --credentials-key-file (the same file for every daemon on it)`),
        { code: 'credentials-key' },
      );
    // a store shared by a group is joined after the API listens (the others reach this replica there)
    if (!store.group) lock = await store.lock();
    return await startOnStore(options, logging, local, store, lock, keyFile);
  } catch (err) {
    // a daemon that did not start holds nothing, and leaves nothing (a pool, a timer) keeping the process alive
    await lock?.release().catch(() => undefined);
    await store.close().catch(() => undefined);
    throw err;
  }
}

async function startOnStore(
  options: DaemonOptions,
  { log, scrubber }: Logging,
  local: LocalState,
  store: Store,
  lock: StoreLock | null,
  keyFile: string,
): Promise<RunningDaemon> {
  let loseGroup: (err: LeaseLostError) => void = () => undefined;
  const lost = new Promise<LeaseLostError>((resolve) => {
    lock?.onLost(resolve);
    loseGroup = resolve;
  });
  void lost.then((err) => log.fatal({ store: store.location }, err.message));
  const token = await store.token.establish(options.token);
  // clients on this machine find the token next to daemon.json, whatever the store keeps
  if (store.kind !== 'file') await local.writeToken(token);
  const dir = path.resolve(options.dir);
  const metrics = new DaemonMetrics();
  const credentialsKey = await loadCredentialsKey(keyFile, {
    create: options.credentialsKeyFile === undefined,
    what:
      options.credentialsKeyFile === undefined ? `the credentials key ${keyFile}` : `--credentials-key-file ${keyFile}`,
    warn: (message) => log.warn(message),
    onRead: (text) => scrubber.add(text),
  });
  const activity = new ActivityHistory();
  const credentials = new Credentials({
    store: store.credentials,
    key: credentialsKey,
    log,
    recorder: metrics,
    sensitive: (value, user) => scrubber.add(value, user),
  });
  const resolver = new SecretResolver({
    secretsDir: options.secretsDir,
    envPrefix: options.secretEnvPrefix,
    caDirs: options.caDirs,
    env: options.env,
    onResolved: (value, user) => scrubber.add(value, user),
    onWarning: (message) => log.warn(message),
    accessTokens: credentials,
  });
  // set once this daemon is a replica of its store's group (a PostgreSQL store)
  let group: ReplicaGroup | null = null;
  const inbound = new InboundMailProcessor({
    store: store.inbound,
    health: store.health,
    stateDir: options.stateDir,
    sinkRoots: options.sinkRoots,
    log,
    resolver,
    guard: (server) => group?.guard(server),
    directoryRefusal: () =>
      group ? directorySinkRefusal(group.liveMembers.length, options.replica?.sinkShared) : null,
  });
  const state = () => reconciler.state;
  const outbound = await createOutbound({
    store: store.outbox,
    health: store.health,
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
    signIns: credentials,
  });
  let started = false;
  if (store.group) {
    const replica = options.replica ?? { id: hostname(), leaseTtlS: DEFAULT_LEASE_TTL_S, sinkShared: false };
    group = new ReplicaGroup({
      store: store.group,
      me: {
        id: replica.id,
        pid: process.pid,
        host: hostname(),
        url: '',
        ttlS: replica.leaseTtlS,
        sinkShared: replica.sinkShared,
      },
      supervisor,
      log,
      snapshot: (): ReplicaSnapshot => replicaSnapshot(reconciler, supervisor, group!),
      onGeneration: () =>
        void (
          started &&
          reconciler
            .follow()
            .catch((err: unknown) =>
              log.error({ err: (err as Error).message }, 'could not follow the applied configuration'),
            )
        ),
      onReconciler: () => void (started && options.watch && reconciler.reconcile({ trigger: 'reconciler-lease' })),
      onLost: (err) => loseGroup(err),
      onFenced: () => metrics.fencedWrite(),
      onOutbox: (server) => outbound.outbox.notify(server),
    });
  }
  const loops: LoopControl = group ?? supervisor;
  const reconciler: Reconciler = new Reconciler(
    {
      dir,
      saveFailedAsDisabled: options.saveFailedAsDisabled,
      allowEmpty: options.allowEmpty,
      allowMassDelete: options.allowMassDelete,
      credentialsKey,
      credentials,
      sinks: { store: store.kind, prepareQueue: (table) => store.inbound.prepareQueue(table) },
      ...(group && { leads: () => group.holdsReconciler() }),
      refusals: async (desired) => {
        const found = new Set<string>();
        if (group && Object.values(desired.servers).some((s) => s.spec.enabled && s.flow?.deliver.directory)) {
          // every live replica must say its sink roots are one shared file system
          const live = (await store.group!.view()).replicas.filter((r) => r.live);
          const refusal = directorySinkRefusal(
            live.length,
            live.every((r) => r.sinkShared),
          );
          if (refusal) found.add(refusal);
        }
        for (const [id, { spec, flow }] of Object.entries(desired.servers)) {
          if (!spec.enabled) continue;
          const ca = spec.tlsCaFile !== undefined && (await resolver.caFileRefusal(spec.tlsCaFile));
          if (ca) found.add(`${id}: ${ca}`);
          const sink =
            flow?.deliver.directory !== undefined && (await sinkDirRefusal(options.stateDir, flow, options.sinkRoots));
          if (sink) found.add(sink); // once per flow, however many servers use it
        }
        return [...found];
      },
    },
    store.applied,
    loops,
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

  const storeStatus = () => {
    const problem = store.health.problem();
    return { kind: store.kind, location: store.location, available: problem === null, problem };
  };
  const status = () =>
    buildStatus({
      store: storeStatus(),
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
      credentials,
    });
  metrics.bind(status);
  // a replica's status shows its group too (`status` from any replica, the status page)
  const inGroup = group && groupStatus(store.group!, group.id, reconciler);
  const statusWithGroup = async () => (inGroup ? inGroup(status()) : status());
  if (group) {
    const g = group;
    metrics.bindGroup(() => ({
      replica: g.id,
      owned: g.leases().filter((l) => l.name !== RECONCILER_LEASE).length,
      valid: g.valid(),
      renewalAgeS: Number.isFinite(g.renewalAgeS()) ? g.renewalAgeS() : 0,
      members: g.liveMembers.length,
      reconciler: g.holdsReconciler(),
    }));
  }
  // whether the daemon can serve: one failing mail server must not take the API of all the others out of a Service
  // (status --check, the status page and the alerts show per-server health)
  const readiness = () => ({
    'config-loaded': ready || reconciler.last !== null,
    'first-reconcile': ready,
    'not-draining': !draining,
    // without its store the daemon changes nothing: traffic (new outbound mail) belongs elsewhere meanwhile
    store: store.health.problem() === null,
    // a replica whose leases were not renewed in time holds no valid view of them (its loops are stopped)
    ...(group && { leases: group.valid() }),
  });

  /** The URL of the live replica holding `lease` when it is not this one (a request about it goes there). */
  const holderElsewhere = async (lease: string): Promise<string | null> => {
    if (!group || group.holds(lease)) return null;
    const view = await store.group!.view();
    const holder = view.leases[lease]?.holder;
    const url = view.replicas.find((r) => r.id === holder && r.live)?.url;
    if (!url)
      throw new HttpError(
        503,
        `no live replica holds ${lease} now; try again in a few seconds`,
        {},
        { 'retry-after': '5' },
      );
    return url;
  };

  const routes = [
    ...healthRoutes({
      metrics,
      status: statusWithGroup,
      readiness,
      lastHour: (server) => activity.lastHour(server),
      drift: () => (reconciler.drift ? reconciler.generation : null),
    }),
    ...applyRoutes({
      reconcile: (r, p) => reconciler.reconcile(r, p),
      state,
      storeKind: store.kind,
      status: statusWithGroup,
      draining: () => draining,
      ...(group && { reconcilerElsewhere: () => holderElsewhere(RECONCILER_LEASE), forward }),
    }),
    ...quarantineRoutes(
      inbound,
      (server) => supervisor.pollNow(server),
      group ? { ownerElsewhere: (server) => holderElsewhere(server), forward } : undefined,
    ),
    ...credentialRoutes({
      credentials,
      resolver,
      servers: () => reconciler.knownServers(),
      desiredServer: (id, approved) => reconciler.desiredServer(id, approved),
      recordSignIn: (entry) => reconciler.recordSignIn(entry),
      draining: () => draining,
    }),
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
  const server = createApiServer(routes, {
    token,
    log,
    scrub: (text) => scrubber.scrub(text),
    publicHosts: options.publicHosts,
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.listen.port, options.listen.host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  if (group) {
    try {
      await group.join(options.replica?.advertiseUrl ?? advertisedUrl(address));
    } catch (err) {
      server.closeAllConnections?.();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      throw err;
    }
  }
  await local.writeDiscovery({ url, pid: process.pid, dir });

  const resumed = await reconciler.resume();
  await outbound.start(loops);
  log.info({ url, dir, stateDir: options.stateDir, store: store.location, resumed }, 'mailctl daemon started');
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
  started = true;
  if (group) void reconciler.follow().catch(() => undefined); // a generation applied while this one started

  let stopping: Promise<void> | null = null;
  return {
    url,
    lost,
    reconcile: (request) => reconciler.reconcile(request),
    stop() {
      stopping ??= (async () => {
        draining = true;
        clearInterval(watchdogTimer);
        log.info('draining: stopping loops');
        await watcher?.close();
        const deadline = new Promise<void>((resolve) => setTimeout(resolve, DRAIN_DEADLINE_MS).unref());
        // a replica gives every lease up at once once its loops stopped: the others take over within a second or two
        await Promise.race([group ? group.leave() : supervisor.stopAll(), deadline]);
        await outbound.stop();
        server.closeAllConnections?.();
        await new Promise<void>((resolve) => server.close(() => resolve()));
        await local.removeDiscovery();
        await group?.leave();
        await lock?.release();
        await store.close();
        log.info('stopped');
      })();
      return stopping;
    },
  };
}
