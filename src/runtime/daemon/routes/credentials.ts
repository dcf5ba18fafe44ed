/**
 * OAuth2 credentials and sign-ins (bearer token, like every `/v1/*` route). No token ever crosses the API:
 *   GET  /v1/credentials                             → { credentials: CredentialStatus[] }   (mailctl auth status)
 *   GET  /v1/credentials/<type>/<shortName>          → SignInParameters: what a sign-in in the CLI needs, no secret
 *   POST /v1/credentials/<type>/<shortName>/login    (mailctl auth login)
 *        {}                                  with Accept: application/x-ndjson: the daemon runs the device sign-in
 *                                            (it holds the client secret) and streams what the person must do, then
 *                                            the result
 *        {code, codeVerifier, redirectUri}   a browser sign-in the CLI ran (PKCE, loopback redirect): the daemon
 *                                            exchanges the code; from a loopback address only
 *        {outFile: true}                     the CLI signed in and wrote the token to a file: recorded only
 * A sign-in uses the server as the folder has it, and is refused while that would send the client secret to an
 * endpoint the server's bindings do not have (`approveRebind`, like `apply --approve-rebind`). Every sign-in and
 * failed sign-in is recorded in the apply log: who, when, which credential.
 */
import type { IncomingMessage } from 'node:http';
import { MailError } from '../../../adapters/connection.js';
import {
  exchangeAuthorizationCode,
  pollDeviceAuthorization,
  providerPreset,
  startDeviceAuthorization,
  type TokenSet,
} from '../../../adapters/oauth2/index.js';
import {
  API_FORMAT_VERSION,
  NDJSON,
  type CredentialError,
  type DeviceSignInStarted,
  type SignInParameters,
  type SignInRequest,
  type SignInResult,
} from '../../../api/index.js';
import { isLoopback } from '../../../api/discovery.js';
import type { ServerSpec } from '../../../config/model.js';
import { credentialOf, endpointsOf, type OAuth2CredentialRef } from '../../../config/oauth2.js';
import type { SecretResolver } from '../../../connect/secrets.js';
import type { OAuth2Credentials } from '../../../generated/mailctl.js';
import type { ApplyLogEntry } from '../../../store/ports.js';
import { clientOf, scopeOf, type Credentials } from '../../credentials/manager.js';
import { HttpError, type Route } from '../http.js';

export interface CredentialRouteDeps {
  credentials: Credentials;
  resolver: SecretResolver;
  /** Every server the daemon knows (applied, and in the folder), by id. */
  servers: () => Map<string, ServerSpec>;
  /** The folder's configuration of a server for a sign-in, and the rebinds it would need; or why there is none. */
  desiredServer: (id: string, approved: boolean) => Promise<{ spec: ServerSpec; rebinds: string[] } | string>;
  recordSignIn: (entry: Omit<ApplyLogEntry, 'revision' | 'planDigest'>) => Promise<void>;
  draining: () => boolean;
}

const SERVER = '(imap|smtp)/([A-Za-z0-9][A-Za-z0-9._@+-]{0,249})';
const ONE = new RegExp(`^/v1/credentials/${SERVER}$`);
const LOGIN = new RegExp(`^/v1/credentials/${SERVER}/login$`);
const serverOf = (url: URL, pattern: RegExp) => {
  const m = pattern.exec(url.pathname)!;
  return `${m[1]}/${m[2]}`;
};

const errorOf = (err: unknown): CredentialError => {
  const e = err instanceof MailError ? err : new MailError('config', (err as Error).message);
  return {
    code: e.code ?? e.failureClass,
    providerCode: e.providerCode ?? null,
    message: e.message,
    at: new Date().toISOString(),
  };
};

/** The sign-in request as the CLI sends it, read defensively. */
function signInRequestOf(raw: unknown): SignInRequest {
  const body = (raw ?? {}) as Record<string, unknown>;
  const text = (v: unknown, max: number) => (typeof v === 'string' && v.length > 0 && v.length <= max ? v : undefined);
  const who = text(body.who, 100)?.replace(/[^\x20-\x7e]/g, '?');
  const code = text(body.code, 4096);
  const codeVerifier = text(body.codeVerifier, 128);
  const redirectUri = text(body.redirectUri, 2048);
  return {
    ...(who !== undefined && { who }),
    ...(body.approveRebind === true && { approveRebind: true }),
    ...(code !== undefined && { code }),
    ...(codeVerifier !== undefined && { codeVerifier }),
    ...(redirectUri !== undefined && { redirectUri }),
    ...(body.outFile === true && { outFile: true }),
  };
}

