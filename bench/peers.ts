/**
 * The peers bench:inbound compares mailctl with, fetchmail and getmail6: found on PATH or, when missing and the bench
 * runs as root on Debian, installed with apt-get (as the test harness installs Dovecot), saying so. Both run as an
 * unprivileged user: getmail6 refuses to run its MDA as root, and fetchmail should not either.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { aptInstall, canAptInstall } from '../test/harness/apt.js';

const run = promisify(execFile);

/** Debian's nobody:nogroup, when the bench runs as root; otherwise the bench's own (already unprivileged) user. */
export const PEER_IDS: { uid: number; gid: number } | null =
  process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : null;

export interface Peers {
  fetchmail: string | null;
  getmail: string | null;
  /** Why a peer is missing, for the figures' notes. */
  missing: string;
}

const onPath = (name: string) =>
  run('sh', ['-c', `command -v ${name}`]).then(
    (r) => r.stdout.trim() || null,
    () => null,
  );

/** The peers' executables, installing Debian's `fetchmail` and `getmail6` first when they are missing and that is possible. */
export async function findPeers(): Promise<Peers> {
  const find = async () => ({ fetchmail: await onPath('fetchmail'), getmail: await onPath('getmail') });
  let found = await find();
  const absent = () => [!found.fetchmail && 'fetchmail', !found.getmail && 'getmail6'].filter((p): p is string => !!p);
  if (absent().length && canAptInstall()) {
    await aptInstall(absent(), 'bench:inbound peers not found', { recommends: false }).catch((err: Error) =>
      console.log(`${err.message}; the missing peers are reported as n/a`),
    );
    found = await find();
  }
  const missing = absent().length ? `not installed (apt-get install ${absent().join(' ')})` : '';
  return { ...found, missing };
}

/** A version number from `command --version`, or '' when it does not say. */
export async function versionOf(command: string, pattern: RegExp): Promise<string> {
  const r = await run(command, ['--version']).catch((err: { stdout?: string }) => ({ stdout: err.stdout ?? '' }));
  return pattern.exec(r.stdout)?.[1] ?? '';
}
