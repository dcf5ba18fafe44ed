/** OAuth2 for mailboxes: token grants, sign-in flows, provider presets, error codes, the access-token cache. */
export { AccessTokenCache } from './cache.js';
export type { AccessTokenCacheOptions, CachedAccessToken, CredentialCacheState, TokenSource } from './cache.js';
export {
  browserSignIn,
  buildAuthorizationUrl,
  createPkce,
  createState,
  exchangeAuthorizationCode,
} from './authorization-code.js';
export type { AuthorizationUrlInput, BrowserSignInRequest, CodeExchangeRequest, Pkce } from './authorization-code.js';
export { clientCredentialsToken } from './client-credentials.js';
export type { ClientCredentialsRequest } from './client-credentials.js';
export { DEVICE_CODE_GRANT, JWT_BEARER_GRANT } from './constants.js';
export { pollDeviceAuthorization, startDeviceAuthorization } from './device.js';
export type { DeviceAuthorization, DeviceAuthorizationRequest, DevicePollRequest } from './device.js';
export { MAX_RETRY_AFTER_MS, OAUTH2_ERROR_CODES, retryAfterMs } from './errors.js';
export type { GrantKind, OAuth2ErrorCode } from './errors.js';
export type { RequestOptions } from './http.js';
export { jwtBearerToken } from './jwt-bearer.js';
export type { JwtBearerRequest } from './jwt-bearer.js';
export type { AssertionAlg, ClientCertificate } from './jwt.js';
export { startLoopbackRedirect } from './loopback.js';
export type { LoopbackOptions, LoopbackRedirect } from './loopback.js';
export { providerPreset } from './presets.js';
export type { OAuth2Provider, ProviderPreset, TokenUse } from './presets.js';
export { refreshAccessToken } from './refresh-token.js';
export type { RefreshTokenRequest } from './refresh-token.js';
export type { OAuth2Client, TokenSet } from './token.js';
