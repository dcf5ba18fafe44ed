import type { Logger } from 'pino';
import type { ConnectionSettings, MailError } from '../../adapters/connection.js';
import { createSmtpTransport, type SmtpTransport } from '../../adapters/smtp.js';
import { classifyMailError, errorContext } from '../../adapters/classify.js';
import { resolveConnection } from '../../connect/connection.js';
import type { SecretResolver } from '../../connect/secrets.js';
import type { ServerConfig } from '../../plan/model.js';
import { sleep } from './backoff.js';
import { SupervisedLoop, type SignInWaiter } from './loop.js';
import type { LoopRecorder } from './recorder.js';
import type { OutboundConsumer, SendOutcome } from '../outbound/sender.js';

/** How often an idle SMTP loop checks that it can still connect and log in (`--smtp-check-interval`). */
export const SMTP_CHECK_INTERVAL_MS = 5 * 60_000;

/**
 * Is a failed send about the server rather than the message: TLS or authentication, or the connection itself (no
 * reply to the message)? A reply to MAIL, RCPT or DATA (4xx, 5xx) is about the message and never changes the state.
 */
function aboutTheServer(error: MailError): boolean {
  if (error.failureClass === 'tls' || error.failureClass === 'auth') return true;
  return (error.failureClass === 'network' || error.failureClass === 'config') && error.responseCode === undefined;
}

/**
 * Holds a pooled nodemailer transport for one SMTP server; the outbound stage sends through `transport`. A send that
 * fails for a reason about the server shows in the loop's state and last error, and a loop with nothing to send
 * checks its connection every `checkIntervalMs`, so a server that cannot send is never shown `running`.
 */
export class SmtpLoop extends SupervisedLoop {
  transport: SmtpTransport | null = null;
  /** When a send or a check last talked to the server. */
  private lastContact = 0;

  constructor(
    id: string,
    config: ServerConfig,
    log: Logger,
    private readonly deps: {
      resolver: SecretResolver;
      recorder: LoopRecorder;
      outbound?: OutboundConsumer | undefined;
      checkIntervalMs?: number | undefined;
      signIns?: SignInWaiter | undefined;
    },
  ) {
    super(id, config, log, deps.recorder, deps.signIns);
  }

  protected async session(signal: AbortSignal): Promise<void> {
    const { settings } = await resolveConnection(this.config.spec, this.deps.resolver);
    const transport = createSmtpTransport(settings, { pool: true });
    const ended = new AbortController();
    const end = () => ended.abort();
    signal.addEventListener('abort', end, { once: true });
    try {
      await transport.verify().catch((err: unknown) => {
        throw classifyMailError(err, errorContext(settings));
      });
      this.transport = transport;
      this.lastContact = Date.now();
      this.markSuccess();
      void this.checkWhileIdle(transport, settings, ended.signal);
      // the loop consumes its outbox queue until stopped
      if (this.deps.outbound)
        await this.deps.outbound.serve({
          serverId: this.id,
          transport,
          settings,
          signal,
          log: this.log,
          report: (outcome, error) => this.reportSend(outcome, error),
        });
      else await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
    } finally {
      end();
      signal.removeEventListener('abort', end);
      this.transport = null;
      transport.close();
    }
  }

  /** Until the session ends: when nothing was sent for a check interval, connects and logs in once (EHLO, AUTH). */
  private async checkWhileIdle(transport: SmtpTransport, settings: ConnectionSettings, ended: AbortSignal) {
    const interval = this.deps.checkIntervalMs ?? SMTP_CHECK_INTERVAL_MS;
    while (!ended.aborted) {
      await sleep(Math.max(0, this.lastContact + interval - Date.now()), ended);
      if (ended.aborted || Date.now() - this.lastContact < interval) continue;
      this.lastContact = Date.now();
      try {
        await transport.verify();
        if (!ended.aborted) this.markSuccess();
      } catch (err) {
        if (ended.aborted) return;
        const error = classifyMailError(err, errorContext(settings));
        this.recordServerFailure(error);
        this.log.warn({ class: error.failureClass }, `connection check failed: ${error.message}`);
      }
    }
  }

  /** Counts one message's outcome in the loop's counters (`status`) and in /metrics; the state follows the server. */
  private reportSend(outcome: SendOutcome, error?: MailError): void {
    this.count(`messages_${outcome}`);
    this.recorder.outboundMessage(this.id, outcome);
    this.lastContact = Date.now();
    if (outcome === 'sent') this.markSuccess();
    else if (error && aboutTheServer(error)) this.recordServerFailure(error);
  }
}
