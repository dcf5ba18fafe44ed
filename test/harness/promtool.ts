/**
 * Prometheus's `promtool`, for the monitoring examples' tests (check and unit-test the alerting rules). Debian ships
 * it in the `prometheus` package: when it is missing and the tests run as root on Debian, that package is installed
 * with apt-get (without its recommended node exporter); elsewhere the error says what to install.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { aptInstall, canAptInstall } from './apt.js';

const run = promisify(execFile);

const onPath = (name: string) =>
  run('sh', ['-c', `command -v ${name}`]).then(
    (r) => r.stdout.trim() || null,
    () => null,
  );

/** The path of promtool, installing Debian's `prometheus` package first when that is possible. */
export async function ensurePromtool(): Promise<string> {
  const found = await onPath('promtool');
  if (found) return found;
  if (canAptInstall()) {
    await aptInstall(['prometheus'], 'promtool not found', { recommends: false });
    const installed = await onPath('promtool');
    if (installed) return installed;
  }
  throw new Error(
    'The monitoring tests need promtool: install the package "prometheus" (Debian/Ubuntu: ' +
      'apt-get install --no-install-recommends prometheus; the tests do it themselves when run as root), ' +
      'or put the promtool of a Prometheus release on PATH',
  );
}
