import { timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import type { Logger } from 'pino';

export interface Answer {
  status: number;
  body: unknown;
  type?: string;
  headers?: Record<string, string>;
  /** A streamed answer (NDJSON): `body` is ignored; each `write` sends one line as it happens. */
  stream?: (write: (line: unknown) => void) => Promise<void>;
}

/**
 * A request the route refuses: answered with `status` and `{ error: message, ...details }` (never logged as a fault).
 */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly details: Record<string, unknown> = {},
    /** Extra response headers, e.g. `retry-after`. */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** A route's work; synchronous answers are fine (most read in-memory state). Refusals throw HttpError. */
export type Handler = (req: IncomingMessage, body: unknown, url: URL) => Answer | Promise<Answer>;

export interface Route {
  method: 'GET' | 'POST';
  path: string | RegExp;
  /** `/livez`, `/readyz`, `/metrics` and the status page need no token; every `/v1/*` route does. */
  public?: boolean;
  /**
   * Answered as it is, not scrubbed: constant text (the status page), numbers and server ids only (`/metrics`, where
   * scrubbing a scrape of a thousand servers would take tens of milliseconds of the event loop), or a stored message's
   * exact source.
   */
  verbatim?: boolean;
  /** Answered whatever the Host header says: probes and scrapers, which address the daemon by pod IP or any name. */
  anyHost?: boolean;
  handler: Handler;
}

const MAX_BODY_BYTES = 32 * 1024 * 1024;
/** How long an idle client connection is kept (Node's default, 5 s, is the status page's refresh interval). */
const KEEP_ALIVE_TIMEOUT_MS = 30_000;

function tokenMatches(header: string | undefined, token: string): boolean {
  const given = Buffer.from(header?.replace(/^Bearer\s+/i, '') ?? '');
  const expected = Buffer.from(token);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new HttpError(413, 'request body too large');
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return undefined;
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new HttpError(400, 'request body is not JSON');
  }
}

/**
 * Keys whose values are configuration as written (specs, references, bindings): never a secret, since the schema
 * allows references only, and compared by plans (`state pull`), so a password that happens to be part of a path or a
 * user name must not change them. Every other string of an answer (messages, reasons, errors) is scrubbed.
 */
const AS_WRITTEN = new Set(['config', 'before', 'after', 'bindings', 'rebinds']);

/** `body` with its strings scrubbed, configuration left as written; all strings go through `scrub` at once. */
export function scrubAnswer(body: unknown, scrub: Scrub): unknown {
  if (typeof body === 'string') return scrub(body);
  if (body === undefined) return body;
  const plain = JSON.parse(JSON.stringify(body)) as unknown; // what goes out: dates as text, no undefined
  const texts: string[] = [];
  const walk = (value: unknown, edit: (text: string) => string): unknown => {
    if (typeof value === 'string') return edit(value);
    if (Array.isArray(value)) return value.map((v: unknown) => walk(v, edit));
    if (value === null || typeof value !== 'object') return value;
    return Object.fromEntries(Object.entries(value).map(([key, v]) => [key, AS_WRITTEN.has(key) ? v : walk(v, edit)]));
  };
  walk(plain, (text) => (texts.push(text), text));
  if (texts.some((text) => text.includes('\0'))) return walk(plain, scrub);
  // NUL joins them: no secret form contains one (the resolver refuses NUL in a secret), so none spans two strings
  const joined = texts.join('\0');
  const clean = scrub(joined);
  if (clean === joined) return plain;
  const parts = clean.split('\0');
  let next = 0;
  return walk(plain, () => parts[next++]!);
}

function send(res: ServerResponse, answer: Answer, scrub: Scrub): void {
  const { status, body, type, headers } = answer;
  const clean = scrubAnswer(body, scrub);
  const text = typeof clean === 'string' ? clean : JSON.stringify(clean);
  res.writeHead(status, {
    'content-type': type ?? (typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json'),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    ...headers,
  });
  res.end(text);
}

/** The host name of a Host header (lower case, without port, brackets or a final dot), or null when there is none. */
function hostOf(header: string | undefined): string | null {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+))(?::\d*)?$/.exec(header?.trim() ?? '');
  const host = match?.[1] ?? match?.[2];
  return host ? host.toLowerCase().replace(/\.$/, '') : null;
}

/** Removes every known secret from a text (the logs' scrubber). */
export type Scrub = (text: string) => string;
const verbatim: Scrub = (text) => text;

/** An NDJSON answer: one line per event as it happens; a failure after the head is the last line, `type: error`. */
async function streamLines(
  res: ServerResponse,
  status: number,
  stream: NonNullable<Answer['stream']>,
  scrub: Scrub,
): Promise<void> {
  res.writeHead(status, {
    'content-type': 'application/x-ndjson',
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  });
  try {
    await stream((line) => res.write(`${JSON.stringify(scrubAnswer(line, scrub))}\n`));
  } catch (err) {
    res.write(`${JSON.stringify(scrubAnswer({ type: 'error', error: (err as Error).message }, scrub))}\n`);
  }
  res.end();
}

export interface ApiOptions {
  token: string;
  log: Logger;
  scrub: Scrub;
  /** `--public-host`: names the daemon answers for besides IP addresses and `localhost` (lower case). */
  publicHosts: readonly string[];
}

/**
 * The daemon's small HTTP API. Routes are data; authentication is decided here once, and every answer (a verification
 * failure quoting a server, a last error, an apply's result, each line of a stream) passes `scrub` on its way out. A
 * request naming another host than the daemon's (DNS rebinding: a web page whose name now resolves to the daemon) is
 * refused with 421.
 */
export function createApiServer(routes: readonly Route[], options: ApiOptions): Server {
  const { token, log, scrub } = options;
  const names = new Set(['localhost', ...options.publicHosts]);
  const hostAllowed = (host: string | null) => host !== null && (isIP(host) !== 0 || names.has(host));
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const matching = routes.filter((r) =>
      typeof r.path === 'string' ? r.path === url.pathname : r.path.test(url.pathname),
    );
    const route = matching.find((r) => r.method === req.method);
    const host = hostOf(req.headers.host);
    if (!route?.anyHost && !hostAllowed(host)) {
      const error =
        'this daemon answers for IP addresses, localhost and its --public-host names, not for ' +
        `${JSON.stringify(host ?? '')}`;
      return send(res, { status: 421, body: { error } }, scrub);
    }
    if (!route) {
      const status = matching.length ? 405 : 404;
      return send(res, { status, body: { error: matching.length ? 'method not allowed' : 'not found' } }, scrub);
    }
    if (!route.public && !tokenMatches(req.headers.authorization, token))
      return send(res, { status: 401, body: { error: 'a valid API token is required' } }, scrub);
    try {
      const body = req.method === 'POST' ? await readBody(req) : undefined;
      const answer = await route.handler(req, body, url);
      const answerScrub = route.verbatim ? verbatim : scrub;
      if (answer.stream) await streamLines(res, answer.status, answer.stream, answerScrub);
      else send(res, answer, answerScrub);
    } catch (err) {
      const status = err instanceof HttpError ? err.status : 500;
      if (status === 500) log.error({ err: (err as Error).message }, `API ${req.method} ${url.pathname} failed`);
      const body = { error: (err as Error).message, ...(err instanceof HttpError && err.details) };
      send(res, { status, body, ...(err instanceof HttpError && { headers: err.headers }) }, scrub);
    }
  };
  const server = createServer((req, res) => void handle(req, res));
  // longer than the page's refresh interval: a request sent on a connection just as the server closes it for
  // idleness would fail
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
  return server;
}
