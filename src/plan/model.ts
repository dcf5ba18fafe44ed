/**
 * The data a plan is made of. A plan is data, not behaviour: `computePlan` builds it from the desired folder and the
 * observed running state, renderers display it, and the apply stage executes the `action` of each change. Reasons
 * and diffs exist to explain a change to a person; apply must never decide anything from them.
 */
import type { FlowSpec, ServerSpec } from '../config/model.js';

export const PLAN_FORMAT_VERSION = '1';

/** What one server runs with: its spec and, for IMAP, the flow it routes into. Secrets appear only as references. */
export interface ServerConfig {
  spec: ServerSpec;
  flow?: FlowSpec;
}

/**
 * A target a secret reference has been sent to with approval (the first apply counts as approval). Sending the
 * reference to any other target is a rebind that needs `--approve-rebind`. A credential the daemon may keep (an
 * OAuth2 refresh token from a sign-in or a rotation) is bound the same way under its id (`oauth2/<12 hex>`).
 */
export interface CredentialBinding {
  host: string;
  port: number;
  tls: boolean;
  allowPlaintext: boolean;
  /** OAuth2: where the refresh token, client secret, certificate or key go (the provider's when not written). */
  tokenUrl?: string;
  /** OAuth2 sign-in (`mailctl auth login`): where the client secret goes to start a device sign-in. */
  deviceAuthorizationUrl?: string;
  /** OAuth2 provider and Microsoft tenant, as written: together with the token URL they decide the endpoints. */
  provider?: string;
  tenant?: string;
  /**
   * The CA file the server's certificate is checked with (whoever controls it decides which server gets the secret).
   */
  tlsCaFile?: string;
  /** The name the server's certificate is checked for (IMAP). */
  sniServerName?: string;
  /** The server that established the binding. */
  boundBy: string;
}

export interface ObservedServer {
  config: ServerConfig;
  /** `active`: running (or trying to); `disabled`: stopped by `enabled: false` or saved as disabled after a failure. */
  status: 'active' | 'disabled';
  disabledReason?: string;
  /** Git revision of the folder this configuration was applied from (null when not a checkout). */
  revision?: string | null;
}

/** The running state as the daemon reports it (`mailctl state pull`). Contains no secret values. */
export interface ObservedState {
  servers: Record<string, ObservedServer>;
  /** Per secret reference, every target it is bound to (an IMAP and an SMTP server often share one password). */
  bindings: Record<string, CredentialBinding[]>;
  /** Git revision (or null) the running configuration was applied from. */
  revision?: string | null;
}

export interface DesiredState {
  servers: Record<string, ServerConfig>;
}

/**
 * Optional inputs only the daemon has: a digest of each server's resolved secret values (in memory, never written),
 * so that a rotated secret restarts exactly the servers that use it.
 */
export interface SecretDigests {
  desired: Record<string, string>;
  observed: Record<string, string>;
}

/**
 * Optional inputs only the daemon has: the identity of each secret (an HMAC of its value under the daemon's credentials
 * key) and the targets each identity is bound to, so that a reference the bindings do not know (another spelling, a
 * link, a copy of a bound file) still cannot send a bound secret elsewhere. Never part of the observed state.
 */
export interface SecretIdentities {
  /** The identity of the value each desired secret reference holds now. */
  ofReference: Record<string, string>;
  /** Per identity, every target it is bound to. */
  bindings: Record<string, CredentialBinding[]>;
}

export type ActionName = 'create' | 'update' | 'restart' | 'stop' | 'delete' | 'start' | 'rebind' | 'no-op';

/** Terraform-style symbols; `!` marks a credential rebind that waits for approval. */
export const ACTION_SYMBOL: Record<ActionName, string> = {
  create: '+',
  update: '~',
  restart: '-/+',
  stop: '-',
  delete: '-',
  start: '+',
  rebind: '!',
  'no-op': ' ',
};

export interface Rebind {
  /** A secret reference, or the id of a kept credential (`oauth2/<12 hex>`). */
  reference: string;
  from: CredentialBinding;
  to: Omit<CredentialBinding, 'boundBy'>;
  /** Found by the secret's identity (the daemon's apply): the value is bound to `from` under another reference. */
  byIdentity?: boolean;
  /**
   * A kept credential that follows its server to another token URL: once approved it is kept under this id (the
   * credential id includes the token URL) and sent there.
   */
  movesTo?: string;
}

export interface ServerChange {
  id: string;
  action: ActionName;
  /** Running configuration (absent for create). */
  before?: ServerConfig;
  /** Desired configuration (absent for delete). */
  after?: ServerConfig;
  /** Dotted paths of fields that differ, e.g. `host`, `auth.password`, `flow.routes`. */
  changedFields: string[];
  /** The subset of `changedFields` that forces a reconnect. */
  restartFields: string[];
  /** For display only. */
  reasons: string[];
  /** Secret references this change would send to a new target (non-empty for `rebind`). */
  rebinds: Rebind[];
  /** For a rebind: whether `--approve-rebind` covered it. */
  approved?: boolean;
  /** The action that happens once a rebind is approved (`create`, `restart`, `start` or `update`). */
  thenAction?: ActionName;
}

export interface PlanSummary {
  create: number;
  update: number;
  restart: number;
  stop: number;
  delete: number;
  needApproval: number;
}

export interface Plan {
  formatVersion: typeof PLAN_FORMAT_VERSION;
  /** Digest of the desired configuration (comments and formatting do not count). */
  desiredDigest: string;
  /** Digest of the running state the plan was computed against. */
  stateDigest: string;
  /** Changes in identity order, `no-op` entries left out. */
  changes: ServerChange[];
  /** Identities that stay as they are. */
  unchanged: string[];
  summary: PlanSummary;
}

export const hasChanges = (plan: Plan): boolean => plan.changes.length > 0;

/** The action that really happens: a rebind's `thenAction` once approved, else the action itself. */
export const effectiveAction = (change: Pick<ServerChange, 'action' | 'thenAction'>): ActionName =>
  change.action === 'rebind' ? (change.thenAction ?? 'rebind') : change.action;
