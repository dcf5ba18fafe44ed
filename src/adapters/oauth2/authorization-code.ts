/**
 * The authorization code grant with PKCE (RFC 7636, S256) for a native app (RFC 8252): build the authorization URL,
 * receive the redirect on a loopback listener, exchange the code. `browserSignIn` does all three.
 */
import { createHash, randomBytes } from 'node:crypto';
import { startLoopbackRedirect, type LoopbackOptions } from './loopback.js';
import { requestToken, type OAuth2Client, type TokenRequestOptions, type TokenSet } from './token.js';

export interface Pkce {
  /** Secret until the code exchange. */
  verifier: string;
  challenge: string;
  method: 'S256';
}

/** A 43-character verifier (32 random bytes, RFC 7636 §4.1) and its S256 challenge. */
export function createPkce(): Pkce {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url'), method: 'S256' };
}

/** An unguessable `state` (binds the redirect to this sign-in). */
export function createState(): string {
  return randomBytes(16).toString('base64url');
}

export interface AuthorizationUrlInput {
  authorizationUrl: string;
  clientId: string;
  redirectUri: string;
  scope?: string | undefined;
  state: string;
  codeChallenge: string;
  /** Pre-fills the account at the provider (the mailbox address). */
  loginHint?: string | undefined;
  /** Provider extras, e.g. Google's `access_type=offline` or `prompt=consent`. */
  extraParams?: Record<string, string> | undefined;
}

export function buildAuthorizationUrl(input: AuthorizationUrlInput): string {
  const url = new URL(input.authorizationUrl);
  const params: Record<string, string> = {
    response_type: 'code',
    client_id: input.clientId,
    redirect_uri: input.redirectUri,
    ...(input.scope && { scope: input.scope }),
    state: input.state,
    code_challenge: input.codeChallenge,
    code_challenge_method: 'S256',
    ...(input.loginHint && { login_hint: input.loginHint }),
    ...input.extraParams,
  };
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  return url.href;
}

export interface CodeExchangeRequest extends OAuth2Client, TokenRequestOptions {
  tokenUrl: string;
  code: string;
  redirectUri: string;
  codeVerifier: string;
}

export function exchangeAuthorizationCode(req: CodeExchangeRequest): Promise<TokenSet> {
  return requestToken(
    req.tokenUrl,
    'authorization_code',
    {
      grant_type: 'authorization_code',
      code: req.code,
      redirect_uri: req.redirectUri,
      code_verifier: req.codeVerifier,
    },
    req,
    [req.code, req.codeVerifier],
    req,
  );
}

export interface BrowserSignInRequest extends OAuth2Client, TokenRequestOptions {
  authorizationUrl: string;
  tokenUrl: string;
  scope?: string | undefined;
  loginHint?: string | undefined;
  extraParams?: Record<string, string> | undefined;
  /** The loopback listener: path (default "/"), how long to wait for the browser (default 5 minutes). */
  loopback?: Omit<LoopbackOptions, 'state' | 'signal'> | undefined;
  /** Show the URL to the person (print it, open a browser). */
  open(url: string): void | Promise<void>;
}

/** Sign in through a browser: PKCE + state, a loopback redirect on 127.0.0.1, then the code exchange. */
export async function browserSignIn(req: BrowserSignInRequest): Promise<TokenSet> {
  const pkce = createPkce();
  const state = createState();
  const loopback = await startLoopbackRedirect({ ...req.loopback, state, signal: req.signal });
  try {
    await req.open(
      buildAuthorizationUrl({
        authorizationUrl: req.authorizationUrl,
        clientId: req.clientId,
        redirectUri: loopback.redirectUri,
        scope: req.scope,
        state,
        codeChallenge: pkce.challenge,
        loginHint: req.loginHint,
        extraParams: req.extraParams,
      }),
    );
    const code = await loopback.code;
    return await exchangeAuthorizationCode({
      ...req,
      code,
      redirectUri: loopback.redirectUri,
      codeVerifier: pkce.verifier,
    });
  } finally {
    await loopback.close();
  }
}
