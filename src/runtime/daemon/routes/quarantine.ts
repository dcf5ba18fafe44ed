/**
 * The quarantine (bearer token, like every `/v1/*` route):
 *   GET  /v1/quarantine[?server=imap/support]  → { quarantined: QuarantineListing[] }
 *   POST /v1/quarantine/release {key}           → { released: key, server } (404 when the key is not quarantined)
 * A release puts the UID back into the retry set and asks that server's loop to poll right away.
 */
import { API_FORMAT_VERSION } from '../../../api/index.js';
import type { InboundMailProcessor } from '../../inbound/processor.js';
import type { IncomingMessage } from 'node:http';
import { HttpError, type Answer, type Route } from '../http.js';

/** A replica of a group: the URL of the replica that owns `server` when it is another one, else null. */
export interface ReleaseForwarding {
  ownerElsewhere: (server: string) => Promise<string | null>;
  forward: (base: string, path: string, req: IncomingMessage, body: unknown) => Promise<Answer>;
}

export function quarantineRoutes(
  inbound: InboundMailProcessor,
  pollNow: (server: string) => void,
  group?: ReleaseForwarding,
): Route[] {
  return [
    {
      method: 'GET',
      path: '/v1/quarantine',
      handler: async (_r, _b, url) => {
        const server = url.searchParams.get('server') ?? undefined;
        const quarantined = await inbound.listQuarantine(server);
        return { status: 200, body: { formatVersion: API_FORMAT_VERSION, quarantined } };
      },
    },
    {
      method: 'POST',
      path: '/v1/quarantine/release',
      handler: async (req, raw) => {
        const key = (raw as { key?: unknown } | undefined)?.key;
        if (typeof key !== 'string' || key === '' || key.length > 512)
          throw new HttpError(400, 'give the key of a quarantined message: {"key": "..."}');
        // in a group the mailbox's owner releases it (the write is fenced by its lease)
        const found = group && (await inbound.listQuarantine()).find((q) => q.key === key);
        const elsewhere = found ? await group.ownerElsewhere(found.server) : null;
        if (group && elsewhere) return group.forward(elsewhere, '/v1/quarantine/release', req, raw);
        const server = await inbound.release(key);
        if (!server) throw new HttpError(404, `no quarantined message has the key ${JSON.stringify(key)}`);
        pollNow(server);
        return { status: 200, body: { formatVersion: API_FORMAT_VERSION, released: key, server } };
      },
    },
  ];
}
