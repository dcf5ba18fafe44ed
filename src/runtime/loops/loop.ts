import type { Logger } from 'pino';
import { MailError } from '../../adapters/connection.js';
import type { FailureClass, LastError } from '../../api/status.js';
import { classifyMailError } from '../../adapters/classify.js';
import { capText } from '../../adapters/text.js';
import type { ServerConfig } from '../../plan/model.js';
import { backoffDelay, sleep } from './backoff.js';
import type { LoopRecorder } from './recorder.js';

export type LoopState = 'starting' | 'running' | 'backoff' | 'failed' | 'needs-login' | 'stopped';

/** Where a loop whose OAuth2 grant needs a person (`invalid_grant`) waits: the daemon's credentials. */
export interface SignInWaiter {
  /** Resolves once the credential of `spec` may be used again (a sign-in, a new refresh token) or `signal` aborts. */
  waitForSignIn(spec: ServerConfig['spec'], signal: AbortSignal): Promise<void>;
}

export interface LoopStatus {
  state: LoopState;
  since: string;
  lastSuccess: string | null;
  lastError: LastError | null;
  attempts: number;
  counters: Record<string, number>;
}

/** Failures that a retry alone will not fix: shown as `failed` (still retried, at the backoff's pace). */
const NEEDS_ATTENTION: ReadonlySet<FailureClass> = new Set(['auth', 'tls', 'config', 'folder-missing', 'local']);

/** The OAuth2 provider refuses the grant: a person must sign in again. */
const NEEDS_LOGIN = 'oauth2-needs-login';

const stateAfter = (error: MailError): LoopState =>
  error.code === NEEDS_LOGIN ? 'needs-login' : NEEDS_ATTENTION.has(error.failureClass) ? 'failed' : 'backoff';

/**
 * A supervised loop for one server: runs `session` (connect, then serve until the connection ends or the loop is
 * stopped) and retries failures with exponential backoff and jitter. A failure never disables the server; it only
 * changes the state shown in `status`.
 */
export abstract class SupervisedLoop {
  protected config: ServerConfig;
  private readonly abort = new AbortController();
  private running: Promise<void> | null = null;
  private current: LoopStatus;

  constructor(
    readonly id: string,
    config: ServerConfig,
    protected readonly log: Logger,
    protected readonly recorder: LoopRecorder,
    private readonly signIns?: SignInWaiter,
    private readonly now: () => Date = () => new Date(),
  ) {
    this.config = config;
    recorder.loopCreated(id, config.spec.type);
    this.current = {
      state: 'starting',
      since: this.now().toISOString(),
      lastSuccess: null,
      lastError: null,
      attempts: 0,
      counters: {},
    };
  }

  /** Connects and serves until the signal aborts; resolves or throws when the connection ends. */
  protected abstract session(signal: AbortSignal): Promise<void>;

  /** Applies a change that needs no new connection (name, schedule, flow, From addresses...). */
  update(config: ServerConfig): void {
    this.config = config;
    this.onUpdate();
  }

  protected onUpdate(): void {}

  get signal(): AbortSignal {
    return this.abort.signal;
  }

  start(): void {
    this.running ??= this.supervise();
  }

  /** Stops the loop: aborts the session and waits for it to finish its current step. */
  async stop(): Promise<void> {
    this.abort.abort();
    await this.running;
    this.setState('stopped');
  }

  status(): LoopStatus {
    return { ...this.current, counters: { ...this.current.counters } };
  }

  protected count(counter: string, by = 1): void {
    this.current.counters[counter] = (this.current.counters[counter] ?? 0) + by;
  }

  /** Marks the loop healthy (connected, or a poll/send succeeded). */
  protected markSuccess(): void {
    this.current.lastSuccess = this.now().toISOString();
    this.current.attempts = 0;
    if (this.current.state !== 'running') this.setState('running');
  }

  protected setState(state: LoopState): void {
    if (this.current.state === state) return;
    this.current.state = state;
    this.current.since = this.now().toISOString();
    this.log.info({ state }, `loop ${state}`);
  }

  /** Records a failure of one operation without ending the session (e.g. one failed poll). */
  protected recordError(error: MailError): void {
    const message = capText(error.message);
    this.current.lastError = { class: error.failureClass, message, at: this.now().toISOString() };
  }

  /**
   * Records a failure of one operation that is about the server as a whole while its session stays up (a poll that
   * cannot write its checkpoint, a sink that is down, a send refused by TLS): the state shows it — `failed` when a
   * retry alone will not fix it, else `backoff` — until the next success.
   */
  protected recordServerFailure(error: MailError): void {
    this.recordError(error);
    this.setState(stateAfter(error));
  }

  private async supervise(): Promise<void> {
    const { signal } = this.abort;
    while (!signal.aborted) {
      this.setState('starting');
      try {
        await this.session(signal);
        if (signal.aborted) break;
        throw new MailError('network', 'the connection ended');
      } catch (err) {
        if (signal.aborted) break;
        const error = err instanceof MailError ? err : classifyMailError(err);
        this.recordError(error);
        this.current.attempts += 1;
        this.recorder.loopRestarted(this.id);
        if (error.code === NEEDS_LOGIN && this.signIns) {
          // no retry can help: wait for `mailctl auth login` (or a new refresh token), then connect at once
          this.setState('needs-login');
          this.log.warn({ class: error.failureClass, providerCode: error.providerCode }, error.message);
          await this.signIns.waitForSignIn(this.config.spec, signal);
          continue;
        }
        const delay = backoffDelay(this.current.attempts, error.retryAfterMs);
        this.setState(stateAfter(error));
        this.log.warn(
          { class: error.failureClass, retryInMs: delay, attempt: this.current.attempts },
          `${error.failureClass}: ${error.message}`,
        );
        await sleep(delay, signal);
      }
    }
  }
}
