/**
 * Access tokens per credential id, shared by every IMAP and SMTP server using the credential:
 *  - single flight: concurrent callers of one id share one token request (two concurrent refreshes of a rotating
 *    refresh token would revoke each other);
 *  - a token is reused until shortly before it expires (5 minutes, or a fifth of its lifetime when that is shorter),
 *    never fetched per poll;
 *  - `invalidate(id)` makes the next call fetch a fresh one (reauthenticateOnSave); a request already in flight
 *    then still finishes first, so no two requests of one id ever overlap;
 *  - `onRotated(id, refreshToken)` is awaited before the new access token is handed out, so the caller has kept the
 *    rotated refresh token before anything can use the credential again. If it rejects, the callers of that request
 *    get its error (the access token stays cached; the caller still has to keep the refresh token).
 * Failures are not cached. The cache holds access tokens only, never logs, and reports state without tokens.
 */
import type { TokenSet } from './token.js';

/** Fetches a new token for a credential (reads its newest refresh token, or signs a new assertion). */
export type TokenSource = () => Promise<TokenSet>;

export interface AccessTokenCacheOptions {
  onRotated?: ((id: string, refreshToken: string) => void | Promise<void>) | undefined;
  /** Refresh at most this long before expiry (default 5 minutes). */
  refreshMarginMs?: number | undefined;
  /** Clock (tests). */
  now?: (() => number) | undefined;
}

export interface CachedAccessToken {
  accessToken: string;
  /** Epoch ms. */
  expiresAt: number;
}

/** What `auth status` may show: no token. */
export interface CredentialCacheState {
  /** Expiry of the cached access token, if one is cached. */
  expiresAt?: number;
  /** When the last successful token request finished. */
  lastRefreshAt?: number;
  refreshing: boolean;
}

interface Entry {
  token?: { accessToken: string; expiresAt: number; fetchedAt: number };
  flight?: { promise: Promise<CachedAccessToken>; generation: number };
  generation: number;
  lastRefreshAt?: number;
}

export class AccessTokenCache {
  readonly #entries = new Map<string, Entry>();
  readonly #onRotated: AccessTokenCacheOptions['onRotated'];
  readonly #margin: number;
  readonly #now: () => number;

  constructor(opts: AccessTokenCacheOptions = {}) {
    this.#onRotated = opts.onRotated;
    this.#margin = opts.refreshMarginMs ?? 300_000;
    this.#now = opts.now ?? Date.now;
  }

  /** A valid access token for `id`: the cached one, the one being fetched, or a new one from `source`. */
  async get(id: string, source: TokenSource): Promise<CachedAccessToken> {
    const entry = this.#entry(id);
    for (;;) {
      const fresh = this.#fresh(entry);
      if (fresh) return fresh;
      const flight = entry.flight;
      if (!flight) return this.#fetch(id, entry, source);
      if (flight.generation === entry.generation) return flight.promise; // share its outcome, failure included
      // It started before an invalidate(): let it finish (a rotated refresh token must be kept first), then ask anew.
      await flight.promise.then(
        () => undefined,
        () => undefined,
      );
    }
  }

  /** Forget the cached access token of `id`: the next `get` requests a new one. */
  invalidate(id: string): void {
    const entry = this.#entries.get(id);
    if (!entry) return;
    entry.generation++;
    delete entry.token;
  }

  /** Drop everything about `id` (a removed credential). */
  delete(id: string): void {
    this.invalidate(id);
    this.#entries.delete(id);
  }

  state(id: string): CredentialCacheState | undefined {
    const entry = this.#entries.get(id);
    if (!entry) return undefined;
    return {
      ...(entry.token && { expiresAt: entry.token.expiresAt }),
      ...(entry.lastRefreshAt !== undefined && { lastRefreshAt: entry.lastRefreshAt }),
      refreshing: !!entry.flight,
    };
  }

  #entry(id: string): Entry {
    let entry = this.#entries.get(id);
    if (!entry) this.#entries.set(id, (entry = { generation: 0 }));
    return entry;
  }

  #fresh(entry: Entry): CachedAccessToken | undefined {
    const t = entry.token;
    if (!t) return undefined;
    const margin = Math.min(this.#margin, (t.expiresAt - t.fetchedAt) / 5);
    return this.#now() < t.expiresAt - margin ? { accessToken: t.accessToken, expiresAt: t.expiresAt } : undefined;
  }

  #fetch(id: string, entry: Entry, source: TokenSource): Promise<CachedAccessToken> {
    const generation = entry.generation;
    const promise = (async () => {
      const fetchedAt = this.#now();
      const token = await source();
      entry.lastRefreshAt = this.#now();
      if (generation === entry.generation) {
        entry.token = { accessToken: token.accessToken, expiresAt: token.expiresAt, fetchedAt };
      }
      if (token.refreshToken && this.#onRotated) await this.#onRotated(id, token.refreshToken);
      return { accessToken: token.accessToken, expiresAt: token.expiresAt };
    })();
    const flight = { promise, generation };
    entry.flight = flight;
    const clear = () => {
      if (entry.flight === flight) delete entry.flight;
    };
    promise.then(clear, clear);
    return promise;
  }
}
