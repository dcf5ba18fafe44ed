/**
 * Exponential backoff with full jitter, capped: the k8s workqueue idea with a cap of minutes, not 1000 s. Every retry
 * delay of the daemon is computed here, so a server's hint is clamped in one place.
 */
export const BACKOFF_BASE_MS = 1_000;
export const BACKOFF_CAP_MS = 5 * 60_000;
/**
 * A server's hint (IMAP "Backoff Time", SMTP "try again in N minutes", HTTP Retry-After) is honoured up to an hour:
 * a timer above 2^31 − 1 ms fires after 1 ms, so an unclamped huge hint would retry at once, again and again.
 */
export const MAX_HINT_MS = 3_600_000;

/**
 * Delay before retry number `attempt` (1-based). A server's own throttling hint is a floor: we never retry sooner
 * than it asked (up to MAX_HINT_MS), even above the cap.
 */
export function backoffDelay(attempt: number, hintMs?: number, random: () => number = Math.random): number {
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.max(0, attempt - 1));
  const jittered = ceiling / 2 + random() * (ceiling / 2);
  const hint = hintMs !== undefined && hintMs > 0 ? Math.min(hintMs, MAX_HINT_MS) : 0; // NaN > 0 is false
  return Math.max(Math.round(jittered), hint);
}

/** Resolves after `ms`, or early (without throwing) when the signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
