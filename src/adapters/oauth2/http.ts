/** One form-encoded POST to an OAuth2 endpoint with global fetch: a timeout, no redirects, JSON answer. */
import { classifyFetchFailure, classifyOAuth2Response, type ErrorContext } from './errors.js';

export interface RequestOptions {
  /** Per request; default 10 000 ms. */
  timeoutMs?: number | undefined;
  /** The caller gave up (a sign-in it no longer waits for): rejects with oauth2-sign-in-cancelled. */
  signal?: AbortSignal | undefined;
}

export const DEFAULT_TIMEOUT_MS = 10_000;

export interface FormAnswer {
  status: number;
  headers: Headers;
  /** The parsed JSON object, when the body was one. */
  json: Record<string, unknown> | undefined;
}

/** POST `body`; answers 2xx and 4xx/5xx alike (the caller decides), network failures reject as MailError. */
export async function postForm(
  ctx: ErrorContext,
  body: URLSearchParams,
  opts: RequestOptions & { headers?: Record<string, string> } = {},
): Promise<FormAnswer> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const signal = opts.signal
    ? AbortSignal.any([opts.signal, AbortSignal.timeout(timeoutMs)])
    : AbortSignal.timeout(timeoutMs);
  let res: Response;
  let text: string;
  try {
    res = await fetch(ctx.url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', ...opts.headers },
      body,
      signal,
      redirect: 'error',
    });
    text = await res.text();
  } catch (err) {
    throw classifyFetchFailure(ctx, err, timeoutMs, opts.signal?.aborted ?? false);
  }
  let json: Record<string, unknown> | undefined;
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) json = parsed as Record<string, unknown>;
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, json };
}

/** POST `body` and return the JSON of a 2xx answer; anything else rejects as a classified MailError. */
export async function postOAuth2(
  ctx: ErrorContext,
  body: URLSearchParams,
  opts: RequestOptions & { headers?: Record<string, string> } = {},
): Promise<Record<string, unknown>> {
  const answer = await postForm(ctx, body, opts);
  if (answer.status < 200 || answer.status >= 300) {
    throw classifyOAuth2Response(ctx, answer.status, answer.headers, answer.json);
  }
  if (!answer.json) throw classifyOAuth2Response(ctx, answer.status, answer.headers, undefined);
  return answer.json;
}
