/** A throw-away test CA made with the openssl CLI (EC P-256 keys: fast to generate). */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { mkdtemp, readFile, writeFile, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const run = promisify(execFile);
const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
export const DEFAULT_SANS = ['DNS:localhost', 'IP:127.0.0.1'];

export interface CertFiles {
  certFile: string;
  keyFile: string;
  certPem: string;
  keyPem: string;
}

export interface TestCa {
  dir: string;
  caFile: string;
  caPem: string;
  /** Issue a server certificate signed by this CA (default SANs: localhost, 127.0.0.1); `name` gets a unique suffix. */
  issue(name?: string, sans?: string[]): Promise<CertFiles>;
}

// temp dirs made here are removed when the process exits
const tempDirs = new Set<string>();
let hooked = false;
function trackTempDir(dir: string): void {
  tempDirs.add(dir);
  if (hooked) return;
  hooked = true;
  process.on('exit', () => {
    for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
  });
}

async function openssl(args: string[], cwd: string): Promise<void> {
  try {
    await run('openssl', args, { cwd });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`openssl ${args[0]} failed: ${e.stderr?.trim() || e.message}`, { cause: err });
  }
}

async function readPair(dir: string, name: string): Promise<CertFiles> {
  const certFile = path.join(dir, `${name}.crt`);
  const keyFile = path.join(dir, `${name}.key`);
  return { certFile, keyFile, certPem: await readFile(certFile, 'utf8'), keyPem: await readFile(keyFile, 'utf8') };
}

let caRoot: string | undefined;

/**
 * The folder this process keeps its test CAs in (created on first use, removed at exit): daemons started by the
 * harness trust CA files there (`--ca-dir`), as an operator allows the folder of a private CA.
 */
export function testCaRoot(): string {
  if (!caRoot) {
    caRoot = mkdtempSync(path.join(os.tmpdir(), 'mailctl-cas-'));
    trackTempDir(caRoot);
  }
  return caRoot;
}

/** Create a CA (`ca.crt`, `ca.key`) in `dir` (default: a fresh folder in testCaRoot()). */
export async function createTestCa(dir?: string, cn = 'mailctl test CA'): Promise<TestCa> {
  const d = dir ?? (await mkdtemp(path.join(testCaRoot(), 'ca-')));
  await mkdir(d, { recursive: true });
  await openssl(
    [
      'req',
      '-x509',
      ...EC,
      '-keyout',
      'ca.key',
      '-out',
      'ca.crt',
      '-days',
      '3',
      '-subj',
      `/CN=${cn}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    d,
  );
  const caFile = path.join(d, 'ca.crt');
  const caPem = await readFile(caFile, 'utf8');
  let serial = 1;
  return {
    dir: d,
    caFile,
    caPem,
    async issue(prefix = 'server', sans = DEFAULT_SANS) {
      const n = serial++;
      const name = `${prefix}-${n}-${randomBytes(4).toString('hex')}`; // concurrent issue() calls must not share files
      const ext = path.join(d, `${name}.ext`);
      await writeFile(
        ext,
        `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n` +
          `extendedKeyUsage=serverAuth\nsubjectAltName=${sans.join(',')}\n`,
      );
      const cn = (sans[0] ?? 'DNS:localhost').replace(/^\w+:/, '');
      await openssl(['req', '-new', ...EC, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`], d);
      await openssl(
        [
          'x509',
          '-req',
          '-in',
          `${name}.csr`,
          '-CA',
          'ca.crt',
          '-CAkey',
          'ca.key',
          '-set_serial',
          String(Date.now() * 100 + (n % 100)),
          '-days',
          '2',
          '-extfile',
          ext,
          '-out',
          `${name}.crt`,
        ],
        d,
      );
      return readPair(d, name);
    },
  };
}

/** A self-signed server certificate (`<name>.crt/.key` in `dir`): fails verification with DEPTH_ZERO_SELF_SIGNED_CERT. */
export async function createSelfSignedCert(dir: string, name = 'selfsigned', sans = DEFAULT_SANS): Promise<CertFiles> {
  await mkdir(dir, { recursive: true });
  const cn = (sans[0] ?? 'DNS:localhost').replace(/^\w+:/, '');
  await openssl(
    [
      'req',
      '-x509',
      ...EC,
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.crt`,
      '-days',
      '2',
      '-subj',
      `/CN=${cn}`,
      '-addext',
      `subjectAltName=${sans.join(',')}`,
    ],
    dir,
  );
  return readPair(dir, name);
}

/**
 * An RSA key and a self-signed certificate for signing OAuth2 client assertions (RS256 needs RSA), as uploaded to an
 * app registration. `<name>.crt/.key` in `dir`.
 */
export async function createSigningCert(dir: string, name: string, cn = name): Promise<CertFiles> {
  await mkdir(dir, { recursive: true });
  await openssl(
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.crt`,
      '-days',
      '2',
      '-subj',
      `/CN=${cn}`,
    ],
    dir,
  );
  return readPair(dir, name);
}
