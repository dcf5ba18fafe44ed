/**
 * Prometheus metrics of the daemon, on a registry of their own, prefix `mailctl_`. Event counts (polls, messages,
 * reconciles) are incremented where they happen through the small API below; everything that is a state (loop
 * state, staleness) is read from the daemon's status at scrape time. Labels are server ids and fixed words only —
 * never addresses or message ids.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import packageJson from '../../../package.json' with { type: 'json' };
import { APPLY_OUTCOMES } from '../../api/apply.js';
import type { DaemonStatus, ServerState } from '../../api/status.js';

const PREFIX = 'mailctl_';
const SERVER_STATES: readonly ServerState[] = [
  'running',
  'starting',
  'backoff',
  'failed',
  'needs-login',
  'stopped',
  'disabled',
  'pending-approval',
];
const OAUTH2_RESULTS = ['ok', 'failed', 'needs-login'] as const;
const SUCCESSFUL_RECONCILES: ReadonlySet<string> = new Set(['applied', 'no-changes']);

/** What a replica of a group exports about its leases. */
export interface GroupGauges {
  replica: string;
  owned: number;
  valid: boolean;
  renewalAgeS: number;
  members: number;
  reconciler: boolean;
}

export class DaemonMetrics {
  readonly registry = new Registry();
  private status: (() => DaemonStatus) | null = null;
  private processMetrics = false;

  private readonly polls = new Counter({
    name: `${PREFIX}imap_polls_total`,
    help: 'IMAP polls by result (ok, failed)',
    labelNames: ['server', 'result'],
    registers: [this.registry],
  });
  private readonly pollDuration = new Histogram({
    name: `${PREFIX}imap_poll_duration_seconds`,
    help: 'Duration of IMAP polls',
    labelNames: ['server'],
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
    registers: [this.registry],
  });
  private readonly delivered = new Counter({
    name: `${PREFIX}messages_delivered_total`,
    help: 'Inbound messages delivered to their sink',
    labelNames: ['server'],
    registers: [this.registry],
  });
  private readonly quarantined = new Counter({
    name: `${PREFIX}messages_quarantined_total`,
    help: 'Inbound messages recorded for quarantine (oversize, unrouted)',
    labelNames: ['server'],
    registers: [this.registry],
  });
  private readonly sent = new Counter({
    name: `${PREFIX}messages_sent_total`,
    help: 'Outbound messages accepted by the SMTP server',
    labelNames: ['server'],
    registers: [this.registry],
  });
  private readonly sendFailed = new Counter({
    name: `${PREFIX}messages_send_failed_total`,
    help:
      'Outbound send attempts that failed: temporary (4xx or network; retried) or permanent (5xx; the message ' +
      'failed)',
    labelNames: ['server', 'kind'],
    registers: [this.registry],
  });
  private readonly loopRestarts = new Counter({
    name: `${PREFIX}loop_restarts_total`,
    help: 'Sessions of a supervised loop that ended with a failure and are retried after a backoff',
    labelNames: ['server'],
    registers: [this.registry],
  });
  private readonly reconciles = new Counter({
    name: `${PREFIX}reconciles_total`,
    help: 'Reconciles by outcome',
    labelNames: ['result'],
    registers: [this.registry],
  });
  private readonly oauth2Refreshes = new Counter({
    name: `${PREFIX}oauth2_refresh_total`,
    help: 'OAuth2 token requests by credential (oauth2/<id>) and result (ok, failed, needs-login)',
    labelNames: ['credential', 'result'],
    registers: [this.registry],
  });
  private readonly oauth2LastSuccess = new Gauge({
    name: `${PREFIX}oauth2_last_refresh_success_timestamp_seconds`,
    help: 'When a token request of the credential last succeeded (Unix time)',
    labelNames: ['credential'],
    registers: [this.registry],
  });
  private readonly lastReconcile = new Gauge({
    name: `${PREFIX}last_successful_reconcile_timestamp_seconds`,
    help: 'When a reconcile last applied or found no changes (Unix time)',
    registers: [this.registry],
  });

  private readonly fenced = new Counter({
    name: `${PREFIX}fenced_writes_total`,
    help: 'Writes about a mailbox refused because a newer owner holds its lease (this replica stopped work on it)',
    labelNames: ['replica'],
    registers: [this.registry],
  });
  private group: (() => GroupGauges) | null = null;

