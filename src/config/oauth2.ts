/**
 * What an `auth.oauth2` block means, without any network: the grant, the endpoints (a provider preset's, or those
 * written), which combinations of fields are complete, and the credential it names. A credential's id is
 * `oauth2/<first 12 hex of sha256 of its identity>`: where its refresh token comes from (the reference as written,
 * or a sign-in of the mailbox), the client id and the token URL. Servers with the same identity share one
 * credential: one access token, one refresh at a time. Ids, never addresses, appear in metric labels.
 *
 * The provider endpoints here must equal those of adapters/oauth2/presets.ts (which also knows the scopes and what
 * each provider's device flow allows); a unit test compares them.
 */
import { createHash } from 'node:crypto';
import type { OAuth2Credentials } from '../generated/mailctl.js';
import type { ServerSpec } from './model.js';

export type OAuth2Grant = 'refresh_token' | 'client_credentials' | 'jwt_bearer';
export type OAuth2ProviderName = NonNullable<OAuth2Credentials['provider']>;

export interface OAuth2Endpoints {
  tokenUrl?: string;
  deviceAuthorizationUrl?: string;
  authorizationUrl?: string;
}

/** Tenant-less aliases: they cannot name a tenant for app-only access (and a worker on /common gets AADSTS50194). */
const MULTI_TENANT = new Set(['common', 'organizations', 'consumers']);

/** The grant an oauth2 block runs, or null when it only references an access token. */
export const grantOf = (o: OAuth2Credentials): OAuth2Grant | null =>
  o.accessToken !== undefined ? null : (o.grant ?? 'refresh_token');

/** The endpoints: those written, else the provider's (Microsoft's per tenant). */
export function endpointsOf(o: OAuth2Credentials): OAuth2Endpoints {
  let preset: OAuth2Endpoints = {};
  if (o.provider === 'google')
    preset = {
      tokenUrl: 'https://oauth2.googleapis.com/token',
      deviceAuthorizationUrl: 'https://oauth2.googleapis.com/device/code',
      authorizationUrl: 'https://accounts.google.com/o/oauth2/v2/auth',
    };
  else if (o.provider === 'microsoft' && o.tenant !== undefined) {
    const base = `https://login.microsoftonline.com/${o.tenant}/oauth2/v2.0`;
    preset = {
      tokenUrl: `${base}/token`,
      deviceAuthorizationUrl: `${base}/devicecode`,
      authorizationUrl: `${base}/authorize`,
    };
  }
  const out: OAuth2Endpoints = {};
  for (const key of ['tokenUrl', 'deviceAuthorizationUrl', 'authorizationUrl'] as const) {
    const url = o[key] ?? preset[key];
    if (url !== undefined) out[key] = url;
  }
  return out;
}

/** A credential the daemon obtains access tokens for (every oauth2 block but a bare accessToken). */
export interface OAuth2CredentialRef {
  /** `oauth2/<12 hex>` */
  id: string;
  grant: OAuth2Grant;
  /**
   * The refresh-token reference (refresh_token grant), when there is one; without one the token comes from a sign-in.
   */
  refreshToken?: string;
  clientId: string;
  tokenUrl: string;
  provider: OAuth2ProviderName;
  tenant?: string;
  /** The same credential at any token URL (reference or sign-in, and client id): a kept token may move to a new id. */
  lineage: string;
}

/** Where a credential's grant comes from; with the client id and token URL, its identity. */
function sourceOf(grant: OAuth2Grant, o: OAuth2Credentials, user: string): string {
  if (grant === 'refresh_token') return o.refreshToken ?? `sign-in:${user.toLowerCase()}`;
  // an app-only token is the app's for every mailbox; a jwt-bearer token is the delegated mailbox's
  return grant === 'jwt_bearer' ? `jwt_bearer:${user.toLowerCase()}` : 'client_credentials';
}

export const credentialIdOf = (identity: readonly string[]): string =>
  `oauth2/${createHash('sha256').update(JSON.stringify(identity)).digest('hex').slice(0, 12)}`;

