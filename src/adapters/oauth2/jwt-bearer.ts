/**
 * The jwt-bearer grant (RFC 7523 §2.1) as Google service accounts with domain-wide delegation use it: the service
 * account signs an assertion (iss = itself, sub = the mailbox, aud = token URL, scope as a claim) and sends it as the
 * grant, with no client authentication.
 */
import { JWT_BEARER_GRANT } from './constants.js';
import { grantAssertion } from './jwt.js';
import { requestToken, type OAuth2Client, type TokenRequestOptions, type TokenSet } from './token.js';

export interface JwtBearerRequest extends TokenRequestOptions {
  tokenUrl: string;
  /** The service account (Google: `client_email` of its key file). */
  serviceAccount: string;
  /** The mailbox to act for. */
  subject: string;
  scope?: string | undefined;
  /** Its RSA private key (Google: `private_key` of the key file). */
  privateKeyPem: string;
  /** Google: `private_key_id` of the key file. */
  keyId?: string | undefined;
  /** Client authentication, for servers that want it besides the assertion (Google does not). */
  client?: OAuth2Client | undefined;
}

export async function jwtBearerToken(req: JwtBearerRequest): Promise<TokenSet> {
  const assertion = grantAssertion({
    issuer: req.serviceAccount,
    subject: req.subject,
    audience: req.tokenUrl,
    scope: req.scope,
    privateKeyPem: req.privateKeyPem,
    keyId: req.keyId,
  });
  const token = await requestToken(
    req.tokenUrl,
    'jwt_bearer',
    { grant_type: JWT_BEARER_GRANT, assertion },
    req.client,
    [assertion, req.privateKeyPem],
    req,
  );
  delete token.refreshToken; // the key is the credential; a new assertion is signed for every token
  return token;
}
