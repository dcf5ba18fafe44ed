import type { ApplyOutcome, ApplyResult } from '../api/apply.js';

/** Exit codes are a contract with pipelines: see README "Exit codes". */
export const EXIT = {
  ok: 0,
  error: 1,
  changes: 2,
  needsApproval: 3,
  partlyApplied: 4,
} as const;

/** A failure the user can act on: printed as one line (no stack) and turned into the exit code. */
export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT.error,
    readonly code = 'error',
  ) {
    super(message);
  }
}

const OUTCOME_EXIT: Record<ApplyOutcome, number> = {
  applied: EXIT.ok,
  'no-changes': EXIT.ok,
  'dry-run': EXIT.ok,
  'partly-applied': EXIT.partlyApplied,
  'needs-approval': EXIT.needsApproval,
  invalid: EXIT.error,
  'verification-failed': EXIT.error,
  'folder-mismatch': EXIT.error,
  'stale-plan': EXIT.error,
  'refused-deletes': EXIT.error,
  'refused-config': EXIT.error,
};

/** The exit code of an apply: the daemon reports outcomes, only the CLI maps them (a dry run fails on any failure). */
export function exitCodeOf(result: Pick<ApplyResult, 'outcome' | 'verifications'>): number {
  if (result.outcome === 'dry-run' && result.verifications.some((v) => !v.ok)) return EXIT.error;
  return OUTCOME_EXIT[result.outcome];
}
