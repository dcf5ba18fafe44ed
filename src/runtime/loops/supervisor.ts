import type { Logger } from 'pino';
import type { SecretResolver } from '../../connect/secrets.js';
import type { ImapServerSpec } from '../../config/model.js';
import type { ServerConfig } from '../../plan/model.js';
import { CONNECT_CONCURRENCY, ConnectGate } from './connect-gate.js';
import type { LoopStatus, SignInWaiter, SupervisedLoop } from './loop.js';
import { imapLogger } from '../../adapters/imap-log.js';
import type { LoopRecorder } from './recorder.js';
import { BurstGarbageRelease } from './memory.js';
import { ImapLoop, openImap, statusOnlyProcessor, type InboundProcessor, type OpenedImap } from './imap-loop.js';
import { PollClock } from './poll-clock.js';
import { SmtpLoop } from './smtp-loop.js';
import type { OutboundConsumer } from '../outbound/sender.js';

interface RunningLoop {
  loop: SupervisedLoop;
  /** Digest of the secrets the loop was started with (never persisted). */
  secretDigest: string | undefined;
}

export interface SupervisorDeps {
  log: Logger;
  resolver: SecretResolver;
  processor?: InboundProcessor;
  /** The outbound stage: each SMTP loop consumes its outbox queue through it. */
  outbound?: OutboundConsumer;
  /** Where loops report polls and sends (the daemon's metrics). */
  recorder: LoopRecorder;
  /** Where a loop whose OAuth2 grant needs a sign-in waits for one (the daemon's credentials). */
  signIns?: SignInWaiter;
  /** How often an idle SMTP loop checks its connection (default SMTP_CHECK_INTERVAL_MS). */
  smtpCheckIntervalMs?: number | undefined;
}

/**
 * Owns the running loops: one per enabled server, started, updated in place, restarted or stopped by the reconciler.
 */
export class Supervisor {
  private readonly loops = new Map<string, RunningLoop>();
  /** Shared by every IMAP loop: a thousand loops started together connect in waves, and their garbage is given back. */
  private readonly connectGate: ConnectGate;
  private readonly pollClock = new PollClock();

  constructor(private readonly deps: SupervisorDeps) {
    const mib = (bytes: number) => Math.round(bytes / 1048576);
    const garbage = new BurstGarbageRelease({
      onReleased: ({ connections, heapBeforeBytes, heapAfterBytes }) =>
        deps.log.info(
          { connections, heapUsedMiB: { before: mib(heapBeforeBytes), after: mib(heapAfterBytes) } },
          'memory given back after a burst of connections',
        ),
    });
    this.connectGate = new ConnectGate(CONNECT_CONCURRENCY, garbage);
  }

  private loopLog(id: string, config: ServerConfig) {
    return this.deps.log.child({ server: id, loop: config.spec.type === 'imap' ? 'poll' : 'send' });
  }

  private create(id: string, config: ServerConfig, opened?: OpenedImap): SupervisedLoop {
    const log = this.loopLog(id, config);
    return config.spec.type === 'imap'
      ? new ImapLoop(
          id,
          config,
          log,
          {
            resolver: this.deps.resolver,
            processor: this.deps.processor ?? statusOnlyProcessor,
            connectGate: this.connectGate,
            pollClock: this.pollClock,
            recorder: this.deps.recorder,
            imapLogger: imapLogger(log),
            signIns: this.deps.signIns,
          },
          opened,
        )
      : new SmtpLoop(id, config, log, {
          resolver: this.deps.resolver,
          recorder: this.deps.recorder,
          outbound: this.deps.outbound,
          checkIntervalMs: this.deps.smtpCheckIntervalMs,
          signIns: this.deps.signIns,
        });
  }

  has(id: string): boolean {
    return this.loops.has(id);
  }

  get(id: string): SupervisedLoop | undefined {
    return this.loops.get(id)?.loop;
  }

  /**
   * Opens the connection an IMAP server's loop will use, as the loop opens it (apply's verification); `start` hands it
   * over, so an apply logs in once per server, not twice. Throws MailError.
   */
  async openFor(id: string, config: ServerConfig & { spec: ImapServerSpec }, signal: AbortSignal): Promise<OpenedImap> {
    return this.connectGate.run(
      () => openImap(config.spec, this.deps.resolver, imapLogger(this.loopLog(id, config))),
      signal,
    );
  }

  /**
   * Starts (or replaces) the loop of `id`; the old one is stopped first so one mailbox never has two pollers. `opened`:
   * a connection from `openFor` for the new loop's first session.
   */
  async start(id: string, config: ServerConfig, secretDigest?: string, opened?: OpenedImap): Promise<void> {
    await this.stop(id);
    const loop = this.create(id, config, opened);
    this.loops.set(id, { loop, secretDigest });
    loop.start();
  }

  /** Asks an IMAP server's loop to poll now (after a quarantine release); nothing for other loops. */
  pollNow(id: string): void {
    const loop = this.loops.get(id)?.loop;
    if (loop instanceof ImapLoop) void loop.requestPoll();
  }

  update(id: string, config: ServerConfig): void {
    this.loops.get(id)?.loop.update(config);
  }

  async stop(id: string): Promise<void> {
    const running = this.loops.get(id);
    if (!running) return;
    this.loops.delete(id);
    await running.loop.stop();
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.loops.keys()].map((id) => this.stop(id)));
  }

  secretDigests(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [id, { secretDigest }] of this.loops) if (secretDigest) out[id] = secretDigest;
    return out;
  }

  statuses(): Map<string, LoopStatus> {
    return new Map([...this.loops].map(([id, { loop }]) => [id, loop.status()]));
  }

  ids(): string[] {
    return [...this.loops.keys()];
  }
}
