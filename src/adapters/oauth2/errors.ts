/**
 * What an OAuth2 endpoint's failure means for mailctl. Every failure is a MailError; `code` says what to do:
 *
 *  - oauth2-needs-login        (auth)   invalid_grant & co for a refresh token, device or authorization code: a person
 *                                       must sign in again (the daemon shows `needs-login`; retrying cannot help)
 *  - oauth2-client-rejected    (auth)   invalid_client: the client secret or certificate was rejected or has expired
 *  - oauth2-assertion-rejected (auth)   invalid_grant for a jwt-bearer assertion: service-account key or delegation
 *  - oauth2-access-denied      (auth)   the person refused the sign-in (access_denied)
 *  - oauth2-sign-in-expired    (auth)   the device code or the wait for the browser ran out (expired_token)
 *  - oauth2-sign-in-cancelled  (auth)   the caller aborted a sign-in
 *  - oauth2-unauthorized-client(config) the app registration does not allow this grant (unauthorized_client)
 *  - oauth2-invalid-scope      (config) invalid_scope
 *  - oauth2-invalid-request    (config) invalid_request, unsupported_grant_type, any other OAuth2 error
 *  - oauth2-bad-response       (config) not a token answer (HTML login page, no access_token: is the URL right?)
 *  - oauth2-bad-key            (config) the client certificate / private key cannot be used
 *  - HTTP_429, oauth2-slow-down (throttled); HTTP_5xx, oauth2-temporarily-unavailable (network): `retryAfterMs`
 *                                       from Retry-After when given, at most 1 hour
 *  - ECONNREFUSED, ENOTFOUND, ETIMEDOUT, … (network)
 *
 * `providerCode` keeps the provider's own code: the AADSTS number found in error_description (AADSTS700082: refresh
 * token expired), else the OAuth2 `error` (invalid_grant). Messages never contain a token, secret, code or key.
 */
import { redact } from '../classify.js';
import { MailError, type FailureClass } from '../connection.js';

export const OAUTH2_ERROR_CODES = [
  'oauth2-needs-login',
  'oauth2-client-rejected',
  'oauth2-assertion-rejected',
  'oauth2-access-denied',
  'oauth2-sign-in-expired',
  'oauth2-sign-in-cancelled',
  'oauth2-unauthorized-client',
  'oauth2-invalid-scope',
  'oauth2-invalid-request',
  'oauth2-bad-response',
  'oauth2-bad-key',
  'oauth2-slow-down',
  'oauth2-temporarily-unavailable',
] as const;
export type OAuth2ErrorCode = (typeof OAUTH2_ERROR_CODES)[number];

/** A provider's hint is honoured up to this (a huge Retry-After must not overflow setTimeout's 2^31−1 ms). */
export const MAX_RETRY_AFTER_MS = 3_600_000;

/** Which kind of credential a token request used: decides what an `invalid_grant` means. */
export type GrantKind = 'refresh_token' | 'authorization_code' | 'device_code' | 'client_credentials' | 'jwt_bearer';

/** What the failure is about, for messages and redaction. */
export interface ErrorContext {
  /** The endpoint, shown as origin + path (a query string could carry secrets). */
  url: string;
  grant?: GrantKind | undefined;
  /** Values that must never appear in a message. */
  secrets: ReadonlyArray<string | undefined>;
}

export function oauth2Error(
  ctx: Pick<ErrorContext, 'secrets'>,
  cls: FailureClass,
  message: string,
  opts: { code: string; retryAfterMs?: number | undefined; providerCode?: string | undefined },
): MailError {
  return new MailError(cls, redact(message, ctx.secrets), opts);
}

