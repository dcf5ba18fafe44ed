/** The outbound and stored-mail API: `/v1/outbound[...]` and `/v1/stored/<shortName>/<key>` (all need the token). */
import type { LoadedServer } from '../../../config/model.js';
import type { ObservedState } from '../../../plan/model.js';
import { HttpError, type Answer, type Route } from '../http.js';
import { keyNameIs, parseInboundKey } from '../../../config/keys.js';
import { chooseSender } from '../../outbound/from.js';
import type { ImapPool } from '../../outbound/imap-pool.js';
import { OUTBOUND_ID, parseOutboundRequest } from '../../outbound/message.js';
import type { Outbox } from '../../outbound/outbox.js';
import { fetchStored } from '../../outbound/stored.js';
import type { ImapServerSpec } from '../../../config/model.js';
import { StoreUnavailableError } from '../../../store/errors.js';

/** When a client refused for an unavailable store should try again. */
const STORE_RETRY_S = 5;

export interface OutboundRouteDeps {
  outbox: Outbox;
  pool: ImapPool;
  /** The Message-ID recorded for an inbound key (store, then the directory sinks), or null. */
  inboundMessageId: (key: string) => Promise<string | null>;
  state: () => ObservedState;
  systemSmtp: LoadedServer | null;
}

const answer = (status: number, body: unknown): Answer => ({ status, body });

const idFrom = (url: URL, at: number): string => decodeURIComponent(url.pathname.split('/')[at] ?? '');

export function outboundRoutes(deps: OutboundRouteDeps): Route[] {
  const { outbox } = deps;
  return [
    {
      method: 'POST',
      path: '/v1/outbound',
      handler: async (_req, body) => {
        const request = parseOutboundRequest(body);
        const state = deps.state();
        const choice = chooseSender(request, state, deps.systemSmtp);
        const inReplyToMessageId = request.inReplyTo ? await deps.inboundMessageId(request.inReplyTo) : null;
        const message = await outbox
          .accept({ ...request, ...choice, ...(inReplyToMessageId && { inReplyToMessageId }) })
          .catch((err: unknown) => {
            // not stored, so not accepted: the client tries again (a lost answer to a commit may mean twice)
            if (err instanceof StoreUnavailableError)
              throw new HttpError(503, err.message, {}, { 'retry-after': String(STORE_RETRY_S) });
            throw err;
          });
        return answer(202, {
          id: message.id,
          messageId: message.messageId,
          server: message.server,
          from: message.from,
          state: 'queued',
        });
      },
    },
    {
      method: 'GET',
      path: '/v1/outbound',
      // `?limit=N` lists the first N only (`limit=0`: just the count in `size`, cheap enough to poll)
      handler: (_req, _body, url) => {
        const raw = url.searchParams.get('limit');
        const limit = raw === null ? Infinity : Number(raw);
        if (!Number.isInteger(limit) && limit !== Infinity)
          throw new HttpError(400, `"limit" must be a whole number, not ${JSON.stringify(raw)}`);
        if (limit < 0) throw new HttpError(400, '"limit" must not be negative');
        return answer(200, { outbox: outbox.list(limit), size: outbox.size(), quarantined: outbox.quarantined });
      },
    },
    {
      method: 'GET',
      path: /^\/v1\/outbound\/[^/]+$/,
      handler: (_req, _body, url) => {
        const view = outbox.view(idFrom(url, 3));
        if (!view) throw new HttpError(404, `no outbound message ${idFrom(url, 3)}`);
        return answer(200, view);
      },
    },
    {
      method: 'POST',
      path: /^\/v1\/outbound\/[^/]+\/cancel$/,
      handler: async (_req, _body, url) => {
        const id = idFrom(url, 3);
        const entry = outbox.get(id);
        if (!entry) {
          const view = outbox.view(id);
          if (!view) throw new HttpError(404, `no outbound message ${id}`);
          throw new HttpError(409, `${id} is already ${view.state}; nothing to cancel`, { state: view.state });
        }
        if (entry.state !== 'queued')
          throw new HttpError(409, `${id} is ${entry.state}; it can no longer be cancelled`, { state: entry.state });
        await outbox.finish(entry, 'cancelled');
        return answer(200, outbox.view(id));
      },
    },
    {
      method: 'GET',
      path: /^\/v1\/stored\/[^/]+\/[^/]+$/,
      // a message's exact source (base64) as the mail server keeps it: scrubbing would change it, and scanning
      // megabytes for every known secret would hold up the event loop
      verbatim: true,
      handler: async (_req, _body, url) => {
        const shortName = idFrom(url, 3);
        const key = idFrom(url, 4);
        const state = deps.state();
        const server = state.servers[`imap/${shortName}`];
        if (!server) throw new HttpError(404, `no IMAP server has the short name "${shortName}"`);
        let messageId: string | null;
        const inboundKey = parseInboundKey(key);
        if (OUTBOUND_ID.test(key)) messageId = outbox.messageIdOf(key);
        else if (inboundKey) {
          if (!keyNameIs(inboundKey.name, shortName))
            throw new HttpError(
              400,
              `the key ${key} belongs to the short name "${inboundKey.name}", not "${shortName}"`,
            );
          messageId = await deps.inboundMessageId(key);
        } else throw new HttpError(400, `"${key.slice(0, 300)}" is neither an inbound key nor an outbound id`);
        if (!messageId) throw new HttpError(404, `no Message-ID is recorded for ${key}`);
        const stored = await fetchStored(
          deps.pool,
          `imap/${shortName}`,
          server.config.spec as ImapServerSpec,
          messageId,
        );
        if (!stored)
          throw new HttpError(404, `${key} (${messageId}) is not in the storage folder of imap/${shortName}`);
        return answer(200, { shortName, key, ...stored });
      },
    },
  ];
}
