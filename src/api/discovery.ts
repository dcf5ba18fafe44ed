/**
 * How a client finds a running daemon: the state folder holds `daemon.json` (its URL) and `api-token`. These two
 * names are the only part of the state folder outside the store that anyone reads.
 */
import path from 'node:path';

export const DISCOVERY_FILE = 'daemon.json';
export const TOKEN_FILE = 'api-token';
export const DEFAULT_STATE_DIR = '.mailctl';

/** What `daemon.json` holds. */
export interface DaemonDiscovery {
  url: string;
  pid: number;
  dir: string;
}

export function stateDirFrom(flag: string | undefined, env: NodeJS.ProcessEnv): string {
  return path.resolve(flag ?? env.MAILCTL_STATE_DIR ?? DEFAULT_STATE_DIR);
}

export const isLoopback = (host: string): boolean =>
  host === 'localhost' || host === '::1' || host === '[::1]' || host.startsWith('127.');
