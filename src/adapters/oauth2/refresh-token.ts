/** The refresh-token grant (RFC 6749 §6). A rotated refresh token in the answer is returned: the caller keeps it. */
import { requestToken, type OAuth2Client, type TokenRequestOptions, type TokenSet } from './token.js';

export interface RefreshTokenRequest extends OAuth2Client, TokenRequestOptions {
  tokenUrl: string;
  refreshToken: string;
  scope?: string | undefined;
}

export async function refreshAccessToken(req: RefreshTokenRequest): Promise<TokenSet> {
  const token = await requestToken(
    req.tokenUrl,
    'refresh_token',
    { grant_type: 'refresh_token', refresh_token: req.refreshToken, ...(req.scope && { scope: req.scope }) },
    req,
    [req.refreshToken],
    req,
  );
  if (token.refreshToken === req.refreshToken) delete token.refreshToken; // not rotated
  return token;
}
