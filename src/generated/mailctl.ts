/* eslint-disable */
// GENERATED from schema/mailctl.schema.json by scripts/gen-types.mjs.
// Do not edit: change the schema and run `npm run gen:types`.

/**
 * One YAML document under servers.d/: an EmailServer (an IMAP inbox polled into an email flow, or an
 * SMTP server that sends mail) or an EmailFlow (routes and a sink).
 */
export type MailctlResource = EmailServer | EmailFlow;
/**
 * An inbound IMAP server (polled; each message is routed by its email flow, copied to the storage
 * folder, then marked read) or an outbound SMTP server.
 */
export type EmailServer = {
  apiVersion?: 'mailctl/v1';
  kind: 'EmailServer';
  /**
   * imap (inbound) or smtp (outbound). POP3 is no longer supported.
   */
  type: 'imap' | 'smtp';
  /**
   * Display name, unique per type.
   */
  name: string;
  /**
   * Identity together with type (imap/support). Names where the server's mail is stored: a new IMAP
   * server that takes over an old short name takes over its stored mail.
   */
  shortName: string;
  description?: Text;
  /**
   * A host name or an IP literal.
   */
  host: string;
  /**
   * Default: IMAP 993 with TLS, 143 without; SMTP 465 with TLS, 587 without.
   */
  port?: number;
  /**
   * true: implicit TLS. false: STARTTLS is required (unless allowPlaintext).
   */
  tls?: boolean;
  /**
   * With tls: false, allow a connection without STARTTLS. Always reported as a warning.
   */
  allowPlaintext?: boolean;
  /**
   * Absolute path of a PEM CA bundle for a private CA. Verification is never switched off.
   */
  tlsCaFile?: string;
  /**
   * How to log in: basic (user + password reference) or oauth2.
   */
  auth: (BasicAuth | OAuth2Auth) & {
    type: 'basic' | 'oauth2';
  };
  /**
   * OAuth2 only: every apply that changes this server discards its cached access token, obtains a fresh
   * one with the newest refresh token (or grant) and verifies the login with it before the change is
   * accepted.
   */
  reauthenticateOnSave?: boolean;
  /**
   * IMAP only: the folder that is polled.
   */
  folder?: string;
  /**
   * IMAP only: where a copy of every processed message is kept. It must already exist.
   */
  storageFolder?: string;
  /**
   * IMAP only: TLS server name when host is an IP literal.
   */
  sniServerName?: string;
  /**
   * IMAP only: do not use COMPRESS=DEFLATE.
   */
  disableCompression?: boolean;
  /**
   * IMAP only: the EmailFlow that routes this server's mail. Required when enabled.
   */
  flow?: string;
  /**
   * IMAP only: cron expression (5 or 6 fields). Not more often than every 10 s.
   */
  pollSchedule?: string;
  /**
   * IMAP only: what mail already in the folder is processed on first apply.
   */
  backfill?: 'unseen' | 'all' | 'none';
  /**
   * IMAP only: bytes; larger messages are quarantined without downloading.
   */
  maxMessageSize?: number;
  /**
   * SMTP only: further From addresses this server sends for.
   *
   * @maxItems 100
   */
  additionalFromAddresses?: string[];
  /**
   * template: the SMTP server that sends company emails such as password resets.
   */
  role?: 'agent' | 'template';
  enabled?: boolean;
};
export type Text = string;
/**
 * A reference to a secret, resolved only inside the daemon: ${env:NAME} or ${file:/absolute/path}.
 * Never a literal secret.
 */
export type SecretReference = string;
/**
 * One glob, or a list of globs of which any may match.
 */
export type GlobList = Glob | [Glob, ...Glob[]];
/**
 * Case-insensitive glob: * matches any run of characters, ? one character. Not a regular expression.
 */
export type Glob = string;

export interface BasicAuth {
  type: 'basic';
  /**
   * IMAP: the mailbox whose mail the flow receives. SMTP: the default From address.
   */
  user: string;
  password: SecretReference;
}
export interface OAuth2Auth {
  type: 'oauth2';
  user: string;
  oauth2: OAuth2Credentials;
}
/**
 * An OAuth2 grant the daemon runs (refresh_token, client_credentials or jwt_bearer; a provider preset
 * fills in the well-known endpoints and scopes), or only an accessToken reference. Which combinations
 * are complete is checked by `mailctl validate` (oauth2-* codes).
 */
