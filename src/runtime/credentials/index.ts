/**
 * The daemon's OAuth2 credentials (manager.ts): access tokens for every server, cached and refreshed once for all
 * servers sharing a credential; refresh tokens kept encrypted (rotation, sign-in); needs-login until a sign-in.
 */
