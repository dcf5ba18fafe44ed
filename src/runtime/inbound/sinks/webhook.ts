/**
 * The `webhook` sink: one POST per message with a JSON body (the fields of the directory sink's `.json` plus `source`,
 * the exact message source in base64), `Idempotency-Key: <key>` (the same key for every retry of a message) and
 * `X-Mailctl-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes with the flow's secret>`.
 * 2xx acknowledges; 4xx (but 408, 425, 429) is a permanent failure of that message; 5xx, 3xx (redirects are not
 * followed: the signed body must not go elsewhere), 408/425/429, timeouts and connection errors are transient, and
 * connection errors/timeouts mean the sink itself is down. Messages never contain the secret or URL credentials.
 */
import { createHmac } from 'node:crypto';
import type { InboundSink, SinkItem, SinkResult } from './directory.js';

export const SIGNATURE_HEADER = 'x-mailctl-signature';
export const WEBHOOK_TIMEOUT_MS = 30_000;
/** Parallel POSTs per batch. */
export const WEBHOOK_CONCURRENCY = 8;
const TRANSIENT_4XX = new Set([408, 425, 429]);

/** `sha256=<hex>`: what a receiver recomputes over the raw body to check the signature. */
export function signBody(body: string | Uint8Array, secret: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/** The URL for messages: no user, password, query or fragment (they may carry credentials). */
export function displayUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}`;
  } catch {
    return '(invalid URL)';
  }
}

export function webhookBody(item: SinkItem): string {
  return JSON.stringify({ ...item.metadata, source: item.source.toString('base64') });
}

export class WebhookSink implements InboundSink {
  constructor(
    private readonly url: string,
    private readonly secret: string,
    private readonly options: { timeoutMs?: number; concurrency?: number } = {},
  ) {}

  async deliverBatch(items: readonly SinkItem[]): Promise<SinkResult[]> {
    const results = new Array<SinkResult>(items.length);
    let next = 0;
    const worker = async () => {
      while (next < items.length) {
        const i = next++;
        results[i] = await this.post(items[i]!);
      }
    };
    await Promise.all(
      Array.from({ length: Math.min(items.length, this.options.concurrency ?? WEBHOOK_CONCURRENCY) }, worker),
    );
    return results;
  }

  private async post(item: SinkItem): Promise<SinkResult> {
    const body = webhookBody(item);
    const where = displayUrl(this.url);
    const fail = (message: string, extra: { permanent?: boolean; sinkDown?: boolean } = {}): SinkResult => ({
      key: item.key,
      ok: false,
      error: new Error(message),
      ...extra,
    });
    let response: Response;
    try {
      response = await fetch(this.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'idempotency-key': item.key,
          [SIGNATURE_HEADER]: signBody(body, this.secret),
          'user-agent': 'mailctl',
        },
        body,
        redirect: 'manual',
        signal: AbortSignal.timeout(this.options.timeoutMs ?? WEBHOOK_TIMEOUT_MS),
      });
    } catch (err) {
      const e = err as { name?: string; cause?: { code?: string } };
      const why =
        e.name === 'TimeoutError'
          ? `no answer within ${(this.options.timeoutMs ?? WEBHOOK_TIMEOUT_MS) / 1000} s`
          : (e.cause?.code ?? e.name ?? 'error');
      return fail(`webhook ${where} unreachable (${why})`, { sinkDown: true });
    }
    await response.arrayBuffer().catch(() => undefined); // drain: frees the connection for keep-alive
    const status = response.status;
    if (status >= 200 && status < 300) return { key: item.key, ok: true };
    if (status >= 400 && status < 500 && !TRANSIENT_4XX.has(status))
      return fail(`webhook ${where} rejected the message with HTTP ${status}`, { permanent: true });
    if (status >= 300 && status < 400)
      return fail(`webhook ${where} answered HTTP ${status} (redirects are not followed)`);
    return fail(`webhook ${where} answered HTTP ${status}`);
  }
}
