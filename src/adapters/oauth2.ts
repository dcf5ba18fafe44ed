/** The refresh-token grant under its first name; everything OAuth2 lives in ./oauth2/. */
export { refreshAccessToken as fetchAccessToken } from './oauth2/index.js';
export type { RefreshTokenRequest, TokenSet as AccessToken } from './oauth2/index.js';
