import { open, rename, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  browserSignIn,
  buildAuthorizationUrl,
  createPkce,
  createState,
  pollDeviceAuthorization,
  startDeviceAuthorization,
  startLoopbackRedirect,
  type TokenSet,
} from '../../adapters/oauth2/index.js';
import type {
  CredentialError,
  CredentialStatus,
  DeviceSignInStarted,
  SignInParameters,
  SignInResult,
} from '../../api/index.js';
import { stringOption, type Command } from '../command.js';
import { DAEMON_OPTIONS, daemonFor, type DaemonClient } from '../daemon-client.js';
import { EXIT, UserError } from '../errors.js';
import { painter, show, type Output } from '../output.js';

const USAGE =
  'mailctl auth login TYPE/SHORTNAME [--browser] [--out FILE] [--approve-rebind] | status  [--server URL] ' +
  '[--state-dir DIR] [--token-file FILE] [--format text|json|github]';

/** A person signs in within this time, or the sign-in ends (the device code's own expiry is usually shorter). */
const SIGN_IN_TIMEOUT_MS = 30 * 60_000;

const errorOf = (body: unknown, status: number): string => {
  const error = (body as { error?: unknown } | null)?.error;
  return typeof error === 'string' ? error : `HTTP ${status}`;
};

/** Instructions for the person at the terminal: stdout, or stderr when stdout carries JSON. */
const tell =
  (output: Output) =>
  (text: string): void =>
    output.format === 'json' ? output.err(text) : output.out(text);

/** Who signs in, for the daemon's apply log (a container's user may have no name: its uid then). */
function who(): string {
  let user: string;
  try {
    user = os.userInfo().username;
  } catch {
    user = `uid ${process.getuid?.() ?? '?'}`;
  }
  return `${user}@${os.hostname()}`;
}

/**
 * `auth login`: the daemon runs the device sign-in (it holds the client secret; the CLI shows the URL and the code and
 * waits), or with `--browser` the CLI runs the authorization code grant with PKCE on a loopback redirect and hands
 * the code to the daemon. The refresh token never crosses the API; with `--out FILE` (a public client only) the CLI
 * exchanges the code itself and writes the token to FILE (0600) for a secret manager. `auth status`: every credential.
 */
export const authCommand: Command = {
  name: 'auth',
  summary: 'Sign an OAuth2 mailbox in (the daemon keeps the token), or list the OAuth2 credentials',
  usage: USAGE,
  options: {
    ...DAEMON_OPTIONS,
    browser: { type: 'boolean' },
    out: { type: 'string' },
    'approve-rebind': { type: 'boolean' },
  },
  subcommands: ['login', 'status'],
  positionals: 2,
  async run({ values, positionals, output, io }) {
    const [sub, server] = positionals;
    if (sub !== 'login' && sub !== 'status')
      throw new UserError(
        `${sub === undefined ? 'missing subcommand' : `unknown subcommand "${sub}"`}\nusage: ${USAGE}`,
      );
    const client = await daemonFor(values, io.env);
    if (sub === 'status') {
      if (server !== undefined) throw new UserError(`unexpected argument "${server}"\nusage: ${USAGE}`);
      return authStatus(client, output);
    }
    if (!server || !/^(imap|smtp)\/[A-Za-z0-9][A-Za-z0-9._@+-]*$/.test(server))
      throw new UserError(`login needs the server: TYPE/SHORTNAME, e.g. imap/support\nusage: ${USAGE}`);
    const approveRebind = values['approve-rebind'] === true;
    const out = stringOption(values, 'out');
    if (out !== undefined) return signInToFile(client, output, server, out, values.browser === true);
    if (values.browser === true) return browserLogin(client, output, server, approveRebind);
    return deviceLogin(client, output, server, approveRebind);
  },
};

/** Shows the outcome of a sign-in the daemon kept; exit 0 when it succeeded. */
function finished(output: Output, server: string, result: SignInResult): number {
  const paint = painter(output.color);
  show(
    output,
    { ...result },
    {
      text: () =>
        result.ok
          ? output.out(
              paint('green', `signed in: ${result.credential}, used by ${result.servers.join(', ') || server}`),
            )
          : output.err(paint('red', `sign-in failed: ${describeError(result.error)}`)),
    },
  );
  return result.ok ? EXIT.ok : EXIT.error;
}

