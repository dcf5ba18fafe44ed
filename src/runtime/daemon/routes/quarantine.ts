/**
 * API routes of the quarantine (bearer token, like every `/v1/*` route):
 *   GET  /v1/quarantine[?server=imap/support]  → { quarantined: QuarantineListing[] }
 *   POST /v1/quarantine/release {key}           → { released: key, server } (404 when the key is not quarantined)
 * A release puts the UID back into the retry set and asks that server's loop to poll right away.
 */
import { PLAN_FORMAT_VERSION } from '../../../plan/model.js';
import type { Route } from '../http.js';
import { ImapLoop } from '../../loops/imap-loop.js';
import type { Supervisor } from '../../loops/supervisor.js';
import type { InboundMailProcessor } from '../../inbound/processor.js';

export function quarantineRoutes(inbound: InboundMailProcessor, supervisor: Supervisor): Route[] {
  return [
    {
      method: 'GET',
      path: '/v1/quarantine',
      handler: async (_r, _b, url) => {
        const server = url.searchParams.get('server') ?? undefined;
        return {
          status: 200,
          body: { formatVersion: PLAN_FORMAT_VERSION, quarantined: await inbound.listQuarantine(server) },
        };
      },
    },
    {
      method: 'POST',
      path: '/v1/quarantine/release',
      handler: async (_r, raw) => {
        const key = (raw as { key?: unknown } | undefined)?.key;
        if (typeof key !== 'string' || key === '' || key.length > 512)
          return { status: 400, body: { error: 'give the key of a quarantined message: {"key": "..."}' } };
        const server = await inbound.release(key);
        if (!server)
          return { status: 404, body: { error: `no quarantined message has the key ${JSON.stringify(key)}` } };
        const loop = supervisor.get(server);
        if (loop instanceof ImapLoop) void loop.requestPoll();
        return { status: 200, body: { formatVersion: PLAN_FORMAT_VERSION, released: key, server } };
      },
    },
  ];
}
