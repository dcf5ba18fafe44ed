/**
 * Installs what a test needs from Debian's archive, the way dovecot.ts does for Dovecot: only when running as root on a
 * machine with apt-get, and saying so on stderr. Callers check first and say what to install when this cannot run.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const canAptInstall = (): boolean => process.getuid?.() === 0 && existsSync('/usr/bin/apt-get');

/**
 * `apt-get update && apt-get install -y PACKAGES`. Test files run two at a time and may both install something: each
 * waits up to 5 minutes for the other's lock instead of failing at once (dpkg's through apt's own timeout; the lists
 * lock of `apt-get update`, which that timeout does not cover, by trying again).
 */
export async function aptInstall(
  packages: string[],
  why: string,
  options: { recommends?: boolean } = {},
): Promise<void> {
  const install = ['install', '-y', ...(options.recommends === false ? ['--no-install-recommends'] : []), ...packages];
  process.stderr.write(`[test harness] ${why}: running apt-get update && apt-get ${install.join(' ')}\n`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const lock = ['-o', 'DPkg::Lock::Timeout=300'];
  for (const args of [['update'], install]) {
    for (let attempt = 1; ; attempt++) {
      const failure = await run('apt-get', [...lock, ...args], { env, maxBuffer: 64 << 20 }).then(
        () => null,
        (err: { stderr?: string }) => err.stderr?.trim() ?? '',
      );
      if (failure === null) break;
      if (/Could not get lock/.test(failure) && attempt < 60) await sleep(5000);
      else throw new Error(`apt-get ${args.join(' ')} failed: ${failure.split('\n').slice(-5).join('\n')}`);
    }
  }
}
