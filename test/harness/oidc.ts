/**
 * A real OAuth2 / OpenID provider for tests (npm `oidc-provider` 8, the last major that supports Node 20) on a free
 * loopback port, plain http:
 *  - device authorization grant (RFC 8628), authorization code + PKCE S256 with loopback redirects (RFC 8252: any
 *    port on 127.0.0.1), refresh tokens rotated on every use (a used one is revoked, reusing it revokes the grant),
 *    client credentials with a secret or a certificate (private_key_jwt, RFC 7523 §2.2, `x5t` / `x5t#S256` checked
 *    like Microsoft does), the jwt-bearer grant (RFC 7523 §2.1, Google service-account style), introspection
 *    (RFC 7662: `active`, `sub`, `username`, `client_id`, `exp`, `scope`), short configurable lifetimes;
 *  - a scripted person who approves or denies sign-ins through the provider's real HTTP pages and interactions;
 *  - admin hooks: revoke grants, count token requests and issued refresh tokens, make the token endpoint slow or fail.
 *
 *   const op = await startOidcProvider({ accessTokenTtl: 5 });
 *   ... op.tokenUrl, op.clients.confidential.clientSecret, await op.approveDevice(userCode, 'support@example.com') ...
 *   await op.close();
 */
import { createHash, createPublicKey, generateKeyPair, randomBytes, verify, X509Certificate } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import Provider, { errors, type Adapter, type AdapterPayload, type KoaContextWithOIDC } from 'oidc-provider';
import { createSigningCert } from './ca.js';

export const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
export const DEVICE_CODE = 'urn:ietf:params:oauth:grant-type:device_code';
/** Where the public and confidential clients may be sent back to (any port: RFC 8252 §7.3). */
export const LOOPBACK_REDIRECT = 'http://127.0.0.1/callback';
/** The loopback redirect as Google and Microsoft register it for desktop apps (root path), which `mailctl auth login --browser` uses. */
export const LOOPBACK_ROOT = 'http://127.0.0.1/';

export interface OidcOptions {
  /** Lifetime of access tokens of every grant, in seconds (default 300). Also settable later: `op.ttl.accessToken`. */
  accessTokenTtl?: number;
  /** Lifetime of refresh tokens and grants, in seconds (default 1 day). */
  refreshTokenTtl?: number;
  /** Lifetime of a device code, in seconds (default 600). */
  deviceCodeTtl?: number;
  /** The polling `interval` the device authorization endpoint announces (default 1 s; RFC 8628's default is 5). */
  deviceInterval?: number;
  /** Rotate refresh tokens on every use (default true). */
  rotateRefreshTokens?: boolean;
  /**
   * The mailbox app-only tokens (client credentials) may open: their introspection `username`, which Dovecot
   * compares with the login user (Microsoft's mailbox permission for a service principal). Default support@example.com.
   */
  appMailbox?: string;
}

export interface TokenRequestRecord {
  grantType: string;
  /** As the request named it (body, Basic header, client assertion or jwt-bearer `iss`), not verified. */
  clientId: string | undefined;
  /** HTTP status of the answer (0 while in flight). */
  status: number;
}

export interface TokenFault {
  /** Answer with this HTTP status instead of passing the request on (omit it to only delay the request). */
  status?: number;
  /** Answer body: an object is sent as JSON (default `{ error: 'temporarily_unavailable' }`). */
  body?: Record<string, unknown> | string;
  headers?: Record<string, string>;
  /** Hold the request this long first. */
  delayMs?: number;
  /** How many token requests it applies to (default 1). */
  times?: number;
  /** Only requests of this grant type. */
  grantType?: string;
}

export interface OidcClients {
  /** Public client (no secret): device flow, authorization code + PKCE, refresh tokens. */
  public: { clientId: string };
  /** Confidential client (client_secret_basic or _post): device flow, authorization code, refresh tokens. */
  confidential: { clientId: string; clientSecret: string };
  /** App-only, client credentials with a secret. */
  app: { clientId: string; clientSecret: string };
  /** App-only, client credentials with a certificate (private_key_jwt). */
  appCert: { clientId: string; certificatePem: string; privateKeyPem: string };
  /** Service account for the jwt-bearer grant (Google style: the client id is its address, no client auth). */
  serviceAccount: { clientId: string; privateKeyPem: string };
}

export interface IntrospectionClient {
  url: string;
  clientId: string;
  clientSecret: string;
}

