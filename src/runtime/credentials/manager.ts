/**
 * The daemon's OAuth2 credentials: every access token a server logs in with comes from here.
 *  - One credential per identity (config/oauth2.ts), shared by every server using it: one access token, reused until
 *    shortly before it expires, one refresh at a time (AccessTokenCache in this process; CredentialStore.exclusive
 *    across daemons sharing a store), so two refreshes of a rotating refresh token never revoke each other.
 *  - A refresh token the provider rotates, or one a sign-in gave, is kept (AES-256-GCM under the credentials key, the
 *    credential id as associated data) and used from then on. A kept token records the identity of the referenced
 *    refresh token it replaced: when that secret's value changes (someone signed in and stored a new one), the
 *    reference wins and the kept one is dropped.
 *  - `invalid_grant` (oauth2-needs-login) marks the credential: every later request fails at once without asking the
 *    provider, until a sign-in, a new value of the referenced refresh token, or a reauthentication; loops wait for it
 *    (waitForSignIn) instead of retrying.
 * Every token obtained is registered with the scrubber before anything can log it.
 */
import { stat } from 'node:fs/promises';
import type { Logger } from 'pino';
import { MailError } from '../../adapters/connection.js';
import {
  AccessTokenCache,
  clientCredentialsToken,
  jwtBearerToken,
  providerPreset,
  refreshAccessToken,
  type OAuth2Client,
  type TokenSet,
} from '../../adapters/oauth2/index.js';
import type { CredentialError, CredentialStatus, RefreshTokenSource } from '../../api/credentials.js';
import type { CredentialsKey } from '../../connect/credentials-key.js';
import type { AccessToken, AccessTokenSource } from '../../connect/secrets.js';
import { serverId, type ServerSpec } from '../../config/model.js';
import { credentialOf, type OAuth2CredentialRef } from '../../config/oauth2.js';
import { parseSecretRef } from '../../config/secret-ref.js';
import type { OAuth2Credentials } from '../../generated/mailctl.js';
import type { CredentialStore } from '../../store/ports.js';

/** What credentials report for /metrics. */
export interface CredentialRecorder {
  /** A credential is in use: its series are exported (at 0) from now on. */
  credentialSeen(credential: string): void;
  refreshed(credential: string, result: 'ok' | 'failed' | 'needs-login', at: Date): void;
}

export interface CredentialsDeps {
  store: CredentialStore;
  key: CredentialsKey;
  log: Logger;
  recorder: CredentialRecorder;
  /** Registers a token so that no log line, answer or stored text shows it. */
  sensitive: (value: string, user?: string) => void;
}

interface Entry {
  lastRefreshAt?: number;
  lastError?: CredentialError;
  /** Set on `invalid_grant`: the identity of the referenced refresh token then (a new value clears it). */
  needsLogin?: { error: MailError; referenceIdentity: string | null };
  /** Where the refresh token in use came from, and since when. */
  refreshTokenOrigin?: { source: RefreshTokenSource; since: number | null };
  /** Loops waiting for a sign-in. */
  waiters: Set<() => void>;
  /** The access token handed out last (a server refusing it asks for a fresh one). */
  handedOut?: string;
}

const NEEDS_LOGIN = 'oauth2-needs-login';

/** A needs-login error as the server `spec` reports it: with the command that recovers it. */
function signInHint(error: MailError, spec: ServerSpec): MailError {
  if (error.code !== NEEDS_LOGIN) return error;
  return new MailError('auth', `${error.message}; run mailctl auth login ${serverId(spec)}`, {
    code: error.code,
    providerCode: error.providerCode,
  });
}

const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());

/** The scope a credential asks for: as written, else the provider's mail scopes. */
export function scopeOf(o: OAuth2Credentials, credential: OAuth2CredentialRef): string | undefined {
  if (o.scope !== undefined) return o.scope;
  if (o.provider === 'google') return providerPreset('google', 'imap').scope;
  if (o.provider !== 'microsoft') return undefined;
  if (credential.grant !== 'refresh_token') return providerPreset('microsoft', 'app-only', o.tenant).scope;
  // one sign-in serves a mailbox's IMAP and SMTP servers (one access token): ask for both
  const uses = (['imap', 'smtp'] as const).flatMap((use) =>
    providerPreset('microsoft', use, o.tenant).scope!.split(' '),
  );
  return [...new Set(uses)].join(' ');
}

