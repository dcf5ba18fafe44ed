/** Everything needed to open a connection; secrets already resolved by the caller. */
export interface ConnectionSettings {
  host: string;
  port: number;
  tls: boolean; // true = implicit TLS; false = STARTTLS required ...
  allowPlaintext: boolean; // ... unless this is true (then STARTTLS is not required)
  caPem?: string; // private CA bundle (already read from tlsCaFile); verification is NEVER switched off
  servername?: string; // SNI / certificate name
  disableCompression?: boolean; // IMAP: do not use COMPRESS=DEFLATE
  auth: { user: string; pass: string } | { user: string; accessToken: string };
}

/**
 * What went wrong, coarse enough to decide what to do next:
 *  - network:        host unreachable / refused / DNS / timeout / dropped → retry with back-off
 *  - tls:            certificate not trusted, name mismatch, STARTTLS missing, TLS/plaintext port mix-up → fix config
 *  - auth:           credentials (password, token, refresh token) rejected → fix credentials
 *  - folder-missing: a configured mailbox does not exist → create it / fix config
 *  - throttled:      the server asks us to slow down (retryAfterMs when it says how long)
 *  - config:         anything else that is wrong on our side (missing extension, bad option, permanent 5xx)
 */
export type FailureClass = 'network' | 'tls' | 'auth' | 'folder-missing' | 'throttled' | 'config';

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
