/** What the store's ports throw; `code` is stable (the CLI and the failure classes rely on it). */

/** Who holds a lock: enough to tell a live holder from a leftover. */
export interface LockHolder {
  pid: number;
  host: string;
  since: string;
}

export class LockHeldError extends Error {
  readonly code = 'lock-held';
  constructor(
    readonly holder: LockHolder,
    where: string,
  ) {
    super(
      `another mailctl daemon (pid ${holder.pid}) already uses ${where} (on ${holder.host} since ` +
        `${holder.since}); two pollers of one mailbox would duplicate mail`,
    );
  }
}

/**
 * A store that cannot be used as it is (its URL, its schema's version, a folder imported elsewhere); `code` is stable.
 */
export class StoreError extends Error {
  constructor(
    readonly code: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** The store cannot be reached or refused the connection (a database restarting, a partition, a wrong password). */
export class StoreUnavailableError extends StoreError {
  constructor(message: string, options?: ErrorOptions) {
    super('store-unavailable', message, options);
  }
}

/** Another daemon took the store over: this one must not write anything more. */
export class LeaseLostError extends StoreError {
  constructor(message: string) {
    super('lock-lost', message);
  }
}

/** Thrown by a write about a mailbox whose lease this replica does not hold (any more): nothing was written. */
export class FencedError extends StoreError {
  constructor(
    readonly lease: string,
    message: string,
  ) {
    super('fenced', message);
  }
}
