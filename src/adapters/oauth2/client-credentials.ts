/**
 * The client-credentials grant (RFC 6749 §4.4): app-only access (Microsoft 365 `IMAP.AccessAsApp`, SMTP), with a
 * client secret or a certificate. Microsoft's scope for it is `https://outlook.office365.com/.default`.
 */
import { oauth2Error } from './errors.js';
import { requestToken, type OAuth2Client, type TokenRequestOptions, type TokenSet } from './token.js';

export interface ClientCredentialsRequest extends OAuth2Client, TokenRequestOptions {
  tokenUrl: string;
  scope?: string | undefined;
}

export async function clientCredentialsToken(req: ClientCredentialsRequest): Promise<TokenSet> {
  if (!req.clientSecret && !req.clientCertificate) {
    throw oauth2Error({ secrets: [] }, 'config', 'OAuth2 client_credentials needs a client secret or certificate', {
      code: 'oauth2-invalid-request',
    });
  }
  const token = await requestToken(
    req.tokenUrl,
    'client_credentials',
    { grant_type: 'client_credentials', ...(req.scope && { scope: req.scope }) },
    req,
    [],
    req,
  );
  delete token.refreshToken; // RFC 6749 §4.4.3: none is due; the client secret or certificate is the credential
  return token;
}