const describeError = (error: CredentialError | undefined): string => {
  if (!error) return 'no reason given';
  const provider = error.providerCode && error.providerCode !== error.code ? ` (${error.providerCode})` : '';
  return `${error.code}${provider}: ${error.message}`;
};

async function deviceLogin(client: DaemonClient, output: Output, server: string, approveRebind: boolean) {
  const onLine = (line: unknown) => {
    const device = line as DeviceSignInStarted;
    if (device.type !== 'device') return;
    const where = device.verificationUriComplete ?? device.verificationUri;
    // the instructions are for the person at the terminal; JSON output keeps stdout for the result
    const say = tell(output);
    say(`To sign in ${server} (${device.credential}), open ${where}`);
    say(`and enter the code ${device.userCode} (valid until ${device.expiresAt}).`);
    if (device.message) say(device.message);
    say('Waiting for the sign-in...');
  };
  const { status, body } = await client.request<SignInResult & { error?: unknown }>(
    'POST',
    `/v1/credentials/${server}/login`,
    { who: who(), ...(approveRebind && { approveRebind: true }) },
    SIGN_IN_TIMEOUT_MS,
    onLine,
  );
  if (status !== 200 || body.type !== 'result')
    throw new UserError(`the daemon at ${client.url} did not sign ${server} in: ${errorOf(body, status)}`);
  return finished(output, server, body);
}

async function parametersOf(client: DaemonClient, server: string): Promise<SignInParameters> {
  const { status, body } = await client.request<SignInParameters>('GET', `/v1/credentials/${server}`);
  if (status !== 200)
    throw new UserError(`the daemon at ${client.url} cannot sign ${server} in: ${errorOf(body, status)}`);
  return body;
}

/** Tells the person where to sign in: the URL, on stdout (stderr with JSON output). */
const showUrl = (output: Output, server: string, url: string) => {
  const say = tell(output);
  say(`To sign in ${server}, open this URL in a browser on this machine:`);
  say(url);
};

async function browserLogin(client: DaemonClient, output: Output, server: string, approveRebind: boolean) {
  const p = await parametersOf(client, server);
  if (!p.authorizationUrl) throw new UserError(`${server} has no authorizationUrl: sign in without --browser`);
  const pkce = createPkce();
  const state = createState();
  const loopback = await startLoopbackRedirect({ state, timeoutMs: SIGN_IN_TIMEOUT_MS });
  let code: string;
  try {
    showUrl(
      output,
      server,
      buildAuthorizationUrl({
        authorizationUrl: p.authorizationUrl,
        clientId: p.clientId,
        redirectUri: loopback.redirectUri,
        scope: p.scope ?? undefined,
        state,
        codeChallenge: pkce.challenge,
        loginHint: p.loginHint,
        extraParams: p.extraParams,
      }),
    );
    code = await loopback.code.catch((err: Error) => {
      throw new UserError(`sign-in failed: ${err.message}`);
    });
  } finally {
    await loopback.close();
  }
  const { status, body } = await client.request<SignInResult & { error?: unknown }>(
    'POST',
    `/v1/credentials/${server}/login`,
    {
      who: who(),
      code,
      codeVerifier: pkce.verifier,
      redirectUri: loopback.redirectUri,
      ...(approveRebind && { approveRebind: true }),
    },
  );
  if (status !== 200 || body.type !== 'result')
    throw new UserError(`the daemon at ${client.url} did not take the sign-in of ${server}: ${errorOf(body, status)}`);
  return finished(output, server, body);
}

/**
 * `--out FILE`: a public client's sign-in run by the CLI alone; the refresh token goes to FILE (0600), not the daemon.
 */