export interface OidcProvider {
  issuer: string;
  port: number;
  tokenUrl: string;
  deviceAuthorizationUrl: string;
  authorizationUrl: string;
  introspectionUrl: string;
  clients: OidcClients;
  /** A confidential client allowed to introspect every access token (for Dovecot and the SMTP server). */
  introspection: IntrospectionClient;
  /** Mutable lifetimes in seconds; a change applies to tokens issued afterwards. */
  ttl: { accessToken: number; refreshToken: number; deviceCode: number };
  /** Complete a pending device sign-in as `account` (enter the code, confirm, log in, consent). */
  approveDevice(userCode: string, account: string): Promise<void>;
  /** Abort a pending device sign-in at the confirmation page: the device then gets `access_denied`. */
  denyDevice(userCode: string): Promise<void>;
  /** Follow an authorization URL like a browser, log in as `account`, consent; returns the redirect URL (code, state). */
  approveAuthorization(authorizationUrl: string, account: string): Promise<string>;
  /** Follow an authorization URL, log in as `account`, refuse consent; returns the redirect URL (error=access_denied). */
  denyAuthorization(authorizationUrl: string, account: string): Promise<string>;
  /** Revoke every grant of `account` (of one client): its refresh tokens then get `invalid_grant`. Returns how many. */
  revokeGrants(account: string, clientId?: string): Promise<number>;
  /** Every request that reached the token endpoint, in order. */
  tokenRequests: TokenRequestRecord[];
  countTokenRequests(filter?: { grantType?: string; clientId?: string }): number;
  /** Refresh tokens issued so far (each rotation issues one). */
  issuedRefreshTokens(filter?: { clientId?: string; account?: string }): number;
  /** Introspection requests answered so far. */
  introspections(): number;
  /** Every access token, refresh token, device code and authorization code issued so far (for canary checks). */
  issuedTokens(): string[];
  /** Make upcoming token requests slow or fail (queued; each applies `times` times). */
  tokenFault(fault: TokenFault): void;
  clearTokenFaults(): void;
  close(): Promise<void>;
}

const secret = () => randomBytes(24).toString('base64url');
const sha = (alg: 'sha1' | 'sha256', der: Buffer) => createHash(alg).update(der).digest('base64url');
const isAccount = (s: string | null): s is string => !!s && /^[^\s@/]+@[^\s@/]+$/.test(s);

/** The harness's own storage for the provider (per instance; oidc-provider's MemoryAdapter is one global LRU). */
/** Models whose ids are token values (opaque tokens and codes): every one ever issued is remembered (canaries). */
const TOKEN_MODELS = new Set(['AccessToken', 'RefreshToken', 'ClientCredentials', 'DeviceCode', 'AuthorizationCode']);

class Store {
  readonly entries = new Map<string, { model: string; payload: AdapterPayload; expiresAt: number }>();
  /** Every token and code value issued, also those revoked or expired since. */
  readonly issued = new Set<string>();
  private readonly index = new Map<string, string>(); // "uid:…" / "userCode:…" → entry key

  get(key: string): AdapterPayload | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (e.expiresAt <= Date.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return e.payload;
  }

  adapter(model: string): Adapter {
    const key = (id: string) => `${model}:${id}`;
    return {
      upsert: async (id, payload, expiresIn) => {
        this.entries.set(key(id), { model, payload, expiresAt: Date.now() + expiresIn * 1000 });
        if (TOKEN_MODELS.has(model)) this.issued.add(id);
        if (payload.uid) this.index.set(`uid:${payload.uid}`, key(id));
        if (payload.userCode) this.index.set(`userCode:${payload.userCode}`, key(id));
        return Promise.resolve();
      },
      find: async (id) => Promise.resolve(this.get(key(id))),
      findByUid: async (uid) => Promise.resolve(this.get(this.index.get(`uid:${uid}`) ?? '')),
      findByUserCode: async (code) => Promise.resolve(this.get(this.index.get(`userCode:${code}`) ?? '')),
      consume: async (id) => {
        const p = this.get(key(id));
        if (p) p.consumed = Math.floor(Date.now() / 1000);
        return Promise.resolve();
      },
      destroy: async (id) => {
        this.entries.delete(key(id));
        return Promise.resolve();
      },
      revokeByGrantId: async (grantId) => {
        for (const [k, e] of this.entries)
          if (e.model === model && e.payload.grantId === grantId) this.entries.delete(k);
        return Promise.resolve();
      },
    };
  }

