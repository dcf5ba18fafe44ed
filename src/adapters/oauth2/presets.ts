/**
 * Well-known endpoints and scopes (`provider: microsoft | google | generic`), as documented by the providers:
 *  - Microsoft identity platform v2.0, per tenant: https://login.microsoftonline.com/<tenant>/oauth2/v2.0/{token,
 *    devicecode,authorize}; Exchange Online scopes https://outlook.office.com/IMAP.AccessAsUser.All and
 *    …/SMTP.Send (delegated, plus offline_access for a refresh token), https://outlook.office365.com/.default
 *    (app-only: client credentials with IMAP.AccessAsApp / SMTP.SendAsApp granted).
 *  - Google: https://oauth2.googleapis.com/token, https://oauth2.googleapis.com/device/code,
 *    https://accounts.google.com/o/oauth2/v2/auth; scope https://mail.google.com/ (IMAP and SMTP). Google's device
 *    flow accepts only a short list of scopes, which does not include this restricted one: sign in with the browser.
 */
import { oauth2Error } from './errors.js';

export type OAuth2Provider = 'microsoft' | 'google' | 'generic';
/** What the token is for: delegated IMAP or SMTP access, or app-only access (client credentials / jwt-bearer). */
export type TokenUse = 'imap' | 'smtp' | 'app-only';

export interface ProviderPreset {
  tokenUrl?: string;
  deviceAuthorizationUrl?: string;
  authorizationUrl?: string;
  scope?: string;
  /** False when the provider refuses the mail scope in the device flow (Google): use the browser sign-in. */
  deviceFlowForMail: boolean;
}

// Tenant ids are GUIDs or verified domain names; they become a URL path segment.
const TENANT = /^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?$/;
// Tenant-less aliases: unusable for app-only access, and a worker using /common fails with AADSTS50194
// for a single-tenant app.
const MULTI_TENANT = new Set(['common', 'organizations', 'consumers']);

export function providerPreset(provider: OAuth2Provider, use: TokenUse, tenant?: string): ProviderPreset {
  if (provider === 'google') {
    return {
      tokenUrl: 'https://oauth2.googleapis.com/token',
      deviceAuthorizationUrl: 'https://oauth2.googleapis.com/device/code',
      authorizationUrl: 'https://accounts.google.com/o/oauth2/v2/auth',
      scope: 'https://mail.google.com/',
      deviceFlowForMail: false,
    };
  }
  if (provider === 'generic') return { deviceFlowForMail: true };
  if (!tenant || !TENANT.test(tenant)) {
    throw oauth2Error({ secrets: [] }, 'config', 'Microsoft needs a tenant: its directory id (GUID) or domain name', {
      code: 'oauth2-invalid-request',
    });
  }
  if (use === 'app-only' && MULTI_TENANT.has(tenant.toLowerCase())) {
    throw oauth2Error(
      { secrets: [] },
      'config',
      `Microsoft app-only access needs the tenant's id or domain, not "${tenant}"`,
      {
        code: 'oauth2-invalid-request',
      },
    );
  }
  const base = `https://login.microsoftonline.com/${tenant}/oauth2/v2.0`;
  const scope = {
    imap: 'https://outlook.office.com/IMAP.AccessAsUser.All offline_access',
    smtp: 'https://outlook.office.com/SMTP.Send offline_access',
    'app-only': 'https://outlook.office365.com/.default',
  }[use];
  return {
    tokenUrl: `${base}/token`,
    deviceAuthorizationUrl: `${base}/devicecode`,
    authorizationUrl: `${base}/authorize`,
    scope,
    deviceFlowForMail: true,
  };
}