async function signInToFile(client: DaemonClient, output: Output, server: string, file: string, browser: boolean) {
  const p = await parametersOf(client, server);
  if (!p.publicClient)
    throw new UserError(
      `${server} has a client secret or certificate, which only the daemon reads: sign in without --out`,
    );
  const scope = p.scope ?? undefined;
  let token: TokenSet;
  if (browser) {
    if (!p.authorizationUrl) throw new UserError(`${server} has no authorizationUrl: sign in without --browser`);
    token = await browserSignIn({
      clientId: p.clientId,
      authorizationUrl: p.authorizationUrl,
      tokenUrl: p.tokenUrl,
      scope,
      loginHint: p.loginHint,
      extraParams: p.extraParams,
      loopback: { timeoutMs: SIGN_IN_TIMEOUT_MS },
      open: (url) => showUrl(output, server, url),
    }).catch(signInFailed);
  } else {
    if (!p.deviceAuthorizationUrl) throw new UserError(`${server} has no deviceAuthorizationUrl: add --browser`);
    if (!p.deviceFlowForMail)
      throw new UserError(`the provider does not allow the device sign-in for mail: add --browser`);
    const device = await startDeviceAuthorization({
      clientId: p.clientId,
      deviceAuthorizationUrl: p.deviceAuthorizationUrl,
      scope,
    }).catch(signInFailed);
    const say = tell(output);
    say(`To sign in ${server}, open ${device.verificationUriComplete ?? device.verificationUri}`);
    say(`and enter the code ${device.userCode}. Waiting for the sign-in...`);
    token = await pollDeviceAuthorization({ clientId: p.clientId, tokenUrl: p.tokenUrl }, device).catch(signInFailed);
  }
  if (!token.refreshToken)
    throw new UserError('the provider gave no refresh token: the scope must include offline_access');
  await writePrivateFile(file, `${token.refreshToken}\n`);
  // only the apply log's record of it; the token is written
  await client.request('POST', `/v1/credentials/${server}/login`, { who: who(), outFile: true }).catch(() => undefined);
  show(
    output,
    { ok: true, credential: p.credential, out: path.resolve(file) },
    {
      text: () =>
        output.out(
          `signed in: the refresh token of ${server} is in ${file} (0600); point auth.oauth2.refreshToken at ` +
            'it and apply',
        ),
    },
  );
  return EXIT.ok;
}

const signInFailed = (err: Error): never => {
  throw new UserError(`sign-in failed: ${err.message}`);
};

/** Writes `text` to `file` readable by its owner only, at once (a temporary file renamed into place). */
async function writePrivateFile(file: string, text: string): Promise<void> {
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  const handle = await open(temp, 'wx', 0o600).catch((err: Error) => {
    throw new UserError(`cannot write ${file}: ${err.message}`);
  });
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temp, file).catch(async (err: Error) => {
    await rm(temp, { force: true });
    throw new UserError(`cannot write ${file}: ${err.message}`);
  });
}

async function authStatus(client: DaemonClient, output: Output): Promise<number> {
  const { status, body } = await client.request<{ credentials?: CredentialStatus[] }>('GET', '/v1/credentials');
  if (status !== 200 || !Array.isArray(body.credentials))
    throw new UserError(
      `the daemon at ${client.url} did not list its credentials: ${errorOf(body, status)}`,
      EXIT.error,
      'daemon-error',
    );
  const list = body.credentials;
  show(output, { credentials: list }, { text: () => renderCredentials(output, list) });
  return EXIT.ok;
}

function renderCredentials(output: Output, list: CredentialStatus[]): void {
  const paint = painter(output.color);
  if (!list.length) output.out('no OAuth2 credentials');
  for (const c of list) {
    const state = c.needsLogin ? paint('red', 'needs sign-in') : c.lastError ? paint('red', 'failing') : 'ok';
    output.out(`${c.id}  ${c.grant}  ${c.provider}  ${state}  ${c.servers.join(', ')}`);
    const token = c.accessTokenExpires ? `access token until ${c.accessTokenExpires}` : 'no access token held';
    output.out(`    last refresh ${c.lastRefresh ?? 'never (since the daemon started)'}, ${token}`);
    if (c.refreshToken)
      output.out(
        `    refresh token: ${c.refreshToken.source}${c.refreshToken.since ? ` since ${c.refreshToken.since}` : ''}`,
      );
    if (c.lastError) output.out(paint('red', `    last error: ${describeError(c.lastError)} (${c.lastError.at})`));
    if (c.needsLogin) output.out(`    run: mailctl auth login ${c.servers[0] ?? 'TYPE/SHORTNAME'}`);
  }
}