  /** Remove grants of `account` (of `clientId`) and every token issued under them. */
  revokeGrants(account: string, clientId?: string): number {
    const ids = new Set<string>();
    for (const [k, e] of this.entries) {
      if (e.model !== 'Grant' || e.payload.accountId !== account) continue;
      if (clientId !== undefined && e.payload.clientId !== clientId) continue;
      ids.add(k.slice('Grant:'.length));
      this.entries.delete(k);
    }
    for (const [k, e] of this.entries) if (e.payload.grantId && ids.has(e.payload.grantId)) this.entries.delete(k);
    return ids.size;
  }
}

/** The action and the `name="…" value="…"` inputs of the first form in `html`. */
function formOf(html: string, base: string): { action: string; fields: URLSearchParams } {
  const form = /<form\b[^>]*>[\s\S]*?<\/form>/i.exec(html)?.[0];
  if (!form) throw new Error(`no form on the page: ${html.slice(0, 300)}`);
  const unescape = (s: string) =>
    s.replace(/&(amp|lt|gt|quot|#39|#x27);/g, (_m, e: string) =>
      e === 'amp' ? '&' : e === 'lt' ? '<' : e === 'gt' ? '>' : e === 'quot' ? '"' : "'",
    );
  const action = unescape(/action="([^"]*)"/i.exec(form)?.[1] ?? base);
  const fields = new URLSearchParams();
  for (const m of form.matchAll(/<input\b([^>]*)>/gi)) {
    const attrs = m[1] ?? '';
    const name = /name="([^"]*)"/i.exec(attrs)?.[1];
    const value = /value="([^"]*)"/i.exec(attrs)?.[1];
    if (name && value !== undefined) fields.set(unescape(name), unescape(value));
  }
  return { action: new URL(action, base).href, fields };
}

/** A cookie-keeping HTTP client that does not follow redirects (the scripted person's browser). */
class Browser {
  private readonly cookies = new Map<string, string>();

