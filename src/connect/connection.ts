import type { ConnectionSettings } from '../adapters/connection.js';
import { fetchAccessToken } from '../adapters/oauth2.js';
import type { ServerSpec } from '../config/model.js';
import { secretDigest, type SecretResolver } from './secrets.js';

export interface ResolvedConnection {
  settings: ConnectionSettings;
  /** Digest of the resolved secret values (in memory only), to notice a rotated secret. */
  secretDigest: string;
}

/**
 * Turns a server spec into connection settings: resolves its secrets (confined by the resolver's policy), reads the
 * private CA bundle, and exchanges an OAuth2 refresh token for an access token when the server uses a grant.
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
    const { tokenUrl, clientId, clientSecret, refreshToken, scope } = spec.auth.oauth2;
    const token = await fetchAccessToken({
      tokenUrl: tokenUrl!,
      clientId: clientId!,
      clientSecret: secrets.get(clientSecret!)!,
      refreshToken: secrets.get(refreshToken!)!,
      ...(scope !== undefined && { scope }),
    });
    resolver.sensitive(token.accessToken, spec.auth.user);
    auth = { user: spec.auth.user, accessToken: token.accessToken };
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
