/**
 * The Chromium the status-page test drives (through playwright-core, which brings no browser of its own): Debian's
 * `chromium` at /usr/bin/chromium, or MAILCTL_CHROMIUM. When it is missing and the tests run as root on Debian, it is
 * installed with apt-get (as dovecot.ts does for Dovecot); elsewhere the error says what to install.
 */
import { existsSync } from 'node:fs';
import { aptInstall, canAptInstall } from './apt.js';

const DEBIAN_CHROMIUM = '/usr/bin/chromium';

/** The path of a Chromium executable, installing Debian's package first when that is possible. */
export async function ensureChromium(): Promise<string> {
  const configured = process.env.MAILCTL_CHROMIUM;
  if (configured) {
    if (existsSync(configured)) return configured;
    throw new Error(`MAILCTL_CHROMIUM is ${configured}, which does not exist`);
  }
  if (existsSync(DEBIAN_CHROMIUM)) return DEBIAN_CHROMIUM;
  if (canAptInstall()) {
    await aptInstall(['chromium'], `Chromium not found at ${DEBIAN_CHROMIUM}`);
    if (existsSync(DEBIAN_CHROMIUM)) return DEBIAN_CHROMIUM;
  }
  throw new Error(
    `The status-page test needs Chromium at ${DEBIAN_CHROMIUM}: install the package "chromium" ` +
      '(Debian/Ubuntu: apt-get install chromium; the tests do it themselves when run as root), ' +
      'or set MAILCTL_CHROMIUM to a Chromium or Chrome executable',
  );
}
