import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { STATE_FILES, stateDirFrom } from '../runtime/paths.js';
import { UserError } from './errors.js';

export interface DaemonLocation {
  server?: string;
  stateDir?: string;
  tokenFile?: string;
}

/** A connection to the daemon's API (`/v1/*`, bearer token). */
export interface DaemonClient {
  url: string;
  request<T>(method: 'GET' | 'POST', route: string, body?: unknown, timeoutMs?: number): Promise<{ status: number; body: T }>;
}

async function readTrimmed(file: string): Promise<string | undefined> {
  return readFile(file, 'utf8').then((s) => s.trim(), () => undefined);
}

/**
 * Finds the daemon: `--server`, then MAILCTL_SERVER, then `<state>/daemon.json`; the token: `--token-file`,
 * then MAILCTL_TOKEN, then `<state>/api-token` (state folder from `--state-dir` or MAILCTL_STATE_DIR).
 */
export async function locateDaemon(where: DaemonLocation, env: NodeJS.ProcessEnv): Promise<DaemonClient> {
  const stateDir = stateDirFrom(where.stateDir, env);
  let url = where.server ?? env.MAILCTL_SERVER;
  if (!url) {
    const discovery = await readTrimmed(path.join(stateDir, STATE_FILES.discovery));
    if (discovery) url = (JSON.parse(discovery) as { url?: string }).url;
  }
  if (!url) {
    throw new UserError(`no daemon found: give --server URL, set MAILCTL_SERVER, or run this where ${path.join(stateDir, STATE_FILES.discovery)} exists (mailctl run)`, 1, 'daemon-unreachable');
  }
  const token = where.tokenFile
    ? await readTrimmed(where.tokenFile).then((t) => t ?? failToken(`cannot read --token-file ${where.tokenFile}`))
    : env.MAILCTL_TOKEN || (await readTrimmed(path.join(stateDir, STATE_FILES.token)));
  const base = url.replace(/\/+$/, '');
  return {
    url: base,
    async request<T>(method: 'GET' | 'POST', route: string, body?: unknown, timeoutMs = 120_000) {
      let response: Response;
      try {
        response = await fetch(`${base}${route}`, {
          method,
          headers: { ...(token && { authorization: `Bearer ${token}` }), ...(body !== undefined && { 'content-type': 'application/json' }) },
          ...(body !== undefined && { body: JSON.stringify(body) }),
          signal: AbortSignal.timeout(timeoutMs),
        });
      } catch (err) {
        const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name;
        throw new UserError(`cannot reach the daemon at ${base} (${cause})`, 1, 'daemon-unreachable');
      }
      const text = await response.text();
      let parsed: unknown = text;
      try {
        parsed = text ? JSON.parse(text) : {};
      } catch {
        /* non-JSON answer: keep the text for the message */
      }
      if (response.status === 401) throw new UserError(`the daemon at ${base} refused the API token (give --token-file, MAILCTL_TOKEN or --state-dir)`, 1, 'unauthorized');
      return { status: response.status, body: parsed as T };
    },
  };
}

function failToken(message: string): never {
  throw new UserError(message);
}
