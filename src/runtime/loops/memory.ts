/**
 * Gives the garbage of a connection burst back to the system soon after the burst ends. Opening hundreds of IMAP
 * connections (an apply of many servers, a daemon start, a mail server coming back) leaves tens of MiB of dead objects
 * in V8's old generation. An idle daemon allocates too little to start a major GC, so its RSS, which memory limits
 * and dashboards watch, stays that high until V8's memory reducer gets to it, a minute or more later (bench:inbound,
 * 1,000 loops: 163 KiB per loop 10 s after an apply, 97 KiB after 60 s). One full GC once the daemon has gone
 * quiet after a large burst (the new loops' first polls leave garbage too) gives it back at once; small bursts are
 * left to V8.
 */
import { performance, type EventLoopUtilization } from 'node:perf_hooks';
import v8 from 'node:v8';
import vm from 'node:vm';

/** Connections in a burst from which a full GC follows it. */
const LARGE_BURST = 100;
/**
 * The window after a large burst in which the daemon must have been quiet before the GC (another burst restarts it).
 */
const QUIET_MS = 2000;
/** Quiet: the event loop was busy for at most this share of the window. */
const QUIET_UTILIZATION = 0.2;
/** Windows to wait for quiet; a daemon that stays busy gets the GC anyway (its garbage is not getting any younger). */
const MAX_WINDOWS = 5;

let exposedGc: (() => void) | undefined;

/**
 * One full, compacting garbage collection. Node's `gc` is exposed on first use (V8 gives it to contexts created
 * afterwards). Compaction is forced for this one GC: without it V8 keeps every page that still holds a live object,
 * and the burst's garbage is spread over most of them, so the memory would stay with the process.
 */
export function fullGc(): void {
  exposedGc ??=
    typeof globalThis.gc === 'function'
      ? () => void globalThis.gc!()
      : (v8.setFlagsFromString('--expose-gc'), vm.runInNewContext('gc') as () => void);
  v8.setFlagsFromString('--compact-on-every-full-gc');
  try {
    exposedGc();
  } finally {
    v8.setFlagsFromString('--no-compact-on-every-full-gc');
  }
}

/**
 * What a connect gate reports: busy when its first connection of a burst starts, idle with the burst's size at the end.
 */
export interface BurstObserver {
  busy(): void;
  idle(connections: number): void;
}

export interface BurstGarbageReleaseOptions {
  threshold?: number;
  quietMs?: number;
  collect?: () => void;
  /** performance.eventLoopUtilization, replaceable in tests. */
  utilization?: (since?: EventLoopUtilization) => EventLoopUtilization;
  /** Told how much heap the collection gave back. */
  onReleased?: (info: { connections: number; heapBeforeBytes: number; heapAfterBytes: number }) => void;
}

/** Runs one full GC once large bursts of connections are over and the daemon has been quiet for `quietMs`. */
export class BurstGarbageRelease implements BurstObserver {
  private connections = 0;
  private timer: NodeJS.Timeout | null = null;
  private readonly threshold: number;
  private readonly quietMs: number;
  private readonly collect: () => void;
  private readonly utilization: (since?: EventLoopUtilization) => EventLoopUtilization;

  constructor(private readonly options: BurstGarbageReleaseOptions = {}) {
    this.threshold = options.threshold ?? LARGE_BURST;
    this.quietMs = options.quietMs ?? QUIET_MS;
    this.collect = options.collect ?? fullGc;
    this.utilization = options.utilization ?? ((since) => performance.eventLoopUtilization(since));
  }

  busy(): void {
    this.cancel();
  }

  idle(connections: number): void {
    this.connections += connections;
    if (this.connections < this.threshold) return;
    this.cancel();
    this.awaitQuiet(1);
  }

  private awaitQuiet(window: number): void {
    const start = this.utilization();
    this.timer = setTimeout(() => {
      const busy = this.utilization(start).utilization > QUIET_UTILIZATION;
      if (busy && window < MAX_WINDOWS) this.awaitQuiet(window + 1);
      else this.release();
    }, this.quietMs).unref();
  }

  private cancel(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private release(): void {
    this.timer = null;
    const connections = this.connections;
    this.connections = 0;
    const heapBeforeBytes = process.memoryUsage().heapUsed;
    this.collect();
    this.options.onReleased?.({ connections, heapBeforeBytes, heapAfterBytes: process.memoryUsage().heapUsed });
  }
}
