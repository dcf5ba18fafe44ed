/** `GET /v1/status` and `/status.json`: every server's state, the system send loop and the outbox. */
import type { Diagnostic } from '../config/diagnostics.js';
import type { CredentialStatus } from './credentials.js';

/**
 * Why a connection or an operation failed, coarse enough to decide what to do next:
 *  - network:        host unreachable / refused / DNS / timeout / dropped → retry with back-off
 *  - tls:            certificate not trusted, name mismatch, STARTTLS missing, TLS/plaintext port mix-up → fix config
 *  - auth:           credentials (password, token, refresh token) rejected → fix credentials
 *  - folder-missing: a configured mailbox does not exist → create it / fix config
 *  - throttled:      the server asks us to slow down
 *  - config:         anything else that is wrong on our side (missing extension, bad option, permanent 5xx)
 *  - local:          this machine's files: disk full, read-only, permission denied, name too long (what and where)
 *  - sink:           a flow's sink is down (webhook unreachable or failing, its folder's disk full) → paused, retried
 *  - store:          the daemon's own store (a database) cannot be reached: nothing changes until it answers again
 */
export type FailureClass =
  'network' | 'tls' | 'auth' | 'folder-missing' | 'throttled' | 'config' | 'local' | 'sink' | 'store';

/** `needs-login`: the OAuth2 provider refuses the server's grant; it waits for `mailctl auth login` (no retries). */
export type ServerState =
  'running' | 'starting' | 'backoff' | 'failed' | 'needs-login' | 'stopped' | 'disabled' | 'pending-approval';

export interface LastError {
  class: FailureClass;
  message: string;
  at: string;
}

export interface ServerStatus {
  id: string;
  name: string;
  type: 'imap' | 'smtp';
  /** The mail server's host name (as configured). */
  host: string;
  enabled: boolean;
  state: ServerState;
  since: string | null;
  lastSuccess: string | null;
  lastError: LastError | null;
  disabledReason: string | null;
  revision: string | null;
  counters: Record<string, number>;
  /** An enabled IMAP server with no successful poll for 3× its poll interval. */
  stale: boolean;
  /** The OAuth2 credential it uses (`oauth2/<12 hex>`, in `credentials`), or null. */
  credential: string | null;
  /**
   * In a group: the replica holding its lease (null while none does) and the lease's epoch. The state of a server
   * another replica owns is what that replica last wrote with its heartbeat (no counters or last error then).
   */
  owner?: string | null;
  epoch?: number | null;
}

/** Messages in the outbox by state, and damaged outbox files set aside (never sent). */
export interface OutboxSummary {
  queued: number;
  sending: number;
  /** Sent; the sent copy to the storage folder is pending. */
  copying: number;
  damagedFiles: number;
}

/** The send loop of the `--system-smtp` server (not an applied server, so not in `servers`). */
export interface SystemSendLoopStatus {
  id: string;
  state: ServerState;
  since: string | null;
  lastSuccess: string | null;
  lastError: LastError | null;
  counters: Record<string, number>;
}

/** What `status` shows of the last reconcile. */
export interface ReconcileSummary {
  at: string;
  outcome: string;
  message: string;
  diagnostics: Diagnostic[];
}

/** Where the daemon keeps its state, and whether it answers now. */
export interface StoreStatus {
  kind: 'file' | 'postgres';
  /** The state folder, or `postgres://user@host:port/db (schema s)`: never a password. */
  location: string;
  available: boolean;
  /** While unavailable: why, and since when. */
  problem: { reason: string; since: string } | null;
}

/** A replica of the group, as its row in the store says (its heartbeat, and what it wrote about itself). */
export interface ReplicaStatus {
  id: string;
  /** Its host name. */
  host: string;
  /** Its heartbeat has not expired (by the database's clock). */
  live: boolean;
  heartbeatAt: string;
  /** Seconds since its last heartbeat, by the database's clock. */
  heartbeatAgeS: number;
  /** Servers whose lease it holds. */
  loopsOwned: number;
  /** It holds the reconciler lease (it validates, verifies and records what is applied). */
  reconciler: boolean;
  /** The applied generation it runs (null before it wrote a snapshot). */
  generation: number | null;
  /** Its folder differs from the applied generation; it keeps running the applied one (config-drift). */
  drift: boolean;
}

/** Several daemons on one PostgreSQL store: this one's id and every replica the store knows, live or not. */
export interface GroupStatus {
  replica: string;
  replicas: ReplicaStatus[];
  /** When the group was read from the store (earlier than this answer while the store does not answer; null: never). */
  readAt: string | null;
}

export interface DaemonStatus {
  dir: string;
  store: StoreStatus;
  /** Identity of the `--system-smtp` server, if one is configured. */
  systemSmtp: string | null;
  systemSendLoop: SystemSendLoopStatus | null;
  outbox: OutboxSummary | null;
  ready: boolean;
  draining: boolean;
  revision: string | null;
  lastReconcile: ReconcileSummary | null;
  servers: ServerStatus[];
  /** The OAuth2 credentials of the servers (also `mailctl auth status`). */
  credentials: CredentialStatus[];
  /** Present when the daemon is a replica of a group. */
  group?: GroupStatus;
}
