import type { EmailFlow, EmailServer } from '../generated/mailctl.js';
import {
  DEFAULT_MAX_MESSAGE_SIZE,
  DEFAULT_POLL_SCHEDULE,
  defaultPort,
  type FlowSpec,
  type ServerSpec,
} from './model.js';
import { DEFAULT_QUEUE_TABLE } from './sinks.js';

/** Fills in the defaults the schema documents, so plans compare complete values. */
export function normalizeServer(server: EmailServer): ServerSpec {
  const tls = server.tls ?? true;
  const common = {
    name: server.name,
    shortName: server.shortName,
    ...(server.description !== undefined && { description: server.description }),
    host: server.host,
    port: server.port ?? defaultPort(server.type, tls),
    tls,
    allowPlaintext: server.allowPlaintext ?? false,
    ...(server.tlsCaFile !== undefined && { tlsCaFile: server.tlsCaFile }),
    auth: server.auth,
    ...(server.reauthenticateOnSave !== undefined && { reauthenticateOnSave: server.reauthenticateOnSave }),
    role: server.role ?? 'agent',
    enabled: server.enabled ?? true,
  };
  if (server.type === 'smtp')
    return { type: 'smtp', ...common, additionalFromAddresses: server.additionalFromAddresses ?? [] };
  return {
    type: 'imap',
    ...common,
    folder: server.folder ?? 'INBOX',
    storageFolder: server.storageFolder ?? 'ContactStorage',
    ...(server.sniServerName !== undefined && { sniServerName: server.sniServerName }),
    disableCompression: server.disableCompression ?? false,
    ...(server.flow !== undefined && { flow: server.flow }),
    pollSchedule: server.pollSchedule ?? DEFAULT_POLL_SCHEDULE,
    backfill: server.backfill ?? 'unseen',
    maxMessageSize: server.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE,
  };
}

export function normalizeFlow(flow: EmailFlow): FlowSpec {
  return {
    name: flow.name,
    ...(flow.description !== undefined && { description: flow.description }),
    routes: flow.routes,
    autoReplies: flow.autoReplies ?? 'deliver',
    // the default table is spelled out, so the applied state (and a plan's diff) names the table rows go to
    deliver: flow.deliver.postgres
      ? { postgres: { table: flow.deliver.postgres.table ?? DEFAULT_QUEUE_TABLE } }
      : flow.deliver,
  };
}
