import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { open, readFile, realpath } from 'node:fs/promises';
import path from 'node:path';
import type { ServerSpec } from '../config/model.js';
import { notNormalBecause, parseSecretRef } from '../config/secret-ref.js';
import { MailError } from '../adapters/connection.js';
import { isBelow, leadsInto, realPathOf } from './confine.js';

/** Longest secret value the product accepts (the UI's password field). */
export const MAX_SECRET_LENGTH = 255;
/** Largest secret file read; anything bigger is not a secret someone meant to reference. */
export const MAX_SECRET_FILE_BYTES = 64 * 1024;

export interface SecretPolicy {
  /** `${file:}` references must resolve below this folder. */
  secretsDir: string;
  /** `${env:}` references must name variables with this prefix. */
  envPrefix: string;
  /** `tlsCaFile` must lead below one of these folders (`--ca-dir`). */
  caDirs: readonly string[];
  env: NodeJS.ProcessEnv;
  /** Called with every value resolved (and the login it belongs to, when known), e.g. to scrub it from logs. */
  onResolved?: (value: string, user?: string) => void;
  /** Called once per file with what is wrong with it but does not stop it from being used (its permissions). */
  onWarning?: (message: string) => void;
}

/** A reference that cannot or may not be resolved: a configuration problem, never retried hot. */
export class SecretError extends MailError {
  constructor(message: string) {
    super('config', message, { code: 'secret' });
  }
}

export interface SecretFileOptions {
  /** Names the file in messages: the reference, or the flag that gave the file. */
  what: string;
  /** The folder the file must really lie below, and the flag that gave it. */
  inside?: { dir: string; flag: string };
  warn?: (message: string) => void;
}

/**
 * Reads a file holding a secret without trusting it: it must lead below `inside` once links are followed (a Kubernetes
 * Secret volume's `name → ..data/name` stays inside), be a regular file (opened with O_NONBLOCK, so a FIFO cannot hold
 * up a reconcile) of at most 64 KiB. A file others may read works, with a warning.
 */
export async function readSecretFile(file: string, options: SecretFileOptions): Promise<string> {
  const { what, inside } = options;
  const target = await realpath(file).catch((err: NodeJS.ErrnoException) => {
    throw new SecretError(`${what}: ${err.code === 'ENOENT' ? 'the file does not exist' : 'the file cannot be read'}`);
  });
  if (inside && !isBelow(target, await realPathOf(inside.dir)))
    throw new SecretError(`${what} is not allowed: it leads outside ${inside.dir} (${inside.flag})`);
  const handle = await open(target, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW).catch(() => {
    throw new SecretError(`${what}: the file cannot be read`);
  });
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new SecretError(`${what} is not a regular file`);
    const tooLarge = () => new SecretError(`${what} is larger than ${MAX_SECRET_FILE_BYTES / 1024} KiB`);
    if (info.size > MAX_SECRET_FILE_BYTES) throw tooLarge();
    if ((info.mode & 0o044) !== 0)
      options.warn?.(
        `${file} is readable by group or others (mode ${(info.mode & 0o777).toString(8).padStart(4, '0')}); it is used, but make it 0600 (on Kubernetes: defaultMode 0400 on the Secret volume)`,
      );
    const bytes = Buffer.alloc(MAX_SECRET_FILE_BYTES + 1);
    const { bytesRead } = await handle.read(bytes, 0, bytes.length, 0);
    if (bytesRead > MAX_SECRET_FILE_BYTES) throw tooLarge(); // it grew after the check
    return bytes.subarray(0, bytesRead).toString('utf8');
  } finally {
    await handle.close();
  }
}

/**
 * Resolves secret references inside the daemon only. Confined to `--secrets-dir` and `--secret-env-prefix`, so a
 * changed file cannot make the daemon read and send an arbitrary file or variable. Messages name the reference, never
 * the value.
 */
export class SecretResolver {
  private readonly warned = new Set<string>();

  constructor(private readonly policy: SecretPolicy) {}