export function credentialRoutes(deps: CredentialRouteDeps): Route[] {
  /** The servers of the daemon that use `credential`. */
  const usersOf = (credential: string) =>
    [...deps.servers()].filter(([, spec]) => credentialOf(spec)?.id === credential).map(([id]) => id);

  /** The folder's configuration of `id` for a sign-in, checked: a refresh-token grant, no unapproved rebind. */
  async function signInTarget(id: string, approved: boolean) {
    const found = await deps.desiredServer(id, approved);
    if (typeof found === 'string') throw new HttpError(404, found);
    const credential = credentialOf(found.spec);
    if (!credential || found.spec.auth.type !== 'oauth2')
      throw new HttpError(400, `${id} has no complete OAuth2 grant to sign in (mailctl validate says why)`);
    if (credential.grant !== 'refresh_token')
      throw new HttpError(400, `${id} uses ${credential.grant} (app-only): there is nobody to sign in`);
    if (found.rebinds.length)
      throw new HttpError(
        409,
        `${id} as the folder has it would send ${found.rebinds.join(', ')} to endpoints it was not applied ` +
          'with; sign in with --approve-rebind to allow it',
      );
    return { spec: found.spec, oauth2: found.spec.auth.oauth2, credential };
  }

  /** The sign-in in the apply log, succeeded or not. */
  const record = (
    credential: OAuth2CredentialRef,
    how: string,
    who: string | undefined,
    outcome: { ok: true } | { ok: false; error: CredentialError },
  ) =>
    deps.recordSignIn({
      time: new Date().toISOString(),
      trigger: `auth login (${how}) by ${who ?? 'unknown'}`,
      result: outcome.ok ? 'signed-in' : `sign-in-failed: ${outcome.error.code}`,
      servers: Object.fromEntries(usersOf(credential.id).map((server) => [server, credential.id])),
    });

  /** Keeps the sign-in's refresh token and answers with the result. */
  async function finish(
    target: { spec: ServerSpec; credential: OAuth2CredentialRef },
    secrets: ReadonlyMap<string, string>,
    signIn: () => Promise<TokenSet>,
    how: string,
    who: string | undefined,
  ): Promise<SignInResult> {
    const { credential } = target;
    try {
      await deps.credentials.signIn(target.spec, secrets, await signIn());
      await record(credential, how, who, { ok: true });
      return { type: 'result', ok: true, credential: credential.id, servers: usersOf(credential.id) };
    } catch (err) {
      const error = errorOf(err);
      await record(credential, how, who, { ok: false, error });
      return { type: 'result', ok: false, credential: credential.id, servers: usersOf(credential.id), error };
    }
  }

  const resolve = async (spec: ServerSpec) =>
    deps.resolver.resolveAll(spec).catch((err: Error) => {
      throw new HttpError(422, `${err.message}: the sign-in needs the server's secrets`);
    });

  return [
    {
      method: 'GET',
      path: '/v1/credentials',
      handler: async () => {
        const byId = new Map<string, { credential: OAuth2CredentialRef; servers: string[] }>();
        for (const [id, spec] of [...deps.servers()].sort(([a], [b]) => (a < b ? -1 : 1))) {
          const credential = credentialOf(spec);
          if (!credential) continue;
          const entry = byId.get(credential.id) ?? { credential, servers: [] };
          entry.servers.push(id);
          byId.set(credential.id, entry);
        }
        const credentials = await Promise.all(
          [...byId.values()].map(({ credential, servers }) => deps.credentials.statusNow(credential, servers)),
        );
        return { status: 200, body: { formatVersion: API_FORMAT_VERSION, credentials } };
      },
    },
    {
      method: 'GET',
      path: ONE,
      handler: async (_req, _raw, url) => {
        const id = serverOf(url, ONE);
        const { oauth2, credential, spec } = await signInTarget(id, true);
        const endpoints = endpointsOf(oauth2);
        const parameters: SignInParameters = {
          credential: credential.id,
          server: id,
          clientId: credential.clientId,
          publicClient: oauth2.clientSecret === undefined && oauth2.clientCertificate === undefined,
          tokenUrl: credential.tokenUrl,
          authorizationUrl: endpoints.authorizationUrl ?? null,
          deviceAuthorizationUrl: endpoints.deviceAuthorizationUrl ?? null,
          deviceFlowForMail: deviceFlowForMail(oauth2),
          scope: scopeOf(oauth2, credential) ?? null,
          loginHint: spec.auth.user,
          // Google issues a refresh token only for offline access, and again only when asked to consent
          extraParams: oauth2.provider === 'google' ? { access_type: 'offline', prompt: 'consent' } : {},
        };
        return { status: 200, body: { formatVersion: API_FORMAT_VERSION, ...parameters } };
      },
    },
    {
      method: 'POST',
      path: LOGIN,
      handler: async (req, raw, url) => {
        if (deps.draining()) throw new HttpError(503, 'the daemon is shutting down');
        const id = serverOf(url, LOGIN);
        const request = signInRequestOf(raw);
        const target = await signInTarget(id, request.approveRebind === true);
        const { oauth2, credential, spec } = target;
        if (request.outFile) {
          await record(credential, 'token written to a file by the CLI', request.who, { ok: true });
          return { status: 200, body: { formatVersion: API_FORMAT_VERSION, recorded: true } };
        }
        const secrets = await resolve(spec);
        const client = clientOf(oauth2, secrets);
        if (request.code !== undefined) {
          if (!isLoopback(peerOf(req)))
            throw new HttpError(403, 'a browser sign-in is handed over from this machine only (a loopback address)');
          if (!request.codeVerifier || !request.redirectUri)
            throw new HttpError(400, 'a browser sign-in needs code, codeVerifier and redirectUri');
          for (const value of [request.code, request.codeVerifier]) deps.resolver.sensitive(value);
          const result = await finish(
            target,
            secrets,
            () =>
              exchangeAuthorizationCode({
                ...client,
                tokenUrl: credential.tokenUrl,
                code: request.code!,
                codeVerifier: request.codeVerifier!,
                redirectUri: request.redirectUri!,
              }),
            'browser',
            request.who,
          );
          return { status: 200, body: { formatVersion: API_FORMAT_VERSION, ...result } };
        }
        const { deviceAuthorizationUrl } = endpointsOf(oauth2);
        if (!deviceAuthorizationUrl)
          throw new HttpError(400, `${id} has no deviceAuthorizationUrl: sign in with mailctl auth login --browser`);
        if (!deviceFlowForMail(oauth2))
          throw new HttpError(
            400,
            `${oauth2.provider} does not allow the device sign-in for mail: sign in with mailctl auth login ` +
              `${id} --browser`,
          );
        if (!req.headers.accept?.includes(NDJSON))
          throw new HttpError(406, `a device sign-in answers with a stream: ask with Accept: ${NDJSON}`);
        // the person may take minutes; a client that gives up (the CLI interrupted) ends the sign-in
        const gone = new AbortController();
        req.socket.once('close', () => gone.abort());
        const scope = scopeOf(oauth2, credential);
        const device = await startDeviceAuthorization({
          ...client,
          deviceAuthorizationUrl,
          scope,
          signal: gone.signal,
        }).catch((err: unknown) => {
          throw new HttpError(502, `the device sign-in could not start: ${errorOf(err).message}`);
        });
        deps.resolver.sensitive(device.deviceCode);
        const started: DeviceSignInStarted = {
          type: 'device',
          credential: credential.id,
          verificationUri: device.verificationUri,
          verificationUriComplete: device.verificationUriComplete ?? null,
          userCode: device.userCode,
          expiresAt: new Date(device.expiresAt).toISOString(),
          message: device.message ?? null,
        };
        const stream = async (write: (line: unknown) => void) => {
          write(started);
          const result = await finish(
            target,
            secrets,
            () => pollDeviceAuthorization({ ...client, tokenUrl: credential.tokenUrl, signal: gone.signal }, device),
            'device',
            request.who,
          );
          write({ formatVersion: API_FORMAT_VERSION, ...result });
        };
        return { status: 200, body: null, stream };
      },
    },
  ];
}

/** Whether the provider lets the device flow ask for the mail scope (Google does not). */
function deviceFlowForMail(o: OAuth2Credentials): boolean {
  return o.provider === 'google' ? providerPreset('google', 'imap').deviceFlowForMail : true;
}

/** The client's address as this socket sees it (an IPv4 address may come IPv6-mapped). */
function peerOf(req: IncomingMessage): string {
  return (req.socket.remoteAddress ?? '').replace(/^::ffff:/, '');
}
