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
