/**
 * The device authorization grant (RFC 8628): start it (the person gets a URL and a code), then poll the token
 * endpoint until they signed in, refused, or the code expired. Polling honours `authorization_pending`, `slow_down`
 * (interval + 5 s) and the server's interval, rides out transient failures until the code expires, and stops when
 * the caller's AbortSignal fires.
 */
import { MailError } from '../connection.js';
import { DEVICE_CODE_GRANT } from './constants.js';
import { classifyOAuth2Response, MAX_RETRY_AFTER_MS, oauth2Error } from './errors.js';
import { postForm, postOAuth2 } from './http.js';
import {
  clientAuthentication,
  parseTokenAnswer,
  type OAuth2Client,
  type TokenRequestOptions,
  type TokenSet,
} from './token.js';

export interface DeviceAuthorizationRequest extends OAuth2Client, TokenRequestOptions {
  deviceAuthorizationUrl: string;
  scope?: string | undefined;
}

export interface DeviceAuthorization {
  /** Secret: the device's claim to the token. Never show it. */
  deviceCode: string;
  /** What the person types at `verificationUri`. */
  userCode: string;
  verificationUri: string;
  /** The URL with the code filled in, when the server offers one. */
  verificationUriComplete?: string;
  /** Epoch ms when the codes expire. */
  expiresAt: number;
  /** Minimum wait between polls. */
  intervalMs: number;
  /** The server's own instructions (Microsoft sends one), when given. */
  message?: string;
}

export interface DevicePollRequest extends OAuth2Client, TokenRequestOptions {
  tokenUrl: string;
}

const SLOW_DOWN_MS = 5000; // RFC 8628 §3.5
const str = (v: unknown) => (typeof v === 'string' && v !== '' ? v : undefined);
const seconds = (v: unknown, dflt: number) => {
  const n = Number(v ?? dflt);
  return Number.isFinite(n) && n > 0 ? n : dflt;
};

export async function startDeviceAuthorization(req: DeviceAuthorizationRequest): Promise<DeviceAuthorization> {
  const url = req.deviceAuthorizationUrl;
  const auth = clientAuthentication(req, url);
  const ctx = { url, grant: 'device_code' as const, secrets: auth.secrets };
  const json = await postOAuth2(ctx, new URLSearchParams({ ...auth.params, ...(req.scope && { scope: req.scope }) }), {
    ...req,
    headers: auth.headers,
  });
  const deviceCode = str(json.device_code);
  const userCode = str(json.user_code);
  const verificationUri = str(json.verification_uri) ?? str(json.verification_url); // Google says _url
  if (!deviceCode || !userCode || !verificationUri) {
    throw oauth2Error(
      { secrets: [deviceCode] },
      'config',
      `OAuth2 device authorization answer from ${url} is incomplete`,
      {
        code: 'oauth2-bad-response',
      },
    );
  }
  const out: DeviceAuthorization = {
    deviceCode,
    userCode,
    verificationUri,
    expiresAt: Date.now() + seconds(json.expires_in, 900) * 1000,
    intervalMs: Math.min(seconds(json.interval, 5) * 1000, MAX_RETRY_AFTER_MS), // RFC 8628 §3.2: default 5 s
  };
  const complete = str(json.verification_uri_complete);
  if (complete) out.verificationUriComplete = complete;
  const message = str(json.message);
  if (message) out.message = message;
  return out;
}

function cancelled(): MailError {
  return oauth2Error({ secrets: [] }, 'auth', 'OAuth2 sign-in cancelled', { code: 'oauth2-sign-in-cancelled' });
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(cancelled());
    const onAbort = () => {
      clearTimeout(timer);
      reject(cancelled());
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Poll until the person signed in (→ tokens), refused (oauth2-access-denied) or the code expired. */
export async function pollDeviceAuthorization(req: DevicePollRequest, device: DeviceAuthorization): Promise<TokenSet> {
  let interval = device.intervalMs;
  for (;;) {
    const left = device.expiresAt - Date.now();
    if (left <= 0) {
      throw oauth2Error({ secrets: [] }, 'auth', 'OAuth2 sign-in expired: nobody entered the code in time', {
        code: 'oauth2-sign-in-expired',
      });
    }
    await sleep(Math.min(interval, left), req.signal);
    if (Date.now() >= device.expiresAt) continue;
    const auth = clientAuthentication(req, req.tokenUrl); // a client assertion is single-use: sign one per poll
    const ctx = { url: req.tokenUrl, grant: 'device_code' as const, secrets: [device.deviceCode, ...auth.secrets] };
    const body = new URLSearchParams({ grant_type: DEVICE_CODE_GRANT, device_code: device.deviceCode, ...auth.params });
    let answer;
    try {
      answer = await postForm(ctx, body, { ...req, headers: auth.headers });
    } catch (err) {
      // the server unreachable for a moment must not end a sign-in the person is completing
      if (err instanceof MailError && err.failureClass === 'network') continue;
      throw err;
    }
    if (answer.status >= 200 && answer.status < 300 && answer.json) return parseTokenAnswer(ctx, answer.json);
    const error = answer.json?.error;
    if (error === 'authorization_pending') continue;
    if (error === 'slow_down') {
      interval = Math.min(interval + SLOW_DOWN_MS, MAX_RETRY_AFTER_MS);
      continue;
    }
    const failure = classifyOAuth2Response(ctx, answer.status, answer.headers, answer.json);
    if (failure.failureClass === 'network' || failure.failureClass === 'throttled') {
      interval = Math.max(interval, failure.retryAfterMs ?? 0);
      continue;
    }
    throw failure;
  }
}
