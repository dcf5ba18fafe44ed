import type { Logger } from 'pino';
import { classifyMailError, errorContext, type ClassifyContext } from '../../adapters/classify.js';
import { openMailbox, type ImapLogger, type Mailbox, type VerifyImapResult } from '../../adapters/imap.js';
import { resolveConnection } from '../../connect/connection.js';
import type { SecretResolver } from '../../connect/secrets.js';
import type { ImapServerSpec } from '../../config/model.js';
import type { ServerConfig } from '../../plan/model.js';
import type { ConnectGate } from './connect-gate.js';
import type { PollClock } from './poll-clock.js';
import { SupervisedLoop, type SignInWaiter } from './loop.js';
import type { LoopRecorder } from './recorder.js';

/** How soon imapflow starts IDLE after a command: low, so new mail is noticed within about a second. */
export const AUTO_IDLE_DELAY_MS = 500;

/** Failures after which the processor paused the server, and the counter of each. */
const PAUSES = new Map([
  ['SinkUnavailable', 'sink_paused'],
  ['StoreUnavailable', 'store_paused'],
]);

/** What one poll did, added to the loop's counters (shown by `status`). */
export interface PollStats {
  delivered: number;
  quarantined: number;
  duplicates: number;
  /** When the earliest retry is due: the loop polls again then instead of waiting for the schedule. */
  nextPollInMs?: number;
  /** Nothing was polled: the flow's sink is down and the server waits for the pause to end (not a success). */
  sinkPaused?: boolean;
}

/** Poll failures of the connection or one command end the session or go away with the next poll; these do not. */
const SESSION_FAILURES: ReadonlySet<string> = new Set(['network', 'throttled']);

/** What a poll does with the selected folder. The inbound-mail stage plugs in here. */
export interface InboundProcessor {
  poll(
    client: Mailbox,
    config: ServerConfig & { spec: ImapServerSpec },
    signal: AbortSignal,
  ): Promise<PollStats | void>;
}

/** Just proves the mailbox is reachable and counts what waits in it. */
export const statusOnlyProcessor: InboundProcessor = {
  async poll(client, { spec }) {
    await client.status(spec.folder, { messages: true, unseen: true });
  },
};

/** An IMAP connection opened as a loop opens it: logged in, folders checked, the inbox folder selected. */
export interface OpenedImap {
  client: Mailbox;
  /** Settles when the connection ends. */
  closed: Promise<void>;
  found: VerifyImapResult;
  secretDigest: string;
  errorCtx: ClassifyContext;
}

/** Connects, checks the inbox and storage folders and selects the inbox folder. Throws MailError. */
export async function openImap(
  spec: ImapServerSpec,
  resolver: SecretResolver,
  logger: ImapLogger | false | undefined,
): Promise<OpenedImap> {
  const { settings, secretDigest } = await resolveConnection(spec, resolver);
  const { mailbox, found } = await openMailbox(settings, {
    autoIdleDelay: AUTO_IDLE_DELAY_MS,
    logger,
    folder: spec.folder,
    storageFolder: spec.storageFolder,
  });
  return { client: mailbox, closed: mailbox.closed(), found, secretDigest, errorCtx: errorContext(settings) };
}

/** Closes a connection opened for a loop that will not use it (an apply that was not carried out). */
export const discardOpened = (opened: OpenedImap): Promise<void> => opened.client.disconnect();

/**
 * Holds one IMAP connection: selects the inbox folder, polls on `pollSchedule` (never two polls at once) and as soon
 * as IDLE reports new mail, and IDLEs in between.
 */
export class ImapLoop extends SupervisedLoop {
  /** Ends this loop's subscription to its poll schedule. */
  private unschedule: (() => void) | null = null;
  private client: Mailbox | null = null;
  /** How to word (and scrub) errors of the current connection. */
  private errorCtx: ClassifyContext = {};
  private polling: Promise<void> | null = null;
  private pollAgain = false;
  private wake: NodeJS.Timeout | null = null;

  constructor(
    id: string,
    config: ServerConfig,
    log: Logger,
    private readonly deps: {
      resolver: SecretResolver;
      processor: InboundProcessor;
      connectGate: ConnectGate;
      pollClock: PollClock;
      recorder: LoopRecorder;
      imapLogger?: ImapLogger | false;
      signIns?: SignInWaiter | undefined;
    },
    /**
     * The connection apply's verification opened for this loop: its first session uses it instead of logging in again.
     */
    private handedOver: OpenedImap | null = null,
  ) {
    super(id, config, log, deps.recorder, deps.signIns);
  }