  async resolve(reference: string): Promise<string> {
    const ref = parseSecretRef(reference);
    if (!ref) throw new SecretError(`${reference} is not a secret reference`);
    let value: string;
    if (ref.scheme === 'env') {
      if (!ref.name.startsWith(this.policy.envPrefix)) {
        throw new SecretError(
          `${reference} is not allowed: environment secrets must start with ${this.policy.envPrefix} (--secret-env-prefix)`,
        );
      }
      const found = this.policy.env[ref.name];
      if (found === undefined) throw new SecretError(`${reference}: the environment variable ${ref.name} is not set`);
      value = found;
    } else {
      const dir = path.resolve(this.policy.secretsDir);
      // Judged on the path as written before anything is looked up, so the answer for a path outside never tells
      // whether a file exists there.
      if (notNormalBecause(ref) !== null || !isBelow(ref.path, dir))
        throw new SecretError(
          `${reference} is not allowed: secret files must be inside ${this.policy.secretsDir} (--secrets-dir)`,
        );
      const text = await readSecretFile(ref.path, {
        what: reference,
        inside: { dir, flag: '--secrets-dir' },
        warn: (message) => this.warnOnce(ref.path, message),
      });
      value = text.replace(/\r?\n$/, '');
    }
    if (value.length === 0) throw new SecretError(`${reference} is empty`);
    if (value.length > MAX_SECRET_LENGTH)
      throw new SecretError(
        `${reference} is ${value.length} characters long; at most ${MAX_SECRET_LENGTH} are allowed`,
      );
    if (/[\r\n\0]/.test(value)) throw new SecretError(`${reference} contains a line break or NUL character`);
    this.sensitive(value);
    return value;
  }

  /**
   * Why `tlsCaFile` may not be used, or null. Judged on where it leads: Node trusts a PEM block inside any file, so a
   * CA file must come from a folder the operator chose, not from one mail or a sink writes to.
   */
  async caFileRefusal(file: string): Promise<string | null> {
    if (await leadsInto(file, this.policy.caDirs)) return null;
    return `tlsCaFile ${file} is not inside a folder allowed by --ca-dir (${this.policy.caDirs.join(', ')})`;
  }

  /** The PEM text of `tlsCaFile`, once it is allowed (see caFileRefusal). */
  async readCaFile(file: string): Promise<string> {
    const refusal = await this.caFileRefusal(file);
    if (refusal) throw new MailError('config', refusal, { code: 'tls-ca-file' });
    return readFile(file, 'utf8').catch(() => {
      throw new MailError('config', `tlsCaFile ${file} cannot be read`, { code: 'tls-ca-file' });
    });
  }

  private warnOnce(file: string, message: string): void {
    if (this.warned.has(file)) return;
    this.warned.add(file);
    this.policy.onWarning?.(message);
  }

  /** Reports a secret value obtained outside `resolve` (an OAuth2 access token) to `onResolved`. */
  sensitive(value: string, user?: string): void {
    this.policy.onResolved?.(value, user);
  }

  /** Resolves every reference of a server; in memory only. */
  async resolveAll(spec: ServerSpec): Promise<Map<string, string>> {
    const values = new Map<string, string>();
    for (const reference of secretReferences(spec)) values.set(reference, await this.resolve(reference));
    for (const value of values.values()) this.sensitive(value, spec.auth.user);
    return values;
  }
}

export function secretReferences(spec: ServerSpec): string[] {
  if (spec.auth.type === 'basic') return [spec.auth.password];
  const { accessToken, clientSecret, refreshToken } = spec.auth.oauth2;
  return [accessToken, clientSecret, refreshToken].filter((r): r is string => r !== undefined);
}

/** Digest of a server's resolved secrets, kept in memory to notice rotation; never written anywhere. */
export function secretDigest(values: ReadonlyMap<string, string>): string {
  const hash = createHash('sha256');
  for (const [reference, value] of [...values].sort(([a], [b]) => (a < b ? -1 : 1)))
    hash.update(`${reference}\0${value}\0`);
  return hash.digest('hex');
}