  async request(url: string, form?: URLSearchParams): Promise<{ status: number; location?: string; body: string }> {
    const res = await fetch(url, {
      method: form ? 'POST' : 'GET',
      redirect: 'manual',
      headers: {
        cookie: [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '),
        ...(form && { 'content-type': 'application/x-www-form-urlencoded' }),
      },
      ...(form && { body: form.toString() }),
      signal: AbortSignal.timeout(10_000),
    });
    for (const c of res.headers.getSetCookie()) {
      const [pair = '', ...attrs] = c.split(';');
      const i = pair.indexOf('=');
      const name = pair.slice(0, i).trim();
      const gone = pair.slice(i + 1) === '' || attrs.some((a) => /^\s*expires=Thu, 01 Jan 1970/i.test(a));
      if (gone) this.cookies.delete(name);
      else this.cookies.set(name, pair.slice(i + 1));
    }
    const location = res.headers.get('location');
    return { status: res.status, body: await res.text(), ...(location && { location: new URL(location, url).href }) };
  }
}

export async function startOidcProvider(opts: OidcOptions = {}): Promise<OidcProvider> {
  const ttl = {
    accessToken: opts.accessTokenTtl ?? 300,
    refreshToken: opts.refreshTokenTtl ?? 86_400,
    deviceCode: opts.deviceCodeTtl ?? 600,
  };
  const appMailbox = opts.appMailbox ?? 'support@example.com';
  const deviceInterval = opts.deviceInterval ?? 1;

  const server = http.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  server.unref(); // a forgotten close() must not keep the test process alive
  const port = (server.address() as { port: number }).port;
  const issuer = `http://127.0.0.1:${port}`;
  const tokenUrl = `${issuer}/token`;

  const genRsa = promisify(generateKeyPair);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'mailctl-oidc-'));
  const [signing, sa, certFiles] = await Promise.all([
    genRsa('rsa', { modulusLength: 2048 }),
    genRsa('rsa', { modulusLength: 2048 }),
    createSigningCert(dir, 'app', 'mailctl-app-cert'),
  ]);
  const appCert = new X509Certificate(certFiles.certPem);
  const clients: OidcClients = {
    public: { clientId: 'mailctl-public' },
    confidential: { clientId: 'mailctl-confidential', clientSecret: secret() },
    app: { clientId: 'mailctl-app', clientSecret: secret() },
    appCert: { clientId: 'mailctl-app-cert', certificatePem: certFiles.certPem, privateKeyPem: certFiles.keyPem },
    serviceAccount: {
      clientId: 'mailctl-sa@example-project.iam.gserviceaccount.com',
      privateKeyPem: sa.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    },
  };
  const introspector = { clientId: 'mail-servers', clientSecret: secret() };
  // Certificates registered per client: a client assertion naming another (x5t / x5t#S256) is refused.
  const thumbprints = new Map([
    [clients.appCert.clientId, { x5t: sha('sha1', appCert.raw), 'x5t#S256': sha('sha256', appCert.raw) }],
  ]);

  const store = new Store();
  const interactive = {
    grant_types: ['authorization_code', 'refresh_token', DEVICE_CODE],
    response_types: ['code' as const],
    redirect_uris: [LOOPBACK_REDIRECT, LOOPBACK_ROOT],
    application_type: 'native' as const, // loopback redirect on any port
  };
  const provider = new Provider(issuer, {
    adapter: (name: string) => store.adapter(name),
    clients: [
      { client_id: clients.public.clientId, token_endpoint_auth_method: 'none', ...interactive },
      {
        client_id: clients.confidential.clientId,
        client_secret: clients.confidential.clientSecret,
        token_endpoint_auth_method: 'client_secret_basic', // also accepts client_secret_post
        ...interactive,
      },
      {
        client_id: clients.app.clientId,
        client_secret: clients.app.clientSecret,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
      },
      {
        client_id: clients.appCert.clientId,
        token_endpoint_auth_method: 'private_key_jwt',
        jwks: { keys: [{ ...appCert.publicKey.export({ format: 'jwk' }), x5c: [appCert.raw.toString('base64')] }] },
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
      },
      {
        client_id: clients.serviceAccount.clientId,
        token_endpoint_auth_method: 'none', // the signed assertion is the credential (checked by the grant)
        grant_types: [JWT_BEARER],
        response_types: [],
        redirect_uris: [],
      },
      {
        client_id: introspector.clientId,
        client_secret: introspector.clientSecret,
        grant_types: [],
        response_types: [],
        redirect_uris: [],
      },
    ],
    clientAuthMethods: ['none', 'client_secret_basic', 'client_secret_post', 'private_key_jwt'],
    jwks: { keys: [{ ...signing.privateKey.export({ format: 'jwk' }), kid: 'op-1', use: 'sig', alg: 'RS256' }] },
    cookies: { keys: [secret()] },
    scopes: ['openid', 'offline_access', 'mail'],
    pkce: { required: () => true, methods: ['S256'] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: {
        enabled: true,
        // only confidential callers, and a refresh token is never a bearer credential for mail
        allowedPolicy: (_ctx, caller, token) => caller.clientAuthMethod !== 'none' && token.kind !== 'RefreshToken',
      },
      revocation: { enabled: true },
      deviceFlow: {
        enabled: true,
        charset: 'base-20',
        mask: '****-****',
        userCodeInputSource: (ctx, form, _out, err) => {
          const note = err ? `<p class="error" data-error="${err.name}">${err.name}</p>` : '';
          ctx.body = `<!DOCTYPE html><title>Sign-in</title>${note}${form}`;
        },
        userCodeConfirmSource: (ctx, form, client, _info, userCode) => {
          ctx.body = `<!DOCTYPE html><title>Confirm</title><p>${client.clientId}: ${userCode}</p>${form}`;
        },
        successSource: (ctx) => {
          ctx.body = '<!DOCTYPE html><title>Sign-in Success</title><p data-success="device">Signed in.</p>';
        },
      },
    },
    ttl: {
      AccessToken: () => ttl.accessToken,
      ClientCredentials: () => ttl.accessToken,
      IdToken: () => ttl.accessToken,
      RefreshToken: () => ttl.refreshToken,
      Grant: () => ttl.refreshToken,
      DeviceCode: () => ttl.deviceCode,
      AuthorizationCode: () => 60,
      Interaction: () => 600,
      Session: () => 3600,
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    findAccount: (_ctx, sub) => ({ accountId: sub, claims: () => ({ sub, email: sub }) }),
    // Microsoft issues a refresh token for offline_access without prompt=consent; oidc-provider (OIDC Core §11)
    // drops offline_access from an authorization request without it, so refresh tokens go to every client allowed them.
    issueRefreshToken: (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    expiresWithSession: () => false,
    rotateRefreshToken: opts.rotateRefreshTokens ?? true,
    extraTokenClaims: (_ctx, token) => {
      const t = token as { accountId?: string; kind: string };
      return { username: t.accountId ?? (t.kind === 'ClientCredentials' ? appMailbox : undefined) };
    },
    assertJwtClientAuthClaimsAndHeader: (_ctx, _claims, header, client) => {
      const known = thumbprints.get(client.clientId);
      for (const h of ['x5t', 'x5t#S256'] as const) {
        if (header[h] !== undefined && header[h] !== known?.[h]) {
          throw new errors.InvalidClientAuth(`${h} does not name a certificate registered for the client`);
        }
      }
    },
    renderError: (ctx, out) => {
      ctx.type = 'html';
      ctx.body = `<!DOCTYPE html><title>Error</title><p data-error="${out.error}">${out.error}</p>`;
    },
  });

  // jwt-bearer (RFC 7523 §2.1): the assertion is signed by the service account's key; sub is the mailbox.
  const saKey = createPublicKey(clients.serviceAccount.privateKeyPem);
  provider.registerGrantType(
    JWT_BEARER,
    async (ctx: KoaContextWithOIDC, next: () => Promise<void>) => {
      const param = (name: string) => {
        const v = ctx.oidc.params?.[name];
        return typeof v === 'string' ? v : '';
      };
      const assertion = param('assertion');
      const [h = '', p = '', s = ''] = assertion.split('.');
      const json = (part: string): Record<string, unknown> => {
        try {
          return JSON.parse(Buffer.from(part, 'base64url').toString()) as Record<string, unknown>;
        } catch {
          throw new errors.InvalidGrant('malformed assertion');
        }
      };
      const header = json(h);
      const claims = json(p);
      const client = ctx.oidc.client!;
      const now = Math.floor(Date.now() / 1000);
      if (header.alg !== 'RS256' || client.clientId !== clients.serviceAccount.clientId)
        throw new errors.InvalidGrant('assertion must be RS256 by a known service account');
      if (!verify('sha256', Buffer.from(`${h}.${p}`), saKey, Buffer.from(s, 'base64url')))
        throw new errors.InvalidGrant('Invalid JWT Signature.');
      if (claims.iss !== client.clientId) throw new errors.InvalidGrant('iss must be the service account');
      if (claims.aud !== tokenUrl) throw new errors.InvalidGrant('aud must be the token URL');
      const exp = Number(claims.exp);
      const iat = Number(claims.iat);
      if (!(exp > now && exp - iat <= 3600))
        throw new errors.InvalidGrant('Invalid JWT: Token must be a short-lived token');
      if (typeof claims.sub !== 'string' || !isAccount(claims.sub))
        throw new errors.InvalidGrant('sub must be a mailbox');
      const scope = typeof claims.scope === 'string' ? claims.scope : param('scope');
      const grant = new provider.Grant({ accountId: claims.sub, clientId: client.clientId });
      grant.addOIDCScope(scope);
      const grantId = await grant.save();
      const at = new provider.AccessToken({ accountId: claims.sub, client, grantId, gty: JWT_BEARER, scope });
      ctx.body = { access_token: await at.save(), expires_in: at.expiration, token_type: 'Bearer', scope };
      await next();
    },
    ['assertion', 'scope'],
  );

  // Announce a short polling interval (oidc-provider omits it, which means 5 s).
  provider.use(async (ctx, next) => {
    await next();
    const body = ctx.body as Record<string, unknown> | undefined;
    if (ctx.path === '/device/auth' && ctx.status === 200 && body && typeof body === 'object')
      body.interval = deviceInterval;
  });

  const refreshTokens = new Map<string, { clientId: string; accountId: string }>();
  provider.on('refresh_token.saved', (t: { jti: string; clientId: string; accountId: string }) => {
    refreshTokens.set(t.jti, { clientId: t.clientId, accountId: t.accountId });
  });
  provider.on('server_error', (_ctx: unknown, err: Error) => console.error('[oidc harness] server_error', err));

  const tokenRequests: TokenRequestRecord[] = [];
  const faults: (TokenFault & { left: number })[] = [];
  let introspectionCount = 0;

  const interaction = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const details = await provider.interactionDetails(req, res);
    if (req.method !== 'POST') {
      // a page a person could use; the scripted person posts the same fields
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(
        `<!DOCTYPE html><title>${details.prompt.name}</title><form method="post" action="/interaction/${details.uid}">` +
          `<input name="account" value=""><button>Continue</button><button name="deny" value="yes">Deny</button></form>`,
      );
      return;
    }
    const form = new URLSearchParams((await readBody(req)).toString());
    if (form.get('deny')) {
      await provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'End-User denied' });
      return;
    }
    if (details.prompt.name === 'login') {
      const account = form.get('account');
      if (!isAccount(account)) {
        res.writeHead(400, { 'content-type': 'text/plain' }).end('account must be a mailbox address');
        return;
      }
      await provider.interactionFinished(req, res, { login: { accountId: account } });
      return;
    }
    const missing = details.prompt.details as { missingOIDCScope?: string[]; missingOIDCClaims?: string[] };
    const grant = details.grantId
      ? (await provider.Grant.find(details.grantId))!
      : new provider.Grant({ accountId: details.session!.accountId, clientId: String(details.params.client_id) });
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    const grantId = await grant.save();
    await provider.interactionFinished(
      req,
      res,
      { consent: details.grantId ? {} : { grantId } },
      {
        mergeWithLastSubmission: true,
      },
    );
  };

  const callback = provider.callback();
  const token = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const raw = await readBody(req);
    const form = new URLSearchParams(raw.toString());
    const grantType = form.get('grant_type') ?? '';
    const clientId = requestClientId(req, form);
    const record: TokenRequestRecord = { grantType, clientId, status: 0 };
    tokenRequests.push(record);
    res.on('finish', () => (record.status = res.statusCode));

    const i = faults.findIndex((f) => !f.grantType || f.grantType === grantType);
    const fault = i >= 0 ? faults[i] : undefined;
    if (fault && --fault.left <= 0) faults.splice(i, 1);
    if (fault?.delayMs) await new Promise((r) => setTimeout(r, fault.delayMs));
    if (fault?.status) {
      const body = fault.body ?? { error: 'temporarily_unavailable' };
      res.writeHead(fault.status, {
        'content-type': typeof body === 'string' ? 'text/html' : 'application/json',
        'cache-control': 'no-store',
        ...fault.headers,
      });
      res.end(typeof body === 'string' ? body : JSON.stringify(body));
      return;
    }
    // Google's jwt-bearer requests carry no client authentication: name the client from the assertion's iss so
    // oidc-provider can load it (the grant then verifies the signature).
    let body = raw;
    if (grantType === JWT_BEARER && !form.has('client_id') && !req.headers.authorization && clientId) {
      form.set('client_id', clientId);
      body = Buffer.from(form.toString());
    }
    await callback(replay(req, body), res);
  };

  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const p = (req.url ?? '/').split('?')[0] ?? '/';
    const handle = async () => {
      if (p.startsWith('/interaction/')) return interaction(req, res);
      if (req.method === 'POST' && p === '/token') return token(req, res);
      if (req.method === 'POST' && p === '/token/introspection') introspectionCount++;
      return callback(req, res);
    };
    handle().catch((err: unknown) => {
      console.error('[oidc harness]', err);
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('harness error');
    });
  });

  const person = new URL(issuer);
  /** Follow redirects inside the provider; answer its interactions (log in as `account`, consent or deny). */
  const walk = async (browser: Browser, start: string, account: string, deny = false) => {
    let r = await browser.request(start);
    for (let step = 0; step < 20; step++) {
      if (r.location) {
        const next = new URL(r.location);
        if (next.origin !== person.origin) return r.location; // the client's redirect URI
        r = await browser.request(r.location);
        continue;
      }
      if (r.status !== 200) throw new Error(`provider answered HTTP ${r.status}: ${r.body.slice(0, 300)}`);
      if (/data-success=/.test(r.body)) return '';
      const title = /<title>([^<]*)<\/title>/.exec(r.body)?.[1];
      if (title !== 'login' && title !== 'consent') throw new Error(`unexpected page: ${r.body.slice(0, 300)}`);
      const { action } = formOf(r.body, issuer);
      const fields = new URLSearchParams(title === 'login' ? { account } : deny ? { deny: 'yes' } : { consent: 'yes' });
      r = await browser.request(action, fields);
    }
    throw new Error('too many steps in the sign-in');
  };

  /** Enter the user code and return the confirmation form (as the person's browser sees it). */
  const confirmPage = async (browser: Browser, userCode: string) => {
    const input = await browser.request(`${issuer}/device`);
    const entry = formOf(input.body, issuer);
    entry.fields.set('user_code', userCode);
    const confirm = await browser.request(entry.action, entry.fields);
    if (confirm.status !== 200 || !/<title>Confirm<\/title>/.test(confirm.body)) {
      throw new Error(`user code ${userCode} not accepted: ${confirm.body.slice(0, 300)}`);
    }
    return formOf(confirm.body, issuer);
  };

  return {
    issuer,
    port,
    tokenUrl,
    deviceAuthorizationUrl: `${issuer}/device/auth`,
    authorizationUrl: `${issuer}/auth`,
    introspectionUrl: `${issuer}/token/introspection`,
    clients,
    introspection: { url: `${issuer}/token/introspection`, ...introspector },
    ttl,
    async approveDevice(userCode, account) {
      const browser = new Browser();
      const { action, fields } = await confirmPage(browser, userCode);
      const r = await browser.request(action, fields);
      if (!r.location) throw new Error(`confirming the device code gave HTTP ${r.status}: ${r.body.slice(0, 300)}`);
      const end = await walk(browser, r.location, account);
      if (end !== '') throw new Error(`device sign-in ended at ${end}`);
    },
    async denyDevice(userCode) {
      const browser = new Browser();
      const { action, fields } = await confirmPage(browser, userCode);
      fields.delete('confirm');
      fields.set('abort', 'yes');
      const r = await browser.request(action, fields);
      if (!/data-error="AbortedError"/.test(r.body)) throw new Error(`abort not confirmed: ${r.body.slice(0, 300)}`);
    },
    approveAuthorization: (url, account) => walk(new Browser(), url, account),
    denyAuthorization: (url, account) => walk(new Browser(), url, account, true),
    revokeGrants: async (account, clientId) => Promise.resolve(store.revokeGrants(account, clientId)),
    tokenRequests,
    countTokenRequests: (f = {}) =>
      tokenRequests.filter(
        (r) => (!f.grantType || r.grantType === f.grantType) && (!f.clientId || r.clientId === f.clientId),
      ).length,
    issuedRefreshTokens: (f = {}) =>
      [...refreshTokens.values()].filter(
        (t) => (!f.clientId || t.clientId === f.clientId) && (!f.account || t.accountId === f.account),
      ).length,
    introspections: () => introspectionCount,
    issuedTokens: () => [...store.issued],
    tokenFault: (fault) => void faults.push({ ...fault, left: fault.times ?? 1 }),
    clearTokenFaults: () => void faults.splice(0),
    async close() {
      await new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      });
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function readBody(req: http.IncomingMessage, limit = 64 * 1024): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) req.destroy(new Error('request body too large'));
      else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** The request again, with `body` (already read from the socket) as its content. */
