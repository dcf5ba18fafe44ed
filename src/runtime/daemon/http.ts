import { timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';

export interface Answer {
  status: number;
  body: unknown;
  type?: string;
  /** A streamed answer (NDJSON): `body` is ignored; each `write` sends one line as it happens. */
  stream?: (write: (line: unknown) => void) => Promise<void>;
}

/** A request the route refuses: answered with `status` and `{ error: message, ...details }` (never logged as a fault). */
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
  handler: Handler;
}

const MAX_BODY_BYTES = 32 * 1024 * 1024;

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

function send(res: ServerResponse, status: number, body: unknown, type?: string, headers = {}): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, {
    'content-type': type ?? (typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json'),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}

/** An NDJSON answer: one line per event as it happens; a failure after the head is the last line, `type: error`. */
async function streamLines(res: ServerResponse, status: number, stream: NonNullable<Answer['stream']>): Promise<void> {
  res.writeHead(status, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
  try {
    await stream((line) => res.write(`${JSON.stringify(line)}\n`));
  } catch (err) {
    res.write(`${JSON.stringify({ type: 'error', error: (err as Error).message })}\n`);
  }
  res.end();
}

/** The daemon's small HTTP API. Routes are data; authentication is decided here once. */
export function createApiServer(routes: readonly Route[], token: string, log: Logger): Server {
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const matching = routes.filter((r) =>
      typeof r.path === 'string' ? r.path === url.pathname : r.path.test(url.pathname),
    );
    const route = matching.find((r) => r.method === req.method);
    if (!route)
      return send(res, matching.length ? 405 : 404, { error: matching.length ? 'method not allowed' : 'not found' });
    if (!route.public && !tokenMatches(req.headers.authorization, token))
      return send(res, 401, { error: 'a valid API token is required' });
    try {
      const body = req.method === 'POST' ? await readBody(req) : undefined;
      const answer = await route.handler(req, body, url);
      if (answer.stream) await streamLines(res, answer.status, answer.stream);
      else send(res, answer.status, answer.body, answer.type);
    } catch (err) {
      const status = err instanceof HttpError ? err.status : 500;
      if (status === 500) log.error({ err: (err as Error).message }, `API ${req.method} ${url.pathname} failed`);
      send(
        res,
        status,
        { error: (err as Error).message, ...(err instanceof HttpError && err.details) },
        undefined,
        err instanceof HttpError ? err.headers : {},
      );
    }
  };
  return createServer((req, res) => void handle(req, res));
}
