import type { Logger } from 'pino';
import { createSmtpTransport, type SmtpTransport } from '../../adapters/smtp.js';
import { classifyMailError, errorContext } from '../../adapters/classify.js';
import { resolveConnection } from '../../connect/connection.js';
import type { SecretResolver } from '../../connect/secrets.js';
import type { ServerConfig } from '../../plan/model.js';
import { SupervisedLoop } from './loop.js';
import type { LoopRecorder } from './recorder.js';
import type { OutboundConsumer, SendOutcome } from '../outbound/sender.js';

/** Holds a pooled nodemailer transport for one SMTP server; the outbound stage sends through `transport`. */
export class SmtpLoop extends SupervisedLoop {
  transport: SmtpTransport | null = null;

  constructor(
    id: string,
    config: ServerConfig,
    log: Logger,
    private readonly deps: {
      resolver: SecretResolver;
      recorder: LoopRecorder;
      outbound?: OutboundConsumer | undefined;
    },
  ) {
    super(id, config, log, deps.recorder);
  }

  protected async session(signal: AbortSignal): Promise<void> {
    const { settings } = await resolveConnection(this.config.spec, this.deps.resolver);
    const transport = createSmtpTransport(settings, { pool: true });
    try {
      await transport.verify().catch((err: unknown) => {
        throw classifyMailError(err, errorContext(settings));
      });
      this.transport = transport;
      this.markSuccess();
      // the loop consumes its outbox queue until stopped
      if (this.deps.outbound)
        await this.deps.outbound.serve({
          serverId: this.id,
          transport,
          settings,
          signal,
          log: this.log,
          report: (outcome) => this.reportSend(outcome),
        });
      else await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
    } finally {
      this.transport = null;
      transport.close();
    }
  }

  /** Counts one message's outcome in the loop's counters (`status`) and in /metrics. */
  private reportSend(outcome: SendOutcome): void {
    this.count(`messages_${outcome}`);
    this.recorder.outboundMessage(this.id, outcome);
  }
}
