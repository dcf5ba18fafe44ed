import type { FailureClass } from '../api/status.js';
/** Everything needed to open a connection; secrets already resolved by the caller. */
export interface ConnectionSettings {
  host: string;
  port: number;
  tls: boolean; // true = implicit TLS; false = STARTTLS required ...
  allowPlaintext: boolean; // ... unless this is true (then STARTTLS is not required)
  caPem?: string; // private CA bundle (already read from tlsCaFile); verification is NEVER switched off
  servername?: string; // SNI / certificate name
  disableCompression?: boolean; // IMAP: do not use COMPRESS=DEFLATE
  auth: { user: string; pass: string } | OAuth2Login;
}

/** An OAuth2 login (XOAUTH2, OAUTHBEARER). */
export interface OAuth2Login {
  user: string;
  accessToken: string;
  /** Epoch ms; with `renew`, a connection opened after it asks `renew` for a valid token. */
  expiresAt?: number;
  /**
   * A valid access token now, for connections opened later (an SMTP pool): the cached one, or a fresh one when it
   * expired or is the `rejected` one (a server refused it: revoked before its expiry).
   */
  renew?: (rejected?: string) => Promise<{ accessToken: string; expiresAt: number }>;
}

/** Why a connection or an operation failed (see the wire type's comment for what each class means). */
export type { FailureClass } from '../api/status.js';

export interface MailErrorOptions {
  code?: string | undefined;
  retryAfterMs?: number | undefined;
  /** SMTP reply code (e.g. 550) when the failure came from an SMTP reply. */
  responseCode?: number | undefined;
  /** The remote service's own error code, e.g. an OAuth2 provider's `AADSTS700082` (else its `invalid_grant`). */
  providerCode?: string | undefined;
}

/**
 * An error with a human message that never contains a password or token.
 * The original library error is deliberately NOT kept (as `cause`): it may carry protocol data.
 */
export class MailError extends Error {
  override name = 'MailError';
  failureClass: FailureClass;
  retryAfterMs?: number;
  code?: string;
  responseCode?: number;
  providerCode?: string;

  constructor(failureClass: FailureClass, message: string, opts: MailErrorOptions = {}) {
    super(message);
    this.failureClass = failureClass;
    if (opts.code !== undefined) this.code = opts.code;
    if (opts.retryAfterMs !== undefined) this.retryAfterMs = opts.retryAfterMs;
    if (opts.responseCode !== undefined) this.responseCode = opts.responseCode;
    if (opts.providerCode !== undefined) this.providerCode = opts.providerCode;
  }
}

/** The secret of `auth` (password or access token). */
export function secretOf(auth: ConnectionSettings['auth']): string {
  return 'pass' in auth ? auth.pass : auth.accessToken;
}