/** origin + path of `url`, for messages. */
export function endpointOf(url: string): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}`;
  } catch {
    return 'the OAuth2 endpoint';
  }
}

/** Retry-After (delta-seconds or an HTTP date) in ms, clamped to [0, MAX_RETRY_AFTER_MS]; undefined if absent. */
export function retryAfterMs(header: string | null, now = Date.now()): number | undefined {
  if (header === null || header.trim() === '') return undefined;
  const v = header.trim();
  const ms = /^\d+$/.test(v) ? Number(v) * 1000 : Date.parse(v) - now;
  if (!Number.isFinite(ms)) return undefined;
  return Math.min(Math.max(ms, 0), MAX_RETRY_AFTER_MS);
}

const NEEDS_LOGIN = new Set(['invalid_grant', 'interaction_required', 'login_required', 'consent_required']);

/** A non-2xx answer of a token (or device authorization) endpoint → MailError. */
export function classifyOAuth2Response(
  ctx: ErrorContext,
  status: number,
  headers: Headers,
  body: Record<string, unknown> | undefined,
): MailError {
  const where = endpointOf(ctx.url);
  const error = typeof body?.error === 'string' ? body.error : undefined;
  // Microsoft's descriptions continue with "Trace ID: … Correlation ID: … Timestamp: …": keep the first line
  const description =
    typeof body?.error_description === 'string' ? body.error_description.split(/\r?\n/)[0]!.slice(0, 200) : undefined;
  const providerCode = /\bAADSTS\d+\b/.exec(description ?? '')?.[0] ?? error;
  const said = error ? ` (${error}${description ? `: ${description}` : ''})` : '';
  const fail = (cls: FailureClass, code: string, what: string, extra: { retryAfterMs?: number | undefined } = {}) =>
    oauth2Error(ctx, cls, `${what}${said}`, { code, providerCode, ...extra });

  const wait = retryAfterMs(headers.get('retry-after'));
  if (status === 429) {
    return fail('throttled', 'HTTP_429', `OAuth2 endpoint ${where} is rate limiting (HTTP 429)`, {
      retryAfterMs: wait,
    });
  }
  if (status >= 500) {
    return fail('network', `HTTP_${status}`, `OAuth2 endpoint ${where} failed (HTTP ${status})`, {
      retryAfterMs: wait,
    });
  }
  if (error === 'slow_down') {
    return fail('throttled', 'oauth2-slow-down', `OAuth2 endpoint ${where} asks us to slow down`, {
      retryAfterMs: wait,
    });
  }
  if (error === 'temporarily_unavailable') {
    return fail('network', 'oauth2-temporarily-unavailable', `OAuth2 endpoint ${where} is temporarily unavailable`, {
      retryAfterMs: wait,
    });
  }
  if (error === 'invalid_client') {
    return fail(
      'auth',
      'oauth2-client-rejected',
      `OAuth2 client secret or certificate rejected or expired at ${where}`,
    );
  }
  if (error && NEEDS_LOGIN.has(error)) {
    if (ctx.grant === 'jwt_bearer') {
      return fail(
        'auth',
        'oauth2-assertion-rejected',
        `OAuth2 service-account assertion rejected by ${where}: check its key and domain-wide delegation`,
      );
    }
    if (ctx.grant === 'client_credentials') {
      return fail('auth', 'oauth2-client-rejected', `OAuth2 app-only grant rejected by ${where}`);
    }
    return fail('auth', 'oauth2-needs-login', `OAuth2 sign-in needed: ${where} no longer accepts the grant`);
  }
  if (error === 'access_denied') return fail('auth', 'oauth2-access-denied', `OAuth2 sign-in was refused`);
  if (error === 'expired_token')
    return fail('auth', 'oauth2-sign-in-expired', `OAuth2 sign-in expired before it completed`);
  if (error === 'unauthorized_client') {
    return fail('config', 'oauth2-unauthorized-client', `OAuth2 client is not allowed this grant at ${where}`);
  }
  if (error === 'invalid_scope') return fail('config', 'oauth2-invalid-scope', `OAuth2 scope refused by ${where}`);
  if (error) return fail('config', 'oauth2-invalid-request', `OAuth2 endpoint ${where} refused the request`);
  if (status === 401 || status === 403) {
    return fail('auth', 'oauth2-client-rejected', `OAuth2 endpoint ${where} refused the client (HTTP ${status})`);
  }
  return fail(
    'config',
    'oauth2-bad-response',
    `OAuth2 endpoint ${where} gave no OAuth2 answer (HTTP ${status}; is the URL right?)`,
  );
}

/** A failed fetch (no HTTP answer) → MailError; `callerAborted` when the caller's own signal fired. */
export function classifyFetchFailure(
  ctx: ErrorContext,
  err: unknown,
  timeoutMs: number,
  callerAborted: boolean,
): MailError {
  const where = endpointOf(ctx.url);
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (callerAborted) {
    return oauth2Error(ctx, 'auth', `OAuth2 request to ${where} cancelled`, { code: 'oauth2-sign-in-cancelled' });
  }
  if (e.name === 'TimeoutError' || e.name === 'AbortError') {
    return oauth2Error(ctx, 'network', `OAuth2 endpoint ${where} did not answer within ${timeoutMs / 1000} s`, {
      code: 'ETIMEDOUT',
    });
  }
  if (e.name === 'TypeError' && /invalid url|failed to parse url/i.test(e.message ?? '')) {
    return oauth2Error(ctx, 'config', `OAuth2 URL is not a valid URL`, { code: 'ERR_INVALID_URL' });
  }
  if (e.name === 'TypeError' && /redirect/i.test(`${e.message ?? ''} ${e.cause?.message ?? ''}`)) {
    return oauth2Error(ctx, 'config', `OAuth2 endpoint ${where} answered with a redirect (is the URL right?)`, {
      code: 'oauth2-bad-response',
    });
  }
  const code = e.cause?.code;
  const detail =
    code === 'ECONNREFUSED'
      ? 'connection refused'
      : code === 'ENOTFOUND'
        ? 'host name not found (DNS)'
        : (e.cause?.message ?? e.message ?? 'request failed');
  return oauth2Error(ctx, 'network', `OAuth2 endpoint ${where} unreachable: ${detail}${code ? ` (${code})` : ''}`, {
    code: code ?? 'ENETWORK',
  });
}