/** The client authentication of an oauth2 block, from its resolved references. */
export function clientOf(o: OAuth2Credentials, secrets: ReadonlyMap<string, string>): OAuth2Client {
  return {
    clientId: o.clientId!,
    ...(o.clientSecret !== undefined && { clientSecret: secrets.get(o.clientSecret) }),
    ...(o.clientCertificate !== undefined &&
      o.clientKey !== undefined && {
        clientCertificate: {
          certificatePem: secrets.get(o.clientCertificate)!,
          privateKeyPem: secrets.get(o.clientKey)!,
        },
      }),
  };
}

export class Credentials implements AccessTokenSource {
  private readonly cache = new AccessTokenCache();
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly deps: CredentialsDeps) {}

  private entry(id: string): Entry {
    let entry = this.entries.get(id);
    if (!entry) {
      this.entries.set(id, (entry = { waiters: new Set() }));
      this.deps.recorder.credentialSeen(id);
    }
    return entry;
  }

  /** The identity of the value the server's refresh-token reference holds now, or null without a reference. */
  private referenceIdentity(credential: OAuth2CredentialRef, secrets: ReadonlyMap<string, string>): string | null {
    const value = credential.refreshToken === undefined ? undefined : secrets.get(credential.refreshToken);
    return value === undefined ? null : this.deps.key.identityOf(value);
  }

  async accessToken(spec: ServerSpec, secrets: ReadonlyMap<string, string>, rejected?: string): Promise<AccessToken> {
    const credential = credentialOf(spec);
    if (!credential || spec.auth.type !== 'oauth2')
      throw new MailError('config', `${serverId(spec)} has no complete OAuth2 grant`, {
        code: 'oauth2-invalid-request',
      });
    const entry = this.entry(credential.id);
    const login = entry.needsLogin;
    if (login && login.referenceIdentity === this.referenceIdentity(credential, secrets))
      throw signInHint(login.error, spec);
    if (rejected !== undefined && rejected === entry.handedOut) this.cache.invalidate(credential.id);
    const token = await this.cache
      .get(credential.id, () => this.deps.store.exclusive(credential.id, () => this.request(spec, credential, secrets)))
      .catch((err: unknown) => {
        throw err instanceof MailError ? signInHint(err, spec) : err;
      });
    this.deps.sensitive(token.accessToken, spec.auth.user);
    entry.handedOut = token.accessToken;
    return token;
  }

  /** One token request for `credential` (holding it exclusively), recorded in its status and the metrics. */
  private async request(
    spec: ServerSpec,
    credential: OAuth2CredentialRef,
    secrets: ReadonlyMap<string, string>,
  ): Promise<TokenSet> {
    const entry = this.entry(credential.id);
    try {
      const token = await this.grant(spec, credential, secrets);
      this.deps.sensitive(token.accessToken, spec.auth.user);
      entry.lastRefreshAt = Date.now();
      delete entry.lastError;
      this.deps.recorder.refreshed(credential.id, 'ok', new Date(entry.lastRefreshAt));
      this.signedIn(entry);
      return token;
    } catch (err) {
      const error = err instanceof MailError ? err : new MailError('network', (err as Error).message);
      const needsLogin = error.code === NEEDS_LOGIN;
      entry.lastError = {
        code: error.code ?? error.failureClass,
        providerCode: error.providerCode ?? null,
        message: error.message,
        at: new Date().toISOString(),
      };
      if (needsLogin) entry.needsLogin = { error, referenceIdentity: this.referenceIdentity(credential, secrets) };
      this.deps.recorder.refreshed(credential.id, needsLogin ? 'needs-login' : 'failed', new Date());
      this.deps.log.warn(
        { credential: credential.id, code: entry.lastError.code, providerCode: entry.lastError.providerCode },
        `OAuth2 token request failed: ${error.message}`,
      );
      throw error;
    }
  }

  private async grant(
    spec: ServerSpec,
    credential: OAuth2CredentialRef,
    secrets: ReadonlyMap<string, string>,
  ): Promise<TokenSet> {
    const o = (spec.auth as { oauth2: OAuth2Credentials }).oauth2;
    const scope = scopeOf(o, credential);
    const { tokenUrl } = credential;
    if (credential.grant === 'client_credentials')
      return clientCredentialsToken({ ...clientOf(o, secrets), tokenUrl, scope });
    if (credential.grant === 'jwt_bearer')
      return jwtBearerToken({
        tokenUrl,
        serviceAccount: credential.clientId,
        subject: spec.auth.user,
        scope,
        privateKeyPem: secrets.get(o.clientKey!)!,
      });
    const { refreshToken, referenceIdentity } = await this.newestRefreshToken(credential, secrets);
    const token = await refreshAccessToken({ ...clientOf(o, secrets), tokenUrl, refreshToken, scope });
    if (token.refreshToken) {
      await this.keep(credential, token.refreshToken, 'rotation', referenceIdentity);
      delete token.refreshToken;
    }
    return token;
  }

  /** The kept refresh token unless the reference has a newer value (then the reference), else the reference. */
  private async newestRefreshToken(
    credential: OAuth2CredentialRef,
    secrets: ReadonlyMap<string, string>,
  ): Promise<{ refreshToken: string; referenceIdentity: string | null }> {
    const { id } = credential;
    const entry = this.entry(id);
    const referenceIdentity = this.referenceIdentity(credential, secrets);
    const kept = await this.deps.store.get(id);
    if (kept && (referenceIdentity === null || kept.boundTo.referenceIdentity === referenceIdentity)) {
      try {
        const refreshToken = this.deps.key.open(kept, id);
        this.deps.sensitive(refreshToken);
        entry.refreshTokenOrigin = { source: kept.source as RefreshTokenSource, since: Date.parse(kept.updatedAt) };
        return { refreshToken, referenceIdentity };
      } catch {
        this.deps.log.warn(
          { credential: id },
          'the kept refresh token cannot be opened with this credentials key (another --credentials-key-file?)',
        );
      }
    } else if (kept) {
      await this.deps.store.remove(id);
      this.deps.log.info(
        { credential: id },
        'the referenced refresh token changed: it is used instead of the kept one',
      );
    }
    if (credential.refreshToken === undefined) {
      throw new MailError('auth', `OAuth2 sign-in needed: nobody has signed in ${id} yet`, { code: NEEDS_LOGIN });
    }
    entry.refreshTokenOrigin = { source: 'reference', since: await referenceSince(credential.refreshToken) };
    return { refreshToken: secrets.get(credential.refreshToken)!, referenceIdentity };
  }

  /** Keeps a refresh token for `credential`, sealed under its id. */
  private async keep(
    credential: OAuth2CredentialRef,
    refreshToken: string,
    source: 'sign-in' | 'rotation',
    referenceIdentity: string | null,
  ): Promise<void> {
    this.deps.sensitive(refreshToken);
    const { id } = credential;
    const now = new Date();
    await this.deps.store.put({
      id,
      ...this.deps.key.seal(refreshToken, id),
      source,
      boundTo: {
        tokenUrl: credential.tokenUrl,
        provider: credential.provider,
        ...(credential.tenant !== undefined && { tenant: credential.tenant }),
        clientId: credential.clientId,
        ...(referenceIdentity !== null && { referenceIdentity }),
      },
      updatedAt: now.toISOString(),
    });
    this.entry(id).refreshTokenOrigin = { source, since: now.getTime() };
  }

  /**
   * A sign-in gave `token` for the credential of `spec`: keep its refresh token and let every server using it go
   * on (loops waiting in needs-login try again at once).
   */
  async signIn(spec: ServerSpec, secrets: ReadonlyMap<string, string>, token: TokenSet): Promise<OAuth2CredentialRef> {
    const credential = credentialOf(spec)!;
    this.deps.sensitive(token.accessToken, spec.auth.user);
    if (!token.refreshToken)
      throw new MailError(
        'config',
        'the provider gave no refresh token: the app registration must allow it and the scope include offline_access',
        { code: 'oauth2-bad-response' },
      );
    await this.deps.store.exclusive(credential.id, () =>
      this.keep(credential, token.refreshToken!, 'sign-in', this.referenceIdentity(credential, secrets)),
    );
    this.cache.invalidate(credential.id);
    const entry = this.entry(credential.id);
    delete entry.lastError;
    this.signedIn(entry);
    return credential;
  }

  /** The credential may be used again: clears needs-login and wakes the loops that waited for it. */
  private signedIn(entry: Entry): void {
    delete entry.needsLogin;
    for (const wake of entry.waiters) wake();
    entry.waiters.clear();
  }

  /** Resolves once the credential of `spec` may be used again (a sign-in, a successful refresh) or `signal` aborts. */
  waitForSignIn(spec: ServerSpec, signal: AbortSignal): Promise<void> {
    const credential = credentialOf(spec);
    if (!credential) return Promise.resolve();
    const entry = this.entry(credential.id);
    if (!entry.needsLogin) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        entry.waiters.delete(done);
        signal.removeEventListener('abort', done);
        resolve();
      };
      entry.waiters.add(done);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  /** Discards the cached access token (reauthenticate): the next request asks the provider, also after needs-login. */
  invalidate(id: string): void {
    this.cache.invalidate(id);
    const entry = this.entries.get(id);
    if (entry) delete entry.needsLogin;
  }

  /** Moves a kept credential to the id its server has at a new token URL (an approved rebind). */
  async move(from: string, to: OAuth2CredentialRef): Promise<boolean> {
    return this.deps.store.exclusive(from, async () => {
      const kept = await this.deps.store.get(from);
      if (!kept) return false;
      let refreshToken: string;
      try {
        refreshToken = this.deps.key.open(kept, from);
      } catch {
        this.deps.log.warn({ credential: from }, 'the kept refresh token cannot be opened with this credentials key');
        return false;
      }
      const { referenceIdentity } = kept.boundTo;
      await this.deps.store.put({
        ...kept,
        id: to.id,
        ...this.deps.key.seal(refreshToken, to.id),
        boundTo: {
          tokenUrl: to.tokenUrl,
          provider: to.provider,
          ...(to.tenant !== undefined && { tenant: to.tenant }),
          clientId: to.clientId,
          ...(referenceIdentity !== undefined && { referenceIdentity }),
        },
      });
      await this.deps.store.remove(from);
      this.cache.delete(from);
      this.deps.log.info({ credential: from, to: to.id }, 'kept credential moved with its server to a new token URL');
      return true;
    });
  }

  needsLogin(id: string): boolean {
    return this.entries.get(id)?.needsLogin !== undefined;
  }

  /** `status`, with the source of a refresh token this process has not used yet read from the store. */
  async statusNow(credential: OAuth2CredentialRef, servers: string[]): Promise<CredentialStatus> {
    const status = this.status(credential, servers);
    if (credential.grant !== 'refresh_token' || this.entries.get(credential.id)?.refreshTokenOrigin) return status;
    const kept = await this.deps.store.get(credential.id);
    return kept
      ? { ...status, refreshToken: { source: kept.source as RefreshTokenSource, since: kept.updatedAt } }
      : status;
  }

  /** What `auth status` and `status` show of a credential (no token). */
  status(credential: OAuth2CredentialRef, servers: string[]): CredentialStatus {
    const entry = this.entries.get(credential.id);
    const cached = this.cache.state(credential.id);
    const refresh = entry?.refreshTokenOrigin;
    return {
      id: credential.id,
      grant: credential.grant,
      provider: credential.provider,
      servers,
      needsLogin: entry?.needsLogin !== undefined,
      lastRefresh: iso(entry?.lastRefreshAt),
      accessTokenExpires: iso(cached?.expiresAt),
      refreshToken:
        credential.grant !== 'refresh_token'
          ? null
          : refresh
            ? { source: refresh.source, since: iso(refresh.since ?? undefined) }
            : { source: credential.refreshToken === undefined ? 'none' : 'reference', since: null },
      lastError: entry?.lastError ?? null,
    };
  }
}

/** When a `${file:}` refresh token was last written (its age); unknown for `${env:}`. */
async function referenceSince(reference: string): Promise<number | null> {
  const ref = parseSecretRef(reference);
  if (ref?.scheme !== 'file') return null;
  return stat(ref.path).then(
    (info) => info.mtimeMs,
    () => null,
  );
}
