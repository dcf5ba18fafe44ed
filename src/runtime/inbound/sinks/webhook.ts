/**
 * The `webhook` sink: one POST per message with a JSON body (the fields of the directory sink's `.json` plus `source`,
 * the exact message source in base64), `Idempotency-Key: <key>` (the same key for every retry of a message) and
 * `X-Mailctl-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes with the flow's secret>`.
 * 2xx acknowledges; 4xx (but 408, 425, 429) is a permanent failure of that message; 5xx, 3xx (redirects are not
 * followed: the signed body must not go elsewhere), 408/425/429, timeouts and connection errors are transient, and
 * connection errors/timeouts mean the sink itself is down. Messages never contain the secret or URL credentials.
 * A URL whose host is, or resolves to, a link-local address (169.254.0.0/16, fe80::/10: cloud metadata services) is
 * refused as a sink that is down; the address is checked as each connection is made, so DNS cannot change it after.
 */
import { createHmac } from 'node:crypto';
import { lookup as dnsLookup } from 'node:dns';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { BlockList, isIP, type LookupFunction } from 'node:net';
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

const LINK_LOCAL = new BlockList();
LINK_LOCAL.addSubnet('169.254.0.0', 16, 'ipv4');
LINK_LOCAL.addSubnet('fe80::', 10, 'ipv6');

/** Whether an IP address is link-local (also written as IPv4-mapped IPv6, `::ffff:169.254.169.254`). */
const isLinkLocal = (address: string): boolean =>
  isIP(address) !== 0 && LINK_LOCAL.check(address, isIP(address) === 6 ? 'ipv6' : 'ipv4');

class LinkLocalError extends Error {
  readonly code = 'ELINKLOCAL';
}
const linkLocal = (address: string) =>
  new LinkLocalError(`its host is a link-local address (${address}), where cloud metadata services answer`);

/** `lookup`, refusing a name that resolves to any link-local address; connections use what it returns. */
function guarded(lookup: LookupFunction): LookupFunction {
  return (hostname, options, callback) =>
    lookup(hostname, { ...options, all: true }, (err, found) => {
      if (err) return callback(err, '');
      const addresses = typeof found === 'string' ? [{ address: found, family: isIP(found) }] : found;
      const bad = addresses.find((a) => isLinkLocal(a.address));
      if (bad) return callback(linkLocal(bad.address), '');
      if (options.all) return callback(null, addresses);
      callback(null, addresses[0]!.address, addresses[0]!.family);
    });
}

/** Shared by every webhook sink (a sink lives for one poll), like fetch's global pool was. */
const AGENTS = { http: new HttpAgent({ keepAlive: true }), https: new HttpsAgent({ keepAlive: true }) };

export function webhookBody(item: SinkItem): string {
  return JSON.stringify({ ...item.metadata, source: item.source.toString('base64') });
}

export interface WebhookOptions {
  timeoutMs?: number;
  concurrency?: number;
  /** How host names are resolved (default: the system's, `dns.lookup`). */
  lookup?: LookupFunction;
}

export class WebhookSink implements InboundSink {
  private readonly lookup: LookupFunction;

  constructor(
    private readonly url: string,
    private readonly secret: string,
    private readonly options: WebhookOptions = {},
  ) {
    this.lookup = guarded(options.lookup ?? dnsLookup);
  }

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
    let status: number;
    try {
      status = await this.send(body, {
        'content-type': 'application/json',
        'idempotency-key': item.key,
        [SIGNATURE_HEADER]: signBody(body, this.secret),
        'user-agent': 'mailctl',
      });
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (err instanceof LinkLocalError) return fail(`webhook ${where} refused: ${e.message}`, { sinkDown: true });
      const why =
        e.name === 'TimeoutError'
          ? `no answer within ${(this.options.timeoutMs ?? WEBHOOK_TIMEOUT_MS) / 1000} s`
          : (e.code ?? e.name ?? 'error');
      return fail(`webhook ${where} unreachable (${why})`, { sinkDown: true });
    }
    if (status >= 200 && status < 300) return { key: item.key, ok: true };
    if (status >= 400 && status < 500 && !TRANSIENT_4XX.has(status))
      return fail(`webhook ${where} rejected the message with HTTP ${status}`, { permanent: true });
    if (status >= 300 && status < 400)
      return fail(`webhook ${where} answered HTTP ${status} (redirects are not followed)`);
    return fail(`webhook ${where} answered HTTP ${status}`);
  }

  /** POSTs `body`; resolves to the HTTP status once the answer was read (node:http never follows redirects). */
  private send(body: string, headers: Record<string, string>): Promise<number> {
    const url = new URL(this.url);
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    // an address in the URL is connected to without a lookup: check it here
    if (isLinkLocal(host)) return Promise.reject(linkLocal(host));
    const https = url.protocol === 'https:';
    const timeoutMs = this.options.timeoutMs ?? WEBHOOK_TIMEOUT_MS;
    return new Promise((resolve, reject) => {
      const req = (https ? httpsRequest : httpRequest)(
        url,
        {
          method: 'POST',
          headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
          agent: https ? AGENTS.https : AGENTS.http,
          lookup: this.lookup,
        },
        (res) => {
          res.resume(); // drain: frees the connection for keep-alive
          res.on('end', () => resolve(res.statusCode ?? 0));
          res.on('error', reject);
          res.on('close', () => reject(Object.assign(new Error('the answer was cut off'), { code: 'ECONNRESET' })));
        },
      );
      const timer = setTimeout(
        () => req.destroy(Object.assign(new Error('timeout'), { name: 'TimeoutError' })),
        timeoutMs,
      );
      req.on('close', () => clearTimeout(timer));
      req.on('error', reject);
      req.end(body);
    });
  }
}
