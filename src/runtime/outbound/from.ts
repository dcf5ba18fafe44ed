/**
 * Which SMTP server sends a message, and as whom: an explicit `from` (user or additional From address of an enabled
 * SMTP server, case-insensitive), a reply (the account the original was sent to), a template (the `role: template`
 * server, else the daemon's `--system-smtp` server). Anything else is refused with 422 and a message that says why.
 */
import { keyNameIs, parseInboundKey } from '../../config/keys.js';
import type { LoadedServer, SmtpServerSpec } from '../../config/model.js';
import type { ObservedState, ServerConfig } from '../../plan/model.js';
import { HttpError } from '../daemon/http.js';
import type { OutboundRequest } from './message.js';

/** Supervisor id of the `--system-smtp` send loop (never an applied server id). */
export const systemLoopId = (system: LoadedServer): string => `system:${system.id}`;

export interface SenderChoice {
  /** Supervisor id of the SMTP loop. */
  server: string;
  from: string;
}

const lower = (s: string) => s.toLowerCase();

function enabledSmtp(state: ObservedState): [string, SmtpServerSpec][] {
  return Object.entries(state.servers)
    .filter(([, s]) => s.status === 'active' && s.config.spec.type === 'smtp' && s.config.spec.enabled)
    .map(([id, s]) => [id, s.config.spec as SmtpServerSpec] as [string, SmtpServerSpec])
    .sort(([a], [b]) => (a < b ? -1 : 1));
}

const addressesOf = (spec: SmtpServerSpec): string[] => [spec.auth.user, ...spec.additionalFromAddresses];

/** The IMAP server an inbound key (`<shortName>.<uidValidity>.<uid>.<hash8>`) belongs to, by its name in keys. */
export function imapServerOfKey(key: string, state: ObservedState): { id: string; config: ServerConfig } | null {
  const name = parseInboundKey(key)?.name;
  if (name === undefined) return null;
  for (const [id, server] of Object.entries(state.servers))
    if (server.config.spec.type === 'imap' && keyNameIs(name, server.config.spec.shortName))
      return { id, config: server.config };
  return null;
}

export function chooseSender(
  request: OutboundRequest,
  state: ObservedState,
  system: LoadedServer | null,
): SenderChoice {
  const servers = enabledSmtp(state);
  const candidates: [string, SmtpServerSpec][] =
    request.kind === 'template' && system?.spec.type === 'smtp'
      ? [...servers, [systemLoopId(system), system.spec]]
      : servers;
  if (request.from !== undefined) {
    const wanted = lower(request.from);
    const hit = candidates.find(([, spec]) => addressesOf(spec).some((a) => lower(a) === wanted));
    if (hit) return { server: hit[0], from: request.from };
    const configured = [...new Set(candidates.flatMap(([, spec]) => addressesOf(spec)))];
    throw new HttpError(
      422,
      `no enabled SMTP server may send as ${request.from}; the configured From addresses are: ` +
        `${configured.length ? configured.join(', ') : '(none: no SMTP server is enabled)'}`,
    );
  }
  if (request.inReplyTo !== undefined) {
    const imap = imapServerOfKey(request.inReplyTo, state);
    if (!imap)
      throw new HttpError(
        422,
        `cannot reply to ${request.inReplyTo}: no IMAP server has the short name ` +
          `"${parseInboundKey(request.inReplyTo)?.name}"; give "from"`,
      );
    const user = imap.config.spec.auth.user;
    const hit = servers.find(([, spec]) => lower(spec.auth.user) === lower(user));
    if (!hit)
      throw new HttpError(
        422,
        `cannot reply to ${request.inReplyTo}: it was sent to ${user}, and no enabled SMTP server logs in as ` +
          `${user}; give "from"`,
      );
    return { server: hit[0], from: user };
  }
  if (request.kind === 'template') {
    const template = servers.find(([, spec]) => spec.role === 'template');
    if (template) return { server: template[0], from: template[1].auth.user };
    if (system?.spec.type === 'smtp') return { server: systemLoopId(system), from: system.spec.auth.user };
    throw new HttpError(
      422,
      'no enabled SMTP server has role: template and the daemon runs without --system-smtp; give "from"',
    );
  }
  throw new HttpError(
    422,
    'an agent message needs "from" (an address of an enabled SMTP server) or "inReplyTo" (the inbound key it answers)',
  );
}
