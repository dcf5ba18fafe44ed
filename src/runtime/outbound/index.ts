/** The outbound stage: the outbox, the send stage the SMTP loops run, and the sent copies. */
import type { Logger } from 'pino';
import type { OutboxSummary } from '../../api/status.js';
import type { LoadedServer } from '../../config/model.js';
import type { SecretResolver } from '../../connect/secrets.js';
import type { ObservedState } from '../../plan/model.js';
import type { OutboxStore, StoreHealth } from '../../store/ports.js';
import { BurstGarbageRelease } from '../loops/memory.js';
import type { Supervisor } from '../loops/supervisor.js';
import { systemLoopId } from './from.js';
import { ImapPool } from './imap-pool.js';
import { Outbox } from './outbox.js';
import { OutboundSender, type OutboundConsumer } from './sender.js';

export type { OutboundConsumer } from './sender.js';

/** Messages through the outbox, since it was last empty, from which its draining is followed by a full GC. */
const LARGE_BACKLOG = 5_000;

export interface Outbound {
  outbox: Outbox;
  /** Connections to the IMAP servers that keep sent copies (also used to read stored mail). */
  pool: ImapPool;
  consumer: OutboundConsumer;
  /** Supervisor id of the `--system-smtp` send loop, or null. */
  systemLoopId: string | null;
  outboxSummary(): OutboxSummary;
  /** Starts the `--system-smtp` send loop (when given). */
  start(supervisor: Supervisor): Promise<void>;
  stop(): Promise<void>;
}

export async function createOutbound(deps: {
  store: OutboxStore;
  /** While the store cannot record a send, nothing is sent. */
  health?: StoreHealth;
  resolver: SecretResolver;
  log: Logger;
  state: () => ObservedState;
  systemSmtp: LoadedServer | null;
  /** `--outbox-max` (default OUTBOX_MAX). */
  outboxMax?: number | undefined;
}): Promise<Outbound> {
  const log = deps.log.child({ stage: 'outbound' });
  const mib = (bytes: number) => Math.round(bytes / 1048576);
  // a drained backlog of many messages leaves their garbage in the old generation of an idle daemon: given back at once
  const garbage = new BurstGarbageRelease({
    threshold: LARGE_BACKLOG,
    onReleased: ({ connections, heapBeforeBytes, heapAfterBytes }) =>
      log.info(
        { messages: connections, heapUsedMiB: { before: mib(heapBeforeBytes), after: mib(heapAfterBytes) } },
        'memory given back after the outbox drained',
      ),
  });
  const outbox = new Outbox(deps.store, log, deps.outboxMax, garbage);
  await outbox.load();
  const pool = new ImapPool(deps.resolver);
  const system = deps.systemSmtp;
  const smtpUser = (serverId: string): string | null => {
    if (system && serverId === systemLoopId(system)) return system.spec.auth.user;
    return deps.state().servers[serverId]?.config.spec.auth.user ?? null;
  };
  const consumer = new OutboundSender({ outbox, pool, state: deps.state, smtpUser, log, health: deps.health });
  if (outbox.size()) log.info({ queued: outbox.size(), quarantined: outbox.quarantined }, 'outbox loaded');
  return {
    outbox,
    pool,
    consumer,
    systemLoopId: system ? systemLoopId(system) : null,
    outboxSummary: () => outbox.summary(),
    async start(supervisor) {
      if (system?.spec.type === 'smtp') await supervisor.start(systemLoopId(system), { spec: system.spec });
    },
    async stop() {
      await pool.closeAll();
      await outbox.close();
    },
  };
}
