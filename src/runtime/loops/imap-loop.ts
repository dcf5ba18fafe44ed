import { schedule, type ScheduledTask } from 'node-cron';
import type { ImapFlow } from 'imapflow';
import type { Logger } from 'pino';
import { classifyMailError } from '../../adapters/classify.js';
import { connectImap, ensureFolderExists, type ImapLogger } from '../../adapters/imap.js';
import { resolveConnection } from '../../apply/connection.js';
import type { SecretResolver } from '../../apply/secrets.js';
import type { ImapServerSpec } from '../../config/model.js';
import type { ServerConfig } from '../../plan/model.js';
import { SupervisedLoop } from '../loop.js';

/** How soon imapflow starts IDLE after a command: low, so new mail is noticed within about a second. */
export const AUTO_IDLE_DELAY_MS = 500;

/** What a poll does with the selected folder. The inbound-mail stage plugs in here. */
export interface InboundProcessor {
  poll(client: ImapFlow, config: ServerConfig & { spec: ImapServerSpec }, signal: AbortSignal): Promise<void>;
}

/** Just proves the mailbox is reachable and counts what waits in it. */
export const statusOnlyProcessor: InboundProcessor = {
  async poll(client, { spec }) {
    await client.status(spec.folder, { messages: true, unseen: true });
  },
};

/**
 * Holds one IMAP connection: selects the inbox folder, polls on `pollSchedule` (never two polls at once) and as soon
 * as IDLE reports new mail, and IDLEs in between.
 */
export class ImapLoop extends SupervisedLoop {
  private task: ScheduledTask | null = null;
  private client: ImapFlow | null = null;
  private polling: Promise<void> | null = null;
  private pollAgain = false;

  constructor(
    id: string,
    config: ServerConfig,
    log: Logger,
    private readonly deps: { resolver: SecretResolver; processor: InboundProcessor; imapLogger?: ImapLogger | false },
  ) {
    super(id, config, log);
  }

  private get spec(): ImapServerSpec {
    return this.config.spec as ImapServerSpec;
  }

  protected override onUpdate(): void {
    if (this.task) this.schedulePolls();
  }

  private schedulePolls(): void {
    void this.task?.destroy();
    this.task = schedule(this.spec.pollSchedule, () => this.requestPoll(), { name: `poll ${this.id}` });
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

  private async pollOnce(): Promise<void> {
    const client = this.client;
    if (!client?.usable) return;
    const started = Date.now();
    try {
      await this.deps.processor.poll(client, this.config as ServerConfig & { spec: ImapServerSpec }, this.signal);
      this.count('polls_ok');
      this.markSuccess();
    } catch (err) {
      this.count('polls_failed');
      const error = classifyMailError(err);
      this.recordError(error);
      this.log.warn({ class: error.failureClass }, `poll failed: ${error.message}`);
    } finally {
      this.count('poll_ms', Date.now() - started);
    }
  }

  protected async session(signal: AbortSignal): Promise<void> {
    const { settings } = await resolveConnection(this.spec, this.deps.resolver);
    const client = await connectImap(settings, { autoIdleDelay: AUTO_IDLE_DELAY_MS, logger: this.deps.imapLogger });
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    try {
      await ensureFolderExists(client, this.spec.storageFolder, 'storage folder');
      await client.mailboxOpen(this.spec.folder);
      this.client = client;
      client.on('exists', () => void this.requestPoll());
      this.markSuccess();
      this.schedulePolls();
      await this.requestPoll();
      await Promise.race([closed, new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }))]);
    } finally {
      void this.task?.destroy();
      this.task = null;
      await this.polling;
      this.client = null;
      if (client.usable) await client.logout().catch(() => client.close());
      else client.close();
    }
  }
}
