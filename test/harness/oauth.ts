/**
 * A tiny OAuth2 server for tests, on a free loopback port:
 *  - POST /introspect  (RFC 7662, what Dovecot's passdb oauth2 calls): token=… → {active, username}
 *  - POST /token       (refresh_token grant): → {access_token, expires_in, token_type}; the minted access
 *                      token is registered for introspection, so it can log in to Dovecot right away.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';

export interface OAuthServer {
  port: number;
  introspectionUrl: string;
  tokenUrl: string;
  setAccessToken(token: string, user: string): void;
  setRefreshToken(refreshToken: string, user: string): void;
  /** Calls `listener` for every access token /token mints (e.g. to let an SMTP server accept it too). */
  onMint(listener: (token: string, user: string) => void): void;
  /** Require these client credentials at /token (default: any client is accepted). */
  setClient(clientId: string, clientSecret: string): void;
  /** Make the next `n` /token requests answer with this HTTP status and body (object → JSON, string → as is). */
  failNextToken(
    n: number,
    status: number,
    body: Record<string, unknown> | string,
    headers?: Record<string, string>,
  ): void;
  /** Counters, for assertions. */
  stats: { introspections: number; tokenRequests: number };
  close(): Promise<void>;
}

export async function startOAuthServer(opts: { expiresIn?: number } = {}): Promise<OAuthServer> {
  const access = new Map<string, string>();
  const refresh = new Map<string, string>();
  let client: { id: string; secret: string } | undefined;
  let failing:
    { n: number; status: number; body: Record<string, unknown> | string; headers: Record<string, string> } | undefined;
  const stats = { introspections: 0, tokenRequests: 0 };
  const minted: ((token: string, user: string) => void)[] = [];

  const json = (res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    const raw = typeof body === 'string';
    res.writeHead(status, {
      'content-type': raw ? 'text/html' : 'application/json',
      'cache-control': 'no-store',
      ...headers,
    });
    res.end(raw ? body : JSON.stringify(body));
  };

  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      const form = new URLSearchParams(body);
      const url = (req.url ?? '').split('?')[0];
      if (req.method === 'POST' && url === '/introspect') {
        stats.introspections++;
        const user = access.get(form.get('token') ?? '');
        return json(res, 200, user ? { active: true, username: user } : { active: false });
      }
      if (req.method === 'POST' && url === '/token') {
        stats.tokenRequests++;
        if (failing && failing.n > 0) {
          failing.n--;
          return json(res, failing.status, failing.body, failing.headers);
        }
        if (form.get('grant_type') !== 'refresh_token') {
          return json(res, 400, { error: 'unsupported_grant_type' });
        }
        if (client && (form.get('client_id') !== client.id || form.get('client_secret') !== client.secret)) {
          return json(res, 401, { error: 'invalid_client', error_description: 'client authentication failed' });
        }
        const user = refresh.get(form.get('refresh_token') ?? '');
        if (!user)
          return json(res, 400, { error: 'invalid_grant', error_description: 'refresh token is invalid or revoked' });
        const token = `at-${randomBytes(12).toString('hex')}`;
        access.set(token, user);
        for (const listener of minted) listener(token, user);
        return json(res, 200, { access_token: token, expires_in: opts.expiresIn ?? 3600, token_type: 'Bearer' });
      }
      json(res, 404, { error: 'not_found' });
    });
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  server.unref(); // a forgotten close() must not keep the test process alive
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    port,
    introspectionUrl: `http://127.0.0.1:${port}/introspect`,
    tokenUrl: `http://127.0.0.1:${port}/token`,
    setAccessToken: (t, u) => void access.set(t, u),
    onMint: (listener) => void minted.push(listener),
    setRefreshToken: (t, u) => void refresh.set(t, u),
    setClient: (id, secret) => void (client = { id, secret }),
    failNextToken: (n, status, body, headers = {}) => void (failing = { n, status, body, headers }),
    stats,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
