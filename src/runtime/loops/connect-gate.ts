/**
 * How many loops may be connecting at once (TCP, TLS handshake, login, folder checks). After an apply or a daemon
 * start, a thousand loops would otherwise open a thousand handshakes together: the mail server sees a login storm, and
 * the transient TLS buffers raise the process's peak memory for good (freed native memory is rarely handed back to the
 * system). Loops start in waves instead; a connected loop holds no slot. The gate also tells an observer when a burst
 * of connections starts and ends (memory.ts gives the burst's garbage back).
 */
import type { BurstObserver } from './memory.js';

export const CONNECT_CONCURRENCY = 50;

/** A counting semaphore whose waiters leave the queue when their signal aborts. */
export class ConnectGate {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  /** Connections admitted since the gate was last idle. */
  private burst = 0;

  constructor(
    readonly limit = CONNECT_CONCURRENCY,
    private readonly observer?: BurstObserver,
  ) {}

  /** Runs `connect` once a slot is free; rejects with the signal's reason if it aborts while waiting. */
  async run<T>(connect: () => Promise<T>, signal: AbortSignal): Promise<T> {
    await this.acquire(signal);
    try {
      return await connect();
    } finally {
      this.release();
    }
  }

  private acquire(signal: AbortSignal): Promise<void> {
    signal.throwIfAborted();
    if (this.active < this.limit) {
      this.admit();
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const admit = () => {
        signal.removeEventListener('abort', leave);
        this.admit();
        resolve();
      };
      const leave = () => {
        this.waiting.splice(this.waiting.indexOf(admit), 1);
        reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
      };
      this.waiting.push(admit);
      signal.addEventListener('abort', leave, { once: true });
    });
  }

  private admit(): void {
    if (this.burst++ === 0) this.observer?.busy();
    this.active++;
  }

  private release(): void {
    this.active--;
    this.waiting.shift()?.();
    this.reportIfIdle();
  }

  private reportIfIdle(): void {
    if (this.active > 0 || this.waiting.length > 0 || this.burst === 0) return;
    const connections = this.burst;
    this.burst = 0;
    this.observer?.idle(connections);
  }
}