function replay(req: http.IncomingMessage, body: Buffer): http.IncomingMessage {
  const copy = new http.IncomingMessage(req.socket);
  copy.method = req.method;
  copy.url = req.url;
  copy.httpVersion = req.httpVersion;
  const headers = { ...req.headers, 'content-length': String(body.length) };
  delete headers['transfer-encoding'];
  copy.headers = headers;
  copy.complete = true; // else its end counts as an abort, which destroys the shared socket
  copy.push(body);
  copy.push(null);
  return copy;
}

/** Which client a token request names (unverified; for counting and routing). */
function requestClientId(req: http.IncomingMessage, form: URLSearchParams): string | undefined {
  const auth = req.headers.authorization;
  if (auth?.toLowerCase().startsWith('basic ')) {
    const basic = Buffer.from(auth.slice(6), 'base64').toString();
    return decodeURIComponent(basic.slice(0, basic.indexOf(':')).replace(/\+/g, '%20'));
  }
  if (form.get('client_id')) return form.get('client_id') ?? undefined;
  const jwt = form.get('client_assertion') ?? (form.get('grant_type') === JWT_BEARER ? form.get('assertion') : null);
  if (!jwt) return undefined;
  try {
    const claims = JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString()) as {
      sub?: unknown;
      iss?: unknown;
    };
    const id = form.has('client_assertion') ? claims.sub : claims.iss;
    return typeof id === 'string' ? id : undefined;
  } catch {
    return undefined;
  }
}
