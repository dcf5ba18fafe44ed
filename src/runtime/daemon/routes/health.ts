/**
 * What probes, scrapers and people read without a token: `/livez` (and `/healthz`, its alias), `/readyz` (`?verbose`
 * lists the checks, and a replica's config drift), `/metrics`, the status page `/` and its data `/status.json` (no
 * secrets: scrubbed like every answer).
 */
import type { DaemonStatus } from '../../../api/status.js';
import type { Route } from '../http.js';
import type { DaemonMetrics } from '../metrics.js';
import { publicStatus, STATUS_PAGE_CSP, STATUS_PAGE_HTML } from '../status-page.js';

export interface HealthDeps {
  metrics: DaemonMetrics;
  /** A replica's status includes its group's, read from the store (asynchronously). */
  status: () => DaemonStatus | Promise<DaemonStatus>;
  /** Each server's deliveries or sends per minute over the last hour (the page's charts). */
  lastHour: (server: string) => [number, number][];
  /** Named checks; the daemon is ready when all pass. */
  readiness: () => Record<string, boolean>;
  /**
   * A replica whose folder differs from the applied configuration: that configuration's generation (it keeps running
   * it and stays ready; `?verbose` says so), else null.
   */
  drift?: () => number | null;
}

/** The informational line of `/readyz?verbose` about config drift: it passes, as readiness does. */
const driftLine = (generation: number): string =>
  `[+]config-drift: the folder differs from the applied generation ${generation}, which keeps running ` +
  '(informational: still ready)';

export function healthRoutes(deps: HealthDeps): Route[] {
  const livez: Route['handler'] = (_r, _b, url) => ({
    status: 200,
    body: url.searchParams.has('verbose') ? '[+]ping ok\nlivez check passed\n' : 'ok\n',
  });
  return [
    { method: 'GET', path: '/livez', public: true, anyHost: true, handler: livez },
    // deprecated in Kubernetes since 1.16; kept as an alias of /livez, so a probe that still uses it never kills a
    // draining daemon
    { method: 'GET', path: '/healthz', public: true, anyHost: true, handler: livez },
    {
      method: 'GET',
      path: '/readyz',
      public: true,
      anyHost: true,
      handler: (_r, _b, url) => {
        const results = deps.readiness();
        const ok = Object.values(results).every(Boolean);
        const drift = deps.drift?.() ?? null;
        const verbose = [
          ...Object.entries(results).map(
            ([name, passed]) => `[${passed ? '+' : '-'}]${name} ${passed ? 'ok' : 'failed'}`,
          ),
          ...(drift === null ? [] : [driftLine(drift)]),
        ].join('\n');
        const short = ok ? 'ok\n' : 'not ready\n';
        const body = url.searchParams.has('verbose') ? `${verbose}\nreadyz check ${ok ? 'passed' : 'failed'}\n` : short;
        return { status: ok ? 200 : 503, body };
      },
    },
    {
      method: 'GET',
      path: '/metrics',
      public: true,
      verbatim: true,
      anyHost: true,
      handler: async () => {
        const { contentType, body } = await deps.metrics.text();
        return { status: 200, body, type: contentType };
      },
    },
    {
      method: 'GET',
      path: '/',
      public: true,
      verbatim: true,
      handler: () => ({
        status: 200,
        body: STATUS_PAGE_HTML,
        type: 'text/html; charset=utf-8',
        headers: { 'content-security-policy': STATUS_PAGE_CSP },
      }),
    },
    {
      method: 'GET',
      path: '/status.json',
      public: true,
      handler: async () => ({ status: 200, body: publicStatus(await deps.status(), deps.lastHour) }),
    },
  ];
}