  constructor() {
    const groupNow = (): GroupGauges | undefined => this.group?.();
    const perReplica = (name: string, help: string, value: (g: GroupGauges) => number) =>
      new Gauge({
        name: `${PREFIX}${name}`,
        help,
        labelNames: ['replica'],
        registers: [this.registry],
        collect() {
          this.reset();
          const g = groupNow();
          if (g) this.set({ replica: g.replica }, value(g));
        },
      });
    perReplica('replica_servers_owned', 'Servers whose lease this replica holds (it runs their loops)', (g) => g.owned);
    perReplica('replica_leases_valid', "1 while this replica's leases were renewed within 2/3 of their TTL", (g) =>
      g.valid ? 1 : 0,
    );
    perReplica(
      'replica_lease_renewal_age_seconds',
      'Seconds since this replica last renewed its leases',
      (g) => Math.round(g.renewalAgeS * 1000) / 1000,
    );
    perReplica('group_replicas', 'Live replicas of the group, as this replica last saw them', (g) => g.members);
    perReplica('replica_reconciler', '1 while this replica holds the reconciler lease', (g) => (g.reconciler ? 1 : 0));
    // every result from the start: a series that first appears at 1 is invisible to increase()
    for (const result of APPLY_OUTCOMES) this.reconciles.inc({ result }, 0);
    const statusNow = (): DaemonStatus | undefined => this.status?.();
    new Gauge({
      name: `${PREFIX}build_info`,
      help: 'Version of mailctl and of Node.js',
      labelNames: ['version', 'node'],
      registers: [this.registry],
    }).set({ version: packageJson.version, node: process.versions.node }, 1);
    new Gauge({
      name: `${PREFIX}loop_state`,
      help: 'State of each server (1 for the current state, 0 for the others)',
      labelNames: ['server', 'state'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const server of statusNow()?.servers ?? [])
          for (const state of SERVER_STATES) this.set({ server: server.id, state }, server.state === state ? 1 : 0);
      },
    });
    new Gauge({
      name: `${PREFIX}outbox_messages`,
      help:
        'Messages in the outbox by state: queued (waiting or backing off), sending, copying (sent; the sent ' +
        'copy is pending)',
      labelNames: ['state'],
      registers: [this.registry],
      collect() {
        this.reset();
        const outbox = statusNow()?.outbox;
        if (outbox) for (const state of ['queued', 'sending', 'copying'] as const) this.set({ state }, outbox[state]);
      },
    });
    new Gauge({
      name: `${PREFIX}store_available`,
      help: "Whether the daemon's store answers (1) or not (0: nothing about mail changes until it does), by kind",
      labelNames: ['kind'],
      registers: [this.registry],
      collect() {
        this.reset();
        const store = statusNow()?.store;
        if (store) this.set({ kind: store.kind }, store.available ? 1 : 0);
      },
    });
    new Gauge({
      name: `${PREFIX}server_stale`,
      help: 'Enabled IMAP server with no successful poll for 3 times its poll interval (1) or not (0)',
      labelNames: ['server'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const server of statusNow()?.servers ?? [])
          if (server.type === 'imap' && server.enabled) this.set({ server: server.id }, server.stale ? 1 : 0);
      },
    });
  }

  /** Called by the daemon: gauges read the status on every scrape; also starts the default process metrics. */
  bind(status: () => DaemonStatus): void {
    this.status = status;
    if (!this.processMetrics) collectDefaultMetrics({ register: this.registry, prefix: PREFIX });
    this.processMetrics = true;
  }

  /** A replica of a group: its ownership and lease gauges read `group` on every scrape. */
  bindGroup(group: () => GroupGauges): void {
    this.group = group;
    this.fenced.inc({ replica: group().replica }, 0);
  }

  /** A write about a mailbox was fenced off (a newer owner holds its lease). */
  fencedWrite(): void {
    const g = this.group?.();
    if (g) this.fenced.inc({ replica: g.replica });
  }

  pollFinished(server: string, ok: boolean, seconds: number): void {
    this.polls.inc({ server, result: ok ? 'ok' : 'failed' });
    this.pollDuration.observe({ server }, seconds);
  }

  messagesDelivered(server: string, count = 1): void {
    if (count > 0) this.delivered.inc({ server }, count);
  }

  messagesQuarantined(server: string, count = 1): void {
    if (count > 0) this.quarantined.inc({ server }, count);
  }

  /** One send attempt of the SMTP loop `server` (e.g. `smtp/support`, `system:smtp/noreply`). */
  outboundMessage(server: string, outcome: 'sent' | 'deferred' | 'failed'): void {
    if (outcome === 'sent') this.sent.inc({ server });
    else this.sendFailed.inc({ server, kind: outcome === 'deferred' ? 'temporary' : 'permanent' });
  }

  /**
   * A loop for `server` exists: its counters are exported at 0 from now on. A series that first appears at 1 has no
   * increase for rate() and increase() to see, so a server's first quarantine or send failure would raise no alert.
   */
  loopCreated(server: string, type: 'imap' | 'smtp'): void {
    this.loopRestarts.inc({ server }, 0);
    if (type === 'imap') {
      for (const result of ['ok', 'failed']) this.polls.inc({ server, result }, 0);
      this.delivered.inc({ server }, 0);
      this.quarantined.inc({ server }, 0);
    } else {
      this.sent.inc({ server }, 0);
      for (const kind of ['temporary', 'permanent']) this.sendFailed.inc({ server, kind }, 0);
    }
  }

  loopRestarted(server: string): void {
    this.loopRestarts.inc({ server });
  }

  /** An OAuth2 credential is in use: its refresh counters are exported at 0 from now on. */
  credentialSeen(credential: string): void {
    for (const result of OAUTH2_RESULTS) this.oauth2Refreshes.inc({ credential, result }, 0);
  }

  refreshed(credential: string, result: (typeof OAUTH2_RESULTS)[number], at: Date): void {
    this.oauth2Refreshes.inc({ credential, result });
    if (result === 'ok') this.oauth2LastSuccess.set({ credential }, at.getTime() / 1000);
  }

  reconciled(outcome: string, at: Date = new Date()): void {
    this.reconciles.inc({ result: outcome });
    if (SUCCESSFUL_RECONCILES.has(outcome)) this.lastReconcile.set(at.getTime() / 1000);
  }

  async text(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

/** The process's metrics (one daemon per process). */
export const metrics = new DaemonMetrics();
