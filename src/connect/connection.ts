import type { ConnectionSettings } from '../adapters/connection.js';
import type { ServerSpec } from '../config/model.js';
import { secretDigest, type SecretResolver } from './secrets.js';

export interface ResolvedConnection {
  settings: ConnectionSettings;
  /** Digest of the resolved secret values (in memory only), to notice a rotated secret. */
  secretDigest: string;
}

/**
 * Turns a server spec into connection settings: resolves its secrets (confined by the resolver's policy), reads the
 * private CA bundle, and gets an OAuth2 access token from the daemon's credentials when the server uses a grant (a
 * cached one while it is valid; a connection made later asks again, so an SMTP pool never logs in with an expired one).
 */
export async function resolveConnection(spec: ServerSpec, resolver: SecretResolver): Promise<ResolvedConnection> {
  // first: a refused CA file fails the connection before any secret is read or sent
  const caPem = spec.tlsCaFile === undefined ? undefined : await resolver.readCaFile(spec.tlsCaFile);
  const secrets = await resolver.resolveAll(spec);
  let auth: ConnectionSettings['auth'];
  if (spec.auth.type === 'basic') auth = { user: spec.auth.user, pass: secrets.get(spec.auth.password)! };
  else if (spec.auth.oauth2.accessToken)
    auth = { user: spec.auth.user, accessToken: secrets.get(spec.auth.oauth2.accessToken)! };
  else {
    const token = await resolver.accessToken(spec, secrets);
    auth = {
      user: spec.auth.user,
      accessToken: token.accessToken,
      expiresAt: token.expiresAt,
      renew: (rejected) => resolver.accessToken(spec, secrets, rejected),
    };
  }
  const settings: ConnectionSettings = {
    host: spec.host,
    port: spec.port,
    tls: spec.tls,
    allowPlaintext: spec.allowPlaintext,
    auth,
    ...(caPem !== undefined && { caPem }),
    ...(spec.type === 'imap' && spec.sniServerName !== undefined && { servername: spec.sniServerName }),
    ...(spec.type === 'imap' && { disableCompression: spec.disableCompression }),
  };
  return { settings, secretDigest: secretDigest(secrets) };
}