/** The credential a server uses, or null (basic auth, a bare access token, or an incomplete block). */
export function credentialOf(spec: ServerSpec): OAuth2CredentialRef | null {
  if (spec.auth.type !== 'oauth2') return null;
  const o = spec.auth.oauth2;
  const grant = grantOf(o);
  const { tokenUrl } = endpointsOf(o);
  if (!grant || !tokenUrl || o.clientId === undefined) return null;
  const source = sourceOf(grant, o, spec.auth.user);
  return {
    id: credentialIdOf([source, o.clientId, tokenUrl]),
    grant,
    ...(grant === 'refresh_token' && o.refreshToken !== undefined && { refreshToken: o.refreshToken }),
    clientId: o.clientId,
    tokenUrl,
    provider: o.provider ?? 'generic',
    ...(o.tenant !== undefined && { tenant: o.tenant }),
    lineage: JSON.stringify([source, o.clientId]),
  };
}

/** What one oauth2 block gets wrong: a path below `auth.oauth2` (empty: the block), a code and a message. */
export interface OAuth2Finding {
  path: string[];
  code: 'oauth2-conflict' | 'oauth2-incomplete';
  message: string;
}

/** Which combinations are complete (the schema checks each field on its own). */
export function oauth2Findings(o: OAuth2Credentials): OAuth2Finding[] {
  const out: OAuth2Finding[] = [];
  const conflict = (path: string[], message: string) => out.push({ path, code: 'oauth2-conflict', message });
  const incomplete = (path: string[], message: string) => out.push({ path, code: 'oauth2-incomplete', message });
  if (o.accessToken !== undefined) {
    const others = Object.keys(o).filter((k) => k !== 'accessToken');
    if (others.length)
      conflict(
        [],
        `give either accessToken or a grant (${others.join(', ')}), not both: an access token is used as it is`,
      );
    return out;
  }
  const grant = o.grant ?? 'refresh_token';
  const provider = o.provider ?? 'generic';
  if (o.tenant !== undefined && provider !== 'microsoft')
    conflict(['tenant'], 'tenant applies to provider: microsoft only');
  if (provider === 'microsoft' && o.tenant === undefined)
    incomplete(['provider'], "provider microsoft needs tenant: the tenant's directory id (GUID) or verified domain");
  if (provider === 'microsoft' && grant !== 'refresh_token' && MULTI_TENANT.has(o.tenant?.toLowerCase() ?? ''))
    conflict(['tenant'], `Microsoft app-only access needs the tenant's id or domain, not "${o.tenant}"`);
  const endpoints = endpointsOf(o);
  if (!endpoints.tokenUrl && !(provider === 'microsoft' && o.tenant === undefined))
    incomplete([], 'a grant needs tokenUrl (or provider: microsoft with tenant, or provider: google)');
  if (o.clientId === undefined)
    incomplete(
      [],
      grant === 'jwt_bearer'
        ? 'jwt_bearer needs clientId: the service account (its client_email)'
        : "a grant needs clientId: the app registration's client id",
    );
  if (o.clientSecret !== undefined && o.clientCertificate !== undefined)
    conflict(['clientCertificate'], 'give clientSecret or clientCertificate (with clientKey), not both');
  if (grant === 'jwt_bearer') {
    for (const field of ['clientSecret', 'clientCertificate'] as const)
      if (o[field] !== undefined)
        conflict([field], `jwt_bearer signs its assertion with the service account's key (clientKey) alone`);
    if (o.clientKey === undefined)
      incomplete(['grant'], "jwt_bearer needs clientKey: the service account's private key");
  } else {
    if (o.clientCertificate !== undefined && o.clientKey === undefined)
      incomplete(['clientCertificate'], 'clientCertificate needs clientKey, the private key that signs the assertion');
    if (o.clientKey !== undefined && o.clientCertificate === undefined)
      incomplete(['clientKey'], 'clientKey needs clientCertificate: the certificate registered for the app');
  }
  if (grant === 'client_credentials' && o.clientSecret === undefined && o.clientCertificate === undefined)
    incomplete(['grant'], 'client_credentials needs clientSecret, or clientCertificate and clientKey');
  if (grant !== 'refresh_token') {
    for (const field of ['refreshToken', 'deviceAuthorizationUrl', 'authorizationUrl'] as const)
      if (o[field] !== undefined)
        conflict([field], `${field} applies to the refresh_token grant only; ${grant} needs no sign-in`);
  } else if (
    o.refreshToken === undefined &&
    !endpoints.deviceAuthorizationUrl &&
    !endpoints.authorizationUrl &&
    out.length === 0
  ) {
    incomplete(
      [],
      'without refreshToken the credential comes from `mailctl auth login`, which needs ' +
        'deviceAuthorizationUrl or authorizationUrl (or a provider)',
    );
  }
  return out;
}
