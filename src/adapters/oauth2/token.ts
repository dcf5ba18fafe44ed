/** The token endpoint (RFC 6749 §3.2): client authentication, the request, and the answer as a TokenSet. */
import { endpointOf, oauth2Error, type GrantKind } from './errors.js';
import { postOAuth2, type RequestOptions } from './http.js';
import { clientAssertion, type ClientCertificate } from './jwt.js';

/** How the client authenticates: a public client has neither a secret nor a certificate. */
export interface OAuth2Client {
  clientId: string;
  clientSecret?: string | undefined;
  /** Where the secret goes: the form body (client_secret_post, default) or an HTTP Basic header. */
  clientSecretIn?: 'body' | 'basic' | undefined;
  /** A signed client assertion instead of a secret (private_key_jwt, RFC 7523 §2.2). */
  clientCertificate?: ClientCertificate | undefined;
}

export interface TokenSet {
  accessToken: string;
  /** Epoch ms: expires_in (3600 s when the server omits it) from when the answer arrived. */
  expiresAt: number;
  /** A (new) refresh token: after a refresh, only when the server rotated it. The caller must keep it. */
  refreshToken?: string;
  /** Granted scopes, when the server says. */
  scope?: string;
}

export type TokenRequestOptions = RequestOptions;

/** Client-authentication fields for a request to `url`, and the values to keep out of messages. */
export function clientAuthentication(
  client: OAuth2Client,
  url: string,
): { params: Record<string, string>; headers: Record<string, string>; secrets: string[] } {
  const { clientId, clientSecret, clientCertificate } = client;
  if (clientSecret && clientCertificate) {
    throw oauth2Error(
      { secrets: [clientSecret] },
      'config',
      'OAuth2 client has both a secret and a certificate: use one',
      {
        code: 'oauth2-invalid-request',
      },
    );
  }
  if (clientCertificate) {
    const assertion = clientAssertion(clientId, url, clientCertificate);
    return {
      params: {
        client_id: clientId,
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        client_assertion: assertion,
      },
      headers: {},
      secrets: [assertion, clientCertificate.privateKeyPem],
    };
  }
  if (clientSecret && client.clientSecretIn === 'basic') {
    // RFC 6749 §2.3.1: both parts form-encoded before base64
    const basic = Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`).toString('base64');
    return { params: {}, headers: { authorization: `Basic ${basic}` }, secrets: [clientSecret, basic] };
  }
  if (clientSecret)
    return { params: { client_id: clientId, client_secret: clientSecret }, headers: {}, secrets: [clientSecret] };
  return { params: { client_id: clientId }, headers: {}, secrets: [] };
}

/**
 * POST a grant to the token endpoint and parse the answer. `params` holds the grant (grant_type and its fields);
 * `secrets` are its sensitive values (refresh token, code, verifier, assertion) to keep out of messages.
 */
export async function requestToken(
  tokenUrl: string,
  grant: GrantKind,
  params: Record<string, string>,
  client: OAuth2Client | undefined,
  secrets: ReadonlyArray<string | undefined>,
  opts: TokenRequestOptions = {},
): Promise<TokenSet> {
  const auth = client ? clientAuthentication(client, tokenUrl) : { params: {}, headers: {}, secrets: [] };
  const ctx = { url: tokenUrl, grant, secrets: [...secrets, ...auth.secrets] };
  const json = await postOAuth2(ctx, new URLSearchParams({ ...params, ...auth.params }), {
    ...opts,
    headers: auth.headers,
  });
  return parseTokenAnswer(ctx, json);
}

export function parseTokenAnswer(
  ctx: { url: string; secrets: ReadonlyArray<string | undefined> },
  json: Record<string, unknown>,
): TokenSet {
  const where = endpointOf(ctx.url);
  const accessToken = typeof json.access_token === 'string' && json.access_token !== '' ? json.access_token : undefined;
  if (!accessToken) {
    throw oauth2Error(ctx, 'config', `OAuth2 endpoint ${where} answered without an access_token (is the URL right?)`, {
      code: 'oauth2-bad-response',
    });
  }
  if (typeof json.token_type === 'string' && json.token_type.toLowerCase() !== 'bearer') {
    throw oauth2Error(ctx, 'config', `OAuth2 endpoint ${where} issued a ${json.token_type} token, not a Bearer token`, {
      code: 'oauth2-bad-response',
    });
  }
  const expiresIn = Number(json.expires_in ?? 3600);
  const out: TokenSet = {
    accessToken,
    expiresAt: Date.now() + (Number.isFinite(expiresIn) && expiresIn > 0 ? expiresIn : 3600) * 1000,
  };
  if (typeof json.refresh_token === 'string' && json.refresh_token !== '') out.refreshToken = json.refresh_token;
  if (typeof json.scope === 'string') out.scope = json.scope;
  return out;
}
