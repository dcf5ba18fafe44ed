import { open, readFile } from 'node:fs/promises';
import path from 'node:path';
import { NDJSON } from '../api/apply.js';
import { DISCOVERY_FILE, isLoopback, stateDirFrom, TOKEN_FILE } from '../api/discovery.js';
import type { ObservedState } from '../plan/model.js';
import type { StoreKind } from '../config/sinks.js';
import { checkObservedState, checkStore } from '../plan/planfile.js';
import { stringOption, type Values } from './command.js';
import { EXIT, UserError } from './errors.js';

export interface DaemonLocation {
  server?: string;
  stateDir?: string;
  tokenFile?: string;
}

/** How every command that talks to the daemon finds it (declared once; `mailctl <command> --help` lists them). */
export const DAEMON_OPTIONS = {
  server: { type: 'string' },
  'state-dir': { type: 'string' },
  'token-file': { type: 'string' },
} as const;

/** The daemon named by a command's `--server`, `--state-dir` and `--token-file`. */
export const daemonLocation = (values: Values): DaemonLocation => {
  const server = stringOption(values, 'server');
  const stateDir = stringOption(values, 'state-dir');
  const tokenFile = stringOption(values, 'token-file');
  return {
    ...(server !== undefined && { server }),
    ...(stateDir !== undefined && { stateDir }),
    ...(tokenFile !== undefined && { tokenFile }),
  };
};

/** The daemon a command's options point at, ready for requests. */
export const daemonFor = (values: Values, env: NodeJS.ProcessEnv): Promise<DaemonClient> =>
  locateDaemon(daemonLocation(values), env);

/** A connection to the daemon's API (`/v1/*`, bearer token). */
export interface DaemonClient {
  url: string;
  request<T>(
    method: 'GET' | 'POST',
    route: string,
    body?: unknown,
    timeoutMs?: number,
    /** Asks for a streamed answer (NDJSON): each line before the answer goes here; `body` is the final line. */
    onLine?: (line: unknown) => void,
  ): Promise<{ status: number; body: T }>;
}

async function readTrimmed(file: string): Promise<string | undefined> {
  return readFile(file, 'utf8').then(
    (s) => s.trim(),
    () => undefined,
  );
}

const isLoopbackUrl = (url: string): boolean => {
  try {
    return isLoopback(new URL(url).hostname);
  } catch {
    return false;
  }
};

/** The URL in a `daemon.json`, and whether its file may be trusted with a token from elsewhere (or why not). */
async function readDiscovery(file: string): Promise<{ url: string | undefined; untrusted: string | null } | null> {
  const handle = await open(file, 'r').catch(() => null);
  if (!handle) return null;
  try {
    const info = await handle.stat();
    const text = await handle.readFile('utf8');
    let url: string | undefined;
    try {
      url = (JSON.parse(text) as { url?: string }).url;
    } catch {
      /* not what a daemon writes: no URL */
    }
    const untrusted =
      info.uid !== process.getuid?.()
        ? `${file} is not owned by you`
        : (info.mode & 0o022) !== 0
          ? `${file} may be written by others`
          : null;
    return { url, untrusted };
  } finally {
    await handle.close();
  }
}

/**
 * Finds the daemon: `--server`, then MAILCTL_SERVER, then `<state>/daemon.json`; the token: `--token-file`,
 * then MAILCTL_TOKEN, then `<state>/api-token` (state folder from `--state-dir` or MAILCTL_STATE_DIR).
 *
 * A token from `--token-file` or MAILCTL_TOKEN goes to a URL found in a `daemon.json` only when the state folder was
 * named (`--state-dir`, MAILCTL_STATE_DIR), the URL is loopback and the file is yours and not writable by others: the
 * default state folder `./.mailctl` may come from a repository, whose `daemon.json` could point anywhere. The token
 * of the same state folder (`api-token`) goes to its `daemon.json` as before.
 */
