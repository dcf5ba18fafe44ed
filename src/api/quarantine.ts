/** `GET /v1/quarantine` and `POST /v1/quarantine/<key>/release`: inbound messages set aside. */
export type QuarantineReason = 'oversize' | 'unrouted' | 'failed' | 'rejected';

export interface QuarantineListing {
  /** The message key (as in the sinks): what `mailctl quarantine release KEY` takes. */
  key: string;
  server: string;
  folder: string;
  uidValidity: string;
  uid: number;
  reason: QuarantineReason;
  detail: string;
  at: string;
  messageId: string | null;
  attempts?: number;
}
