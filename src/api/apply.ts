/** `POST /v1/apply`: what the CLI (or the watcher, SIGHUP, start-up) asks for, and what a reconcile reports. */
import type { Diagnostic } from '../config/diagnostics.js';
import type { Plan } from '../plan/model.js';
import type { FailureClass } from './status.js';

export interface ApplyRequest {
  /** Who or what asked: `cli`, `watch`, `start`, `sighup`. Recorded in the apply log. */
  trigger: string;
  /** Digest of the caller's folder files (`folderDigest`); a different folder is refused (`folder-mismatch`). */
  expectedFolderDigest?: string;
  /** Digests of a saved plan: refused as stale when the folder or the running state moved on. */
  savedPlan?: { desiredDigest: string; stateDigest: string };
  approvals?: string[];
  /**
   * OAuth2 servers (`type/shortName`) to reauthenticate now (`apply --reauthenticate`): their cached access token is
   * discarded, a fresh one obtained and the login verified with it, whether or not they changed.
   */
  reauthenticate?: string[];
  dryRun?: boolean;
  saveFailedAsDisabled?: boolean;
}

/** Every outcome a reconcile can have (also the values of `mailctl_reconciles_total{result}`). */
export const APPLY_OUTCOMES = [
  'applied',
  'partly-applied',
  'no-changes',
  'dry-run',
  'invalid',
  'verification-failed',
  'needs-approval',
  'folder-mismatch',
  'stale-plan',
  'refused-deletes',
  'refused-config',
] as const;

export type ApplyOutcome = (typeof APPLY_OUTCOMES)[number];

/** One server checked against its real mail server. Carries no secret and no digest of one. */
export interface Verification {
  id: string;
  ok: boolean;
  /** The line shown to the user, e.g. `imap/support: Connection succeeded (IDLE UIDPLUS MOVE, 12 unseen)`. */
  line: string;
  failureClass?: FailureClass;
  reason?: string;
}

/**
 * Progress of a long apply, streamed by `POST /v1/apply` when the request accepts `application/x-ndjson`: one JSON
 * line per event, then one `{ "type": "result", ... }` line with the usual answer.
 */
export interface ApplyProgress {
  type: 'progress';
  /** Servers to verify, verified so far, and how many of those failed. */
  total: number;
  verified: number;
  failed: number;
  elapsedMs: number;
}

export const NDJSON = 'application/x-ndjson';

/** The outcome of a reconcile. The daemon reports outcomes; only the CLI turns one into an exit code. */
export interface ApplyResult {
  outcome: ApplyOutcome;
  message: string;
  plan: Plan | null;
  diagnostics: Diagnostic[];
  verifications: Verification[];
  /** Servers saved as disabled because their verification failed. */
  savedAsDisabled: string[];
  at: string;
}