export async function locateDaemon(where: DaemonLocation, env: NodeJS.ProcessEnv): Promise<DaemonClient> {
  if (where.server === '')
    throw new UserError('--server must not be empty: give the daemon URL, or leave --server out to find the daemon');
  const stateDir = stateDirFrom(where.stateDir, env);
  let url = where.server ?? (env.MAILCTL_SERVER || undefined);
  const discoveryFile = path.join(stateDir, DISCOVERY_FILE);
  const discovered = url === undefined ? await readDiscovery(discoveryFile) : null;
  url ??= discovered?.url;
  if (!url) {
    throw new UserError(
      `no daemon found: give --server URL, set MAILCTL_SERVER, or run this where ${discoveryFile} exists (mailctl run)`,
      1,
      'daemon-unreachable',
    );
  }
  const tokenFrom = where.tokenFile ? `--token-file ${where.tokenFile}` : env.MAILCTL_TOKEN ? 'MAILCTL_TOKEN' : null;
  if (discovered && tokenFrom) {
    const named = where.stateDir !== undefined || Boolean(env.MAILCTL_STATE_DIR);
    const refusal = !named
      ? 'the state folder was not named (--state-dir or MAILCTL_STATE_DIR)'
      : !isLoopbackUrl(url)
        ? `${url} is not a loopback address`
        : discovered.untrusted;
    if (refusal)
      throw new UserError(
        `not sending the token from ${tokenFrom} to ${url}, found in ${discoveryFile}: ${refusal}; give --server URL`,
        1,
        'token-refused',
      );
  }
  const token = where.tokenFile
    ? await readTrimmed(where.tokenFile).then((t) => t ?? failToken(`cannot read --token-file ${where.tokenFile}`))
    : env.MAILCTL_TOKEN || (await readTrimmed(path.join(stateDir, TOKEN_FILE)));
  const base = url.replace(/\/+$/, '');
  return {
    url: base,
    async request<T>(
      method: 'GET' | 'POST',
      route: string,
      body?: unknown,
      timeoutMs = 120_000,
      onLine?: (line: unknown) => void,
    ) {
      const headers: Record<string, string> = {
        ...(token && { authorization: `Bearer ${token}` }),
        ...(body !== undefined && { 'content-type': 'application/json' }),
        ...(onLine && { accept: NDJSON }),
      };
      let response: { status: number; text: string };
      try {
        response = await send(
          `${base}${route}`,
          method,
          headers,
          body === undefined ? undefined : JSON.stringify(body),
          timeoutMs,
          onLine && ndjsonLines(onLine),
        );
      } catch (err) {
        throw new UserError(
          `cannot reach the daemon at ${base} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
          1,
          'daemon-unreachable',
        );
      }
      let parsed: unknown = response.text;
      try {
        // a streamed answer ends with the result line; the lines before it went to `onLine`
        const text = onLine ? (response.text.trimEnd().split('\n').at(-1) ?? '') : response.text;
        parsed = text ? JSON.parse(text) : {};
      } catch {
        /* non-JSON answer: keep the text for the message */
      }
      if (response.status === 401)
        throw new UserError(
          `the daemon at ${base} refused the API token (give --token-file, MAILCTL_TOKEN or --state-dir)`,
          1,
          'unauthorized',
        );
      return { status: response.status, body: parsed as T };
    },
  };
}

/**
 * Splits a stream of NDJSON chunks into lines and hands each line before the answer (apply progress, a sign-in's
 * instructions), parsed, to `onLine` as it arrives.
 */
function ndjsonLines(onLine: (line: unknown) => void): (chunk: string) => void {
  let buffered = '';
  return (chunk) => {
    buffered += chunk;
    const lines = buffered.split('\n');
    buffered = lines.pop() ?? '';
    for (const line of lines.filter(Boolean)) {
      const event = JSON.parse(line) as { type?: unknown };
      if (event.type !== 'result' && event.type !== 'error') onLine(event);
    }
  };
}

/**
 * One HTTP request with node:http(s) rather than fetch(): the CLI makes one or two requests per run, and loading
 * fetch's implementation cost ~26 ms of each command's start (measured), which `apply` waits for.
 */
async function send(
  url: string,
  method: string,
  headers: Record<string, string>,
  body: string | undefined,
  timeoutMs: number,
  onData?: (chunk: string) => void,
): Promise<{ status: number; text: string }> {
  const { request } = url.startsWith('https:') ? await import('node:https') : await import('node:http');
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method,
        headers: { ...headers, ...(body !== undefined && { 'content-length': String(Buffer.byteLength(body)) }) },
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => {
          chunks.push(chunk);
          if (onData && res.headers['content-type']?.startsWith(NDJSON)) onData(chunk.toString('utf8'));
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () =>
      req.destroy(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: 'ETIMEDOUT' })),
    );
    req.on('error', reject);
    req.end(body);
  });
}

function failToken(message: string): never {
  throw new UserError(message);
}

/**
 * Asks the daemon for its running state (`GET /v1/state`) and checks the answer before anyone plans against it; with
 * the kind of its store (null from a daemon that does not say).
 */
export async function fetchObservedState(
  client: DaemonClient,
): Promise<{ state: ObservedState; store: StoreKind | null }> {
  const { status, body } = await client.request<unknown>('GET', '/v1/state', undefined, 30_000);
  if (status !== 200) {
    const error = (body as { error?: unknown } | null)?.error;
    const message = typeof error === 'string' ? error : (error as { message?: unknown } | undefined)?.message;
    const detail =
      typeof message === 'string' ? message : typeof body === 'string' && body ? body.slice(0, 200) : `HTTP ${status}`;
    throw new UserError(`the daemon at ${client.url} did not return its state: ${detail}`, EXIT.error, 'daemon-error');
  }
  const answer = body as { formatVersion?: unknown; state?: unknown; store?: { kind?: StoreKind } } | null;
  if (typeof answer !== 'object' || answer === null || answer.formatVersion !== '1') {
    throw new UserError(
      `the daemon at ${client.url} answered GET /v1/state with an unsupported format (expected formatVersion ` +
        '"1"); are mailctl and the daemon the same version?',
      EXIT.error,
      'daemon-error',
    );
  }
  const problem = checkObservedState(answer.state) ?? checkStore(answer.store);
  if (problem)
    throw new UserError(
      `the daemon at ${client.url} returned a malformed state: ${problem}`,
      EXIT.error,
      'daemon-error',
    );
  return { state: answer.state as ObservedState, store: answer.store?.kind ?? null };
}