export interface OAuth2Credentials {
  /**
   * microsoft (Entra ID, needs tenant) or google fill in the token, device and authorization endpoints
   * and the mail scopes; generic (the default) takes them from the fields below.
   */
  provider?: 'microsoft' | 'google' | 'generic';
  /**
   * Microsoft only: the tenant's directory id (GUID) or verified domain; its endpoints are per tenant.
   */
  tenant?: string;
  /**
   * refresh_token (default: a person's delegated access, from a refreshToken reference or `mailctl auth
   * login`), client_credentials (app-only, with clientSecret or clientCertificate + clientKey),
   * jwt_bearer (a service account's signed assertion with clientKey, e.g. Google domain-wide
   * delegation).
   */
  grant?: 'refresh_token' | 'client_credentials' | 'jwt_bearer';
  /**
   * The token endpoint (default: the provider's).
   */
  tokenUrl?: string;
  /**
   * The device authorization endpoint for `mailctl auth login` (RFC 8628; default: the provider's).
   */
  deviceAuthorizationUrl?: string;
  /**
   * The authorization endpoint for `mailctl auth login --browser` (PKCE, loopback redirect; default: the
   * provider's).
   */
  authorizationUrl?: string;
  /**
   * The app registration's client id (jwt_bearer: the service account, e.g. its client_email).
   */
  clientId?: string;
  /**
   * A reference to a secret, resolved only inside the daemon: ${env:NAME} or ${file:/absolute/path}.
   * Never a literal secret.
   */
  clientSecret?: string;
  /**
   * A reference to a secret, resolved only inside the daemon: ${env:NAME} or ${file:/absolute/path}.
   * Never a literal secret.
   */
  clientCertificate?: string;
  /**
   * A reference to a secret, resolved only inside the daemon: ${env:NAME} or ${file:/absolute/path}.
   * Never a literal secret.
   */
  clientKey?: string;
  /**
   * A reference to a secret, resolved only inside the daemon: ${env:NAME} or ${file:/absolute/path}.
   * Never a literal secret.
   */
  refreshToken?: string;
  /**
   * Scopes to ask for (default: the provider's mail scopes).
   */
  scope?: string;
  /**
   * A reference to a secret, resolved only inside the daemon: ${env:NAME} or ${file:/absolute/path}.
   * Never a literal secret.
   */
  accessToken?: string;
}
/**
 * Routes the mail of IMAP servers to queues (first matching route wins) and delivers it to one sink.
 */
export interface EmailFlow {
  apiVersion?: 'mailctl/v1';
  kind: 'EmailFlow';
  name: string;
  description?: Text;
  /**
   * First match wins; exactly one route without `when`, last, is the default.
   *
   * @minItems 1
   * @maxItems 200
   */
  routes: [Route, ...Route[]];
  /**
   * What happens to auto-replies and bounces: deliver (default; flagged in the metadata), send to
   * another queue, or drop.
   */
  autoReplies?:
    | ('deliver' | 'drop')
    | {
        queue: string;
      };
  /**
   * Exactly one sink.
   */
  deliver: {
    /**
     * Absolute, or relative to the daemon's state folder.
     */
    directory?: string;
    webhook?: {
      url: string;
      secret: SecretReference;
    };
    /**
     * Rows in a table of the daemon's PostgreSQL store (needs `mailctl run --store postgres://…`),
     * inserted in the same transaction as the checkpoint.
     */
    postgres?: {
      /**
       * Created by the daemon in the store's schema at apply.
       */
      table?: string;
    };
  };
}
export interface Route {
  queue: string;
  /**
   * Every matcher given must match (glob on bare addresses and text).
   */
  when?: {
    from?: GlobList;
    /**
     * One glob, or a list of globs of which any may match.
     */
    to?: Glob | [Glob, ...Glob[]];
    subject?: GlobList;
    header?: {
      name: string;
      value: GlobList;
    };
  };
}
