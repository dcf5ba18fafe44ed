import type { BasicAuth, EmailFlow, OAuth2Auth, Route } from '../generated/mailctl.js';
import type { Position } from './diagnostics.js';

export type AuthSpec = BasicAuth | OAuth2Auth;

/** Fields every server has, with defaults applied. */
interface CommonServerSpec {
  name: string;
  shortName: string;
  description?: string;
  host: string;
  port: number;
  tls: boolean;
  allowPlaintext: boolean;
  tlsCaFile?: string;
  auth: AuthSpec;
  reauthenticateOnSave?: boolean;
  role: 'agent' | 'template';
  enabled: boolean;
}

export interface ImapServerSpec extends CommonServerSpec {
  type: 'imap';
  folder: string;
  storageFolder: string;
  sniServerName?: string;
  disableCompression: boolean;
  flow?: string;
  pollSchedule: string;
  backfill: 'unseen' | 'all' | 'none';
  maxMessageSize: number;
}

export interface SmtpServerSpec extends CommonServerSpec {
  type: 'smtp';
  additionalFromAddresses: string[];
}

/** An EmailServer as the rest of mailctl sees it: validated, defaults filled in. */
export type ServerSpec = ImapServerSpec | SmtpServerSpec;

export type AutoReplyPolicy = 'deliver' | 'drop' | { queue: string };

export interface FlowSpec {
  name: string;
  description?: string;
  routes: Route[];
  autoReplies: AutoReplyPolicy;
  deliver: EmailFlow['deliver'];
}

/** Where a resource came from, and how to point at any of its fields. */
export interface SourceInfo {
  file: string;
  position: Position;
  locate(path: readonly (string | number)[], atKey?: boolean): Position;
}

export interface LoadedServer {
  /** `type/shortName`, e.g. `imap/support`: the identity plans, state and metrics use. */
  id: string;
  spec: ServerSpec;
  source: SourceInfo;
}

export interface LoadedFlow {
  id: string;
  spec: FlowSpec;
  source: SourceInfo;
}

export const serverId = (spec: Pick<ServerSpec, 'type' | 'shortName'>): string => `${spec.type}/${spec.shortName}`;

export const DEFAULT_POLL_SCHEDULE = '* * * * *';
export const DEFAULT_MAX_MESSAGE_SIZE = 41_943_040;

export function defaultPort(type: 'imap' | 'smtp', tls: boolean): number {
  if (type === 'imap') return tls ? 993 : 143;
  return tls ? 465 : 587;
}
