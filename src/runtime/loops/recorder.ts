/** What loops report as they work, for /metrics: passed in, so loops do not depend on the metrics registry. */
export interface LoopRecorder {
  pollFinished(server: string, ok: boolean, seconds: number): void;
  messagesDelivered(server: string, count: number): void;
  messagesQuarantined(server: string, count: number): void;
  /** One send attempt of the SMTP loop `server`. */
  outboundMessage(server: string, outcome: 'sent' | 'deferred' | 'failed'): void;
}

/** Reports nothing (loops used without a daemon, e.g. in tests). */
export const NO_RECORDER: LoopRecorder = {
  pollFinished: () => undefined,
  messagesDelivered: () => undefined,
  messagesQuarantined: () => undefined,
  outboundMessage: () => undefined,
};
