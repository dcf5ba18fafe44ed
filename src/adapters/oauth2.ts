/**
 * OAuth2 refresh-token grant (RFC 6749 §6) with global fetch. Errors are MailError:
 * invalid_grant / invalid_client / unauthorized_client → 'auth'; 429 → 'throttled'; 5xx / network / timeout →
 * 'network'; anything else unexpected → 'config'. Messages never contain the refresh token or client secret.
 */
import { redact } from './classify.js';
import { MailError } from './connection.js';

export interface RefreshTokenRequest {
  tokenUrl: string;
  clientId: string;
  clientSecret: string;
  refreshToken: string;
  scope?: string | undefined;
  /** Default 10 000 ms. */
  timeoutMs?: number | undefined;
}

export interface AccessToken {
  accessToken: string;
  /** Epoch ms; expires_in (default 3600 s when the server omits it) from the time the answer arrived. */
  expiresAt: number;
  /** A new refresh token, when the server rotated it. */
  refreshToken?: string;
}

const AUTH_ERRORS = new Set(['invalid_grant', 'invalid_client', 'unauthorized_client']);

function endpoint(url: string): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}`; // no query string (could carry secrets)
  } catch {
    return 'the token endpoint';
  }
}

export async function fetchAccessToken(req: RefreshTokenRequest): Promise<AccessToken> {
  const secrets = [req.refreshToken, req.clientSecret];
  const where = endpoint(req.tokenUrl);
  const fail = (cls: MailError['failureClass'], msg: string, extra: { code?: string; retryAfterMs?: number } = {}) =>
    new MailError(cls, redact(msg, secrets), extra);

  const body = new URLSearchParams({
    grant_type: 'refresh_token',
    refresh_token: req.refreshToken,
    client_id: req.clientId,
    client_secret: req.clientSecret,
  });
  if (req.scope) body.set('scope', req.scope);

  let res: Response;
  try {
    res = await fetch(req.tokenUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body,
      signal: AbortSignal.timeout(req.timeoutMs ?? 10_000),
      redirect: 'error',
    });
  } catch (err) {
    const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
    if (e.name === 'TimeoutError' || e.name === 'AbortError') {
      return Promise.reject(
        fail('network', `OAuth2 token endpoint ${where} did not answer within ${(req.timeoutMs ?? 10_000) / 1000} s`, {
          code: 'ETIMEDOUT',
        }),
      );
    }
    if (e.name === 'TypeError' && /invalid url|failed to parse url/i.test(e.message ?? '')) {
      return Promise.reject(fail('config', `OAuth2 token URL is not a valid URL`, { code: 'ERR_INVALID_URL' }));
    }
    const code = e.cause?.code;
    const detail =
      code === 'ECONNREFUSED'
        ? 'connection refused'
        : code === 'ENOTFOUND'
          ? 'host name not found (DNS)'
          : (e.cause?.message ?? e.message ?? 'request failed');
    return Promise.reject(
      fail(
        'network',
        `OAuth2 token endpoint ${where} unreachable: ${detail}${code ? ` (${code})` : ''}`,
        code ? { code } : {},
      ),
    );
  }

  const text = await res.text().catch(() => '');
  let json: Record<string, unknown> | undefined;
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed && typeof parsed === 'object') json = parsed as Record<string, unknown>;
  } catch {
    json = undefined;
  }

  if (!res.ok) {
    const error = typeof json?.error === 'string' ? json.error : undefined;
    const desc = typeof json?.error_description === 'string' ? `: ${json.error_description.slice(0, 200)}` : '';
    if (res.status === 429) {
      const ra = Number(res.headers.get('retry-after'));
      return Promise.reject(
        fail('throttled', `OAuth2 token endpoint ${where} is rate limiting (HTTP 429)`, {
          code: 'HTTP_429',
          ...(Number.isFinite(ra) && ra > 0 ? { retryAfterMs: ra * 1000 } : {}),
        }),
      );
    }
    if (res.status >= 500) {
      return Promise.reject(
        fail('network', `OAuth2 token endpoint ${where} failed (HTTP ${res.status})`, { code: `HTTP_${res.status}` }),
      );
    }
    if (error && AUTH_ERRORS.has(error)) {
      const what = error === 'invalid_grant' ? 'refresh token was rejected' : 'client credentials were rejected';
      return Promise.reject(fail('auth', `OAuth2 ${what} by ${where} (${error}${desc})`, { code: error }));
    }
    if (res.status === 401 || res.status === 403) {
      return Promise.reject(
        fail(
          'auth',
          `OAuth2 token endpoint ${where} refused the request (HTTP ${res.status}${error ? `, ${error}` : ''}${desc})`,
          { code: error ?? `HTTP_${res.status}` },
        ),
      );
    }
    return Promise.reject(
      fail('config', `OAuth2 token endpoint ${where} answered HTTP ${res.status}${error ? ` (${error}${desc})` : ''}`, {
        code: error ?? `HTTP_${res.status}`,
      }),
    );
  }

  const accessToken = typeof json?.access_token === 'string' ? json.access_token : undefined;
  if (!accessToken) {
    throw fail('config', `OAuth2 token endpoint ${where} answered without an access_token (is tokenUrl right?)`, {
      code: 'NO_ACCESS_TOKEN',
    });
  }
  const expiresIn = Number(json?.expires_in ?? 3600);
  const out: AccessToken = {
    accessToken,
    expiresAt: Date.now() + (Number.isFinite(expiresIn) && expiresIn > 0 ? expiresIn : 3600) * 1000,
  };
  if (typeof json?.refresh_token === 'string' && json.refresh_token !== req.refreshToken)
    out.refreshToken = json.refresh_token;
  return out;
}
