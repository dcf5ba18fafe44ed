/**
 * The OAuth2 credentials the daemon runs (`GET /v1/credentials`, `mailctl auth status`) and the sign-in that gives it
 * one (`POST /v1/credentials/<type>/<shortName>/login`, `mailctl auth login`). No token ever crosses the API.
 */

export type CredentialGrant = 'refresh_token' | 'client_credentials' | 'jwt_bearer';

/** Where a credential's refresh token comes from now: the referenced secret, a sign-in, or a rotation kept since. */
export type RefreshTokenSource = 'reference' | 'sign-in' | 'rotation';

export interface CredentialError {
  /** mailctl's code, e.g. `oauth2-needs-login`, `oauth2-client-rejected`, `HTTP_503`. */
  code: string;
  /** The provider's own code: an `AADSTS…` number, else the OAuth2 `error` (`invalid_grant`). */
  providerCode: string | null;
  message: string;
  at: string;
}

export interface CredentialStatus {
  /** `oauth2/<12 hex>` */
  id: string;
  grant: CredentialGrant;
  provider: string;
  /** Servers that use it (`type/shortName`), applied or in the folder. */
  servers: string[];
  /** A person must sign in again (`mailctl auth login`): the provider refuses the grant. */
  needsLogin: boolean;
  /** When a token request for it last succeeded (since the daemon started). */
  lastRefresh: string | null;
  /** When the access token the daemon holds expires, if it holds one. */
  accessTokenExpires: string | null;
  /** The refresh token (refresh_token grant only): where it comes from, and since when (when known). */
  refreshToken: { source: RefreshTokenSource | 'none'; since: string | null } | null;
  lastError: CredentialError | null;
}

/** What `mailctl auth login --browser` (or `--out`) needs to run a sign-in itself; nothing secret. */
export interface SignInParameters {
  credential: string;
  server: string;
  clientId: string;
  /** No client secret or certificate: the CLI may exchange the code itself (`--out`). */
  publicClient: boolean;
  tokenUrl: string;
  authorizationUrl: string | null;
  deviceAuthorizationUrl: string | null;
  /** The provider refuses the mail scope in the device flow (Google): sign in with `--browser`. */
  deviceFlowForMail: boolean;
  scope: string | null;
  /** The mailbox, to pre-fill the account at the provider. */
  loginHint: string;
  /** Provider extras for the authorization URL (Google: access_type=offline, prompt=consent). */
  extraParams: Record<string, string>;
}

/** One line of a device sign-in's stream: first what the person must do, then the result. */
export interface DeviceSignInStarted {
  type: 'device';
  credential: string;
  verificationUri: string;
  verificationUriComplete: string | null;
  userCode: string;
  expiresAt: string;
  /** The provider's own instructions, when it sends some. */
  message: string | null;
}

export interface SignInResult {
  type: 'result';
  ok: boolean;
  credential: string;
  /** The servers that use the credential and go on with it now. */
  servers: string[];
  error?: CredentialError;
}

/**
 * `POST …/login` body: nothing (the daemon runs a device sign-in), a code from the CLI's browser sign-in, or a
 * notice.
 */
export interface SignInRequest {
  /** Who signs in (the CLI user), for the apply log. */
  who?: string;
  /** Send the client secret to endpoints the server's bindings do not have yet (like `apply --approve-rebind`). */
  approveRebind?: boolean;
  /** A browser sign-in's code, PKCE verifier and loopback redirect URI (accepted from loopback only). */
  code?: string;
  codeVerifier?: string;
  redirectUri?: string;
  /** `auth login --out`: the CLI signed in and wrote the token to a file itself; recorded, nothing kept. */
  outFile?: boolean;
}
