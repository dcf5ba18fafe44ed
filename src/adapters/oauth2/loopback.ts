/**
 * The loopback redirect listener of a native app's sign-in (RFC 8252 §7.3): 127.0.0.1 on a random port, waiting for
 * exactly one redirect that carries this sign-in's `state`. A redirect with another state is answered 400 and
 * ignored (it is not ours: a stale tab or a forged request); other paths get 404. The browser never sees the code
 * again.
 */
import http from 'node:http';
import { MailError } from '../connection.js';
import { oauth2Error } from './errors.js';

export interface LoopbackOptions {
  /** The `state` the redirect must carry. */
  state: string;
  /** Path of the redirect URI (default "/"; it must match the app registration's). */
  path?: string | undefined;
  /** How long to wait for the browser (default 5 minutes). */
  timeoutMs?: number | undefined;
  signal?: AbortSignal | undefined;
}

export interface LoopbackRedirect {
  /** `http://127.0.0.1:<port><path>`: the redirect_uri to send. */
  redirectUri: string;
  /** The authorization code, once the matching redirect arrived; rejects on an error redirect, timeout or abort. */
  code: Promise<string>;
  /** Stop listening (also done once the code arrived). */
  close(): Promise<void>;
}

const page = (title: string, text: string) =>
  `<!DOCTYPE html><meta charset="utf-8"><title>${title}</title><p>${text}</p>`;

export async function startLoopbackRedirect(opts: LoopbackOptions): Promise<LoopbackRedirect> {
  const path = opts.path ?? '/';
  const server = http.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  const redirectUri = `http://127.0.0.1:${port}${path}`;

  let closed: Promise<void> | undefined;
  const close = () =>
    (closed ??= new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }));

  const code = new Promise<string>((resolve, reject) => {
    const finish = (err: MailError | undefined, value?: string) => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      void close();
      if (err) reject(err);
      else resolve(value!);
    };
    const timeoutMs = opts.timeoutMs ?? 300_000;
    const timer = setTimeout(
      () =>
        finish(
          oauth2Error({ secrets: [] }, 'auth', `OAuth2 sign-in expired: no redirect within ${timeoutMs / 1000} s`, {
            code: 'oauth2-sign-in-expired',
          }),
        ),
      timeoutMs,
    );
    const onAbort = () =>
      finish(oauth2Error({ secrets: [] }, 'auth', 'OAuth2 sign-in cancelled', { code: 'oauth2-sign-in-cancelled' }));
    if (opts.signal?.aborted) return onAbort();
    opts.signal?.addEventListener('abort', onAbort, { once: true });

    server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
      const url = new URL(req.url ?? '/', redirectUri);
      const reply = (status: number, title: string, text: string) => {
        res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
        res.end(page(title, text));
      };
      if (req.method !== 'GET' || url.pathname !== path) return reply(404, 'Not found', 'Not found.');
      if (url.searchParams.get('state') !== opts.state) {
        return reply(400, 'Sign-in refused', 'This sign-in response does not belong to the sign-in in progress.');
      }
      const error = url.searchParams.get('error');
      if (error) {
        reply(200, 'Sign-in failed', 'The sign-in did not complete. You can close this window.');
        const denied = error === 'access_denied';
        const desc = url.searchParams.get('error_description')?.slice(0, 200);
        return finish(
          oauth2Error(
            { secrets: [] },
            denied ? 'auth' : 'config',
            `OAuth2 sign-in ${denied ? 'was refused' : 'failed'} (${error}${desc ? `: ${desc}` : ''})`,
            { code: denied ? 'oauth2-access-denied' : 'oauth2-invalid-request', providerCode: error },
          ),
        );
      }
      const value = url.searchParams.get('code');
      if (!value) return reply(400, 'Sign-in refused', 'The sign-in response has no code.');
      reply(200, 'Signed in', 'Signed in. You can close this window.');
      finish(undefined, value);
    });
  });
  code.catch(() => {}); // observed by the caller through `code`; no unhandled rejection if it never awaits it
  return { redirectUri, code, close };
}
