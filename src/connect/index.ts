/**
 * From a server spec to a connection: secret references resolved (confined to --secrets-dir and the env prefix), CA
 * files confined to --ca-dir (confine.ts), connection settings (TLS policy, CA, OAuth2 tokens), verification against
 * the real server, and the daemon's credentials key (credentials-key.ts: secret identities, kept credentials).
 */
