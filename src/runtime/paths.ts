import path from 'node:path';

/** Names of the files in the state folder. One place, so daemon and clients agree. */
export const STATE_FILES = {
  lock: 'daemon.lock',
  discovery: 'daemon.json',
  token: 'api-token',
  applied: 'applied.json',
  applyLog: 'apply-log.jsonl',
} as const;

export const DEFAULT_STATE_DIR = '.mailctl';

export function stateDirFrom(flag: string | undefined, env: NodeJS.ProcessEnv): string {
  return path.resolve(flag ?? env.MAILCTL_STATE_DIR ?? DEFAULT_STATE_DIR);
}

export const isLoopback = (host: string): boolean => host === 'localhost' || host === '::1' || host.startsWith('127.');