  private get spec(): ImapServerSpec {
    return this.config.spec as ImapServerSpec;
  }

  protected override onUpdate(): void {
    if (this.unschedule) this.schedulePolls();
  }

  private schedulePolls(): void {
    this.unschedule?.();
    this.unschedule = this.deps.pollClock.subscribe(this.spec.pollSchedule, () => void this.requestPoll());
  }

  /** Runs a poll now, or right after the one in progress (polls never overlap). */
  requestPoll(): Promise<void> {
    if (this.polling) {
      this.pollAgain = true;
      return this.polling;
    }
    this.polling = (async () => {
      do {
        this.pollAgain = false;
        await this.pollOnce();
      } while (this.pollAgain && !this.signal.aborted);
    })().finally(() => (this.polling = null));
    return this.polling;
  }

  /** Polls again in `ms` (replacing an earlier wake-up); the schedule and IDLE keep polling too. */
  private wakeIn(ms: number): void {
    if (this.wake) clearTimeout(this.wake);
    this.wake = setTimeout(() => ((this.wake = null), void this.requestPoll()), ms + 10);
  }

  private async pollOnce(): Promise<void> {
    const client = this.client;
    if (!client?.usable) return;
    const started = Date.now();
    let ok = false;
    let polled = true;
    try {
      const stats = await this.deps.processor.poll(
        client,
        this.config as ServerConfig & { spec: ImapServerSpec },
        this.signal,
      );
      const { nextPollInMs, sinkPaused, ...counts } = stats ?? {};
      if (sinkPaused) return void (polled = false);
      for (const [name, n] of Object.entries(counts)) if (n) this.count(name, n);
      if (nextPollInMs !== undefined) this.wakeIn(nextPollInMs);
      this.count('polls_ok');
      ok = true;
      this.recorder.messagesDelivered(this.id, stats ? stats.delivered : 0);
      this.recorder.messagesQuarantined(this.id, stats ? stats.quarantined : 0);
      this.markSuccess();
    } catch (err) {
      this.count('polls_failed');
      const error = classifyMailError(err, this.errorCtx);
      if (SESSION_FAILURES.has(error.failureClass)) this.recordError(error);
      else this.recordServerFailure(error);
      this.log.warn({ class: error.failureClass }, `poll failed: ${error.message}`);
      // the flow's sink or the daemon's store is down: the processor paused this server; poll again after the pause
      const paused = PAUSES.get(error.code ?? '');
      if (paused && error.retryAfterMs !== undefined) {
        this.count(paused);
        this.wakeIn(error.retryAfterMs);
      }
    } finally {
      if (polled) {
        this.count('poll_ms', Date.now() - started);
        this.recorder.pollFinished(this.id, ok, (Date.now() - started) / 1000);
      }
    }
  }

  /** A loop stopped before its first session closes the connection it was handed. */
  override async stop(): Promise<void> {
    await super.stop();
    const handedOver = this.handedOver;
    this.handedOver = null;
    if (handedOver) await discardOpened(handedOver);
  }

  /** The handed-over connection if it is still usable, else a new one (connecting in the supervisor's waves). */
  private async open(signal: AbortSignal): Promise<OpenedImap> {
    const handedOver = this.handedOver;
    this.handedOver = null;
    if (handedOver?.client.usable) return handedOver;
    if (handedOver) await discardOpened(handedOver);
    return this.deps.connectGate.run(() => openImap(this.spec, this.deps.resolver, this.deps.imapLogger), signal);
  }

  protected async session(signal: AbortSignal): Promise<void> {
    const { client, closed, errorCtx } = await this.open(signal);
    this.errorCtx = errorCtx;
    try {
      this.client = client;
      client.onNewMail(() => void this.requestPoll());
      this.markSuccess();
      this.schedulePolls();
      await this.requestPoll();
      const stopped = new Promise<void>((resolve) =>
        signal.aborted ? resolve() : signal.addEventListener('abort', () => resolve(), { once: true }),
      );
      await Promise.race([closed, stopped]);
    } finally {
      this.unschedule?.();
      this.unschedule = null;
      if (this.wake) clearTimeout(this.wake);
      this.wake = null;
      await this.polling;
      this.client = null;
      await client.disconnect();
    }
  }
}
