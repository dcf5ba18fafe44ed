/** What loops report as they work, for /metrics: passed in, so loops do not depend on the metrics registry. */
export interface LoopRecorder {
  /** A loop exists: its series are exported (at 0) from now on. */
  loopCreated(server: string, type: 'imap' | 'smtp'): void;
  /** A session ended with a failure and is retried after a backoff. */
  loopRestarted(server: string): void;
  pollFinished(server: string, ok: boolean, seconds: number): void;
  messagesDelivered(server: string, count: number): void;
  messagesQuarantined(server: string, count: number): void;
  /** One send attempt of the SMTP loop `server`. */
  outboundMessage(server: string, outcome: 'sent' | 'deferred' | 'failed'): void;
}
