/**
 * Signed JWTs with node:crypto: client assertions (RFC 7523 §2.2, private_key_jwt, as Microsoft takes them) and
 * jwt-bearer grant assertions (RFC 7523 §2.1, as Google service accounts send them).
 */
import {
  constants,
  createHash,
  createPrivateKey,
  randomUUID,
  sign,
  X509Certificate,
  type KeyObject,
} from 'node:crypto';
import { oauth2Error } from './errors.js';

/** RS256 (RSA PKCS#1 v1.5, what RFC 7523 clients and Google use) or PS256 (RSA-PSS, Microsoft's current advice). */
export type AssertionAlg = 'RS256' | 'PS256';

export interface ClientCertificate {
  /** PEM of the certificate registered with the provider (its thumbprints go in the header). */
  certificatePem: string;
  /** PEM of its RSA private key. */
  privateKeyPem: string;
  /** Default RS256. */
  alg?: AssertionAlg | undefined;
}

const b64url = (data: Buffer | string) => Buffer.from(data).toString('base64url');

function rsaKey(pem: string, secrets: ReadonlyArray<string | undefined>): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch {
    throw oauth2Error(
      { secrets },
      'config',
      'OAuth2 private key is not a readable PEM private key (PKCS#8 or PKCS#1)',
      {
        code: 'oauth2-bad-key',
      },
    );
  }
  if (key.asymmetricKeyType !== 'rsa') {
    throw oauth2Error({ secrets }, 'config', `OAuth2 private key must be RSA (is ${key.asymmetricKeyType})`, {
      code: 'oauth2-bad-key',
    });
  }
  return key;
}

/** A compact JWS of `claims` with `header` fields, signed with `key`. */
function signJwt(header: Record<string, unknown>, claims: Record<string, unknown>, key: KeyObject, alg: AssertionAlg) {
  const input = `${b64url(JSON.stringify({ alg, typ: 'JWT', ...header }))}.${b64url(JSON.stringify(claims))}`;
  const signature =
    alg === 'PS256'
      ? sign('sha256', Buffer.from(input), {
          key,
          padding: constants.RSA_PKCS1_PSS_PADDING,
          saltLength: constants.RSA_PSS_SALTLEN_DIGEST,
        })
      : sign('sha256', Buffer.from(input), key);
  return `${input}.${b64url(signature)}`;
}

/**
 * A client assertion: iss = sub = client id, aud = token URL, a fresh jti, valid 5 minutes; header `x5t#S256` and
 * `x5t` (SHA-256 / SHA-1 thumbprints of the certificate, which is how Microsoft picks the key).
 */
export function clientAssertion(clientId: string, tokenUrl: string, cert: ClientCertificate, now = Date.now()): string {
  const secrets = [cert.privateKeyPem];
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert.certificatePem);
  } catch {
    throw oauth2Error({ secrets }, 'config', 'OAuth2 client certificate is not a readable PEM certificate', {
      code: 'oauth2-bad-key',
    });
  }
  const key = rsaKey(cert.privateKeyPem, secrets);
  if (!x509.checkPrivateKey(key)) {
    throw oauth2Error({ secrets }, 'config', 'OAuth2 client key does not belong to the client certificate', {
      code: 'oauth2-bad-key',
    });
  }
  if (Date.parse(x509.validTo) <= now) {
    throw oauth2Error({ secrets }, 'auth', `OAuth2 client certificate expired on ${x509.validTo}`, {
      code: 'oauth2-client-rejected',
    });
  }
  const iat = Math.floor(now / 1000);
  return signJwt(
    {
      'x5t#S256': b64url(createHash('sha256').update(x509.raw).digest()),
      x5t: b64url(createHash('sha1').update(x509.raw).digest()),
    },
    { iss: clientId, sub: clientId, aud: tokenUrl, jti: randomUUID(), iat, nbf: iat, exp: iat + 300 },
    key,
    cert.alg ?? 'RS256',
  );
}

export interface GrantAssertionInput {
  /** The service account (Google: its e-mail address, `client_email` of its key file). */
  issuer: string;
  /** The mailbox to act for (domain-wide delegation). */
  subject: string;
  /** Token URL (Google: https://oauth2.googleapis.com/token). */
  audience: string;
  /** Space-separated scopes, sent as the `scope` claim (Google's way). */
  scope?: string | undefined;
  privateKeyPem: string;
  /** Key id (Google: `private_key_id` of the key file). */
  keyId?: string | undefined;
}

/** A jwt-bearer grant assertion, valid 1 hour (Google's maximum). */
export function grantAssertion(input: GrantAssertionInput, now = Date.now()): string {
  const key = rsaKey(input.privateKeyPem, [input.privateKeyPem]);
  const iat = Math.floor(now / 1000);
  return signJwt(
    input.keyId ? { kid: input.keyId } : {},
    {
      iss: input.issuer,
      sub: input.subject,
      aud: input.audience,
      ...(input.scope && { scope: input.scope }),
      iat,
      exp: iat + 3600,
    },
    key,
    'RS256',
  );
}
