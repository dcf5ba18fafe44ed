/**
 * From a server spec to a connection: secret references resolved (confined to --secrets-dir and the env prefix),
 * connection settings (TLS policy, CA, OAuth2 tokens), and verification against the real server.
 */
