/**
 * DNS rebinding: the daemon answers only requests for its own names (IP addresses, localhost, --public-host), with 421
 * for any other Host, except the probe and scrape paths; every answer says nosniff, the status page sends its CSP.
 */
import { request } from 'node:http';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cli, createWorkspace, startDaemon, type DaemonProcess, type Workspace } from '../harness/mailctl.js';

let ws: Workspace;
let daemon: DaemonProcess;
let port: number;

test.before(async () => {
  ws = await createWorkspace();
  daemon = await startDaemon(ws, ['--public-host', 'Mailctl.Example.Internal.']);
  port = Number(new URL(daemon.url).port);
});

test.after(async () => {
  await daemon?.stop();
  await ws?.cleanup();
});

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
}

/** GET `path` from the daemon with this Host header (null: none at all). */
function get(path: string, host: string | null, token?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path,
        setHost: false,
        headers: { ...(host !== null && { host }), ...(token && { authorization: `Bearer ${token}` }) },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

test('IP addresses, localhost and the --public-host names are answered', async () => {
  for (const host of [
    `127.0.0.1:${port}`,
    `localhost:${port}`,
    'localhost',
    `[::1]:${port}`,
    `10.1.2.3:${port}`,
    `mailctl.example.internal:${port}`,
    'MAILCTL.example.internal.',
  ]) {
    assert.is((await get('/', host)).status, 200, host);
    assert.is((await get('/status.json', host)).status, 200, host);
  }
  assert.is((await get('/v1/status', `mailctl.example.internal:${port}`, daemon.token)).status, 200);
});

test('any other Host is refused with 421, even with the token', async () => {
  for (const host of [
    `attacker.example:${port}`,
    'mailctl.example.internal.attacker.example',
    'localhost.attacker.example',
  ]) {
    assert.is((await get('/', host)).status, 421, host);
    assert.is((await get('/status.json', host)).status, 421, host);
    assert.is((await get('/v1/status', host, daemon.token)).status, 421, host);
  }
  // (an HTTP/1.1 request without Host never gets this far: Node answers 400)
  assert.is((await get('/', null)).status, 400);
});

test('probes and scrapers are answered whatever the Host', async () => {
  for (const path of ['/livez', '/healthz', '/readyz', '/metrics'])
    assert.is((await get(path, `mailctl-0.mailctl.mail.svc:${port}`)).status, 200, path);
});

test('every answer says nosniff; the status page sends its Content-Security-Policy as a header', async () => {
  for (const path of ['/', '/status.json', '/livez', '/metrics', '/v1/status', '/nowhere'])
    assert.is((await get(path, `127.0.0.1:${port}`)).headers['x-content-type-options'], 'nosniff', path);
  const csp = String((await get('/', `127.0.0.1:${port}`)).headers['content-security-policy']);
  assert.match(csp, /^default-src 'none'; script-src 'sha256-[^']+'; style-src 'sha256-[^']+';/);
  assert.match(csp, /; connect-src 'self';/);
  assert.match(csp, /frame-ancestors 'none'/);
  const page = await (await fetch(`${daemon.url}/`)).text();
  assert.ok(page.includes(csp.replace("; frame-ancestors 'none'", '')), 'the header carries the meta tag policy');
});

test('--public-host must be a host name', async () => {
  const r = await cli(['run', '--dir', ws.dir, '--public-host', 'http://x.example/'], ws.env);
  assert.is(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stderr, /--public-host must be a host name/);
});

test.run();
