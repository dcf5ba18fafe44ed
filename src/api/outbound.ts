/** `POST /v1/outbound` (`mailctl send`), `GET /v1/outbound[/<id>]` (`mailctl outbox`), `POST …/<id>/cancel`. */

export interface OutboundAttachment {
  name: string;
  contentType: string;
  /** base64 */
  content: string;
}

/** The body of `POST /v1/outbound`, after validation (unknown fields and header injection are refused). */
export interface OutboundRequest {
  from?: string;
  to: string[];
  cc: string[];
  bcc: string[];
  subject: string;
  text?: string;
  html?: string;
  /** An inbound key: `<shortName>.<uidValidity>.<uid>.<hash8>`. */
  inReplyTo?: string;
  kind: 'agent' | 'template';
  attachments: OutboundAttachment[];
}

export type OutboundState = 'queued' | 'sending' | 'sent' | 'failed' | 'cancelled';

/** `202` to `POST /v1/outbound`: sent only once the message is durable. */
export interface OutboundAccepted {
  id: string;
  messageId: string;
  server: string;
  from: string;
  state: 'queued';
}

/** One message of the outbox, waiting or finished. */
export interface OutboundView {
  id: string;
  messageId: string;
  server: string;
  from: string;
  to: string[];
  subject: string;
  createdAt: string;
  state: OutboundState;
  attempts?: number;
  nextAttemptAt?: string | null;
  lastError?: string | null;
  reply?: string | null;
  reason?: string;
  copy?: 'pending' | 'stored' | 'none';
  storedIn?: { server: string; folder: string } | null;
  finishedAt?: string;
}

/** `GET /v1/outbound`. */
export interface OutboxListing {
  outbox: OutboundView[];
  size: number;
  quarantined: number;
}
