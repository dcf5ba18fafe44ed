import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { open, readFile, realpath, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { ServerSpec } from '../config/model.js';
import { notNormalBecause, parseSecretRef } from '../config/secret-ref.js';
import { MailError } from '../adapters/connection.js';
import { isBelow, leadsInto, realPathOf } from './confine.js';

/** Longest password the product accepts (the UI's password field). */
export const MAX_SECRET_LENGTH = 255;

/**
 * What a reference holds, which decides what its value may look like: a password (at most 255 characters), an OAuth2
 * token or client secret (Microsoft's refresh tokens run to a few thousand characters), or a PEM certificate or key
 * (several lines).
 */
export type SecretKind = 'password' | 'token' | 'pem';
const MAX_LENGTH: Record<SecretKind, number> = { password: MAX_SECRET_LENGTH, token: 16_384, pem: 64 * 1024 };
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
  /** Where OAuth2 grants get their access tokens (the daemon's credentials); without it they cannot connect. */
  accessTokens?: AccessTokenSource;
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
        `${file} is readable by group or others (mode ${(info.mode & 0o777).toString(8).padStart(4, '0')}); ` +
          'it is used, but make it 0600 (on Kubernetes: defaultMode 0400 on the Secret volume)',
      );
    const bytes = await readAtMost(handle, MAX_SECRET_FILE_BYTES, info.size);
    if (bytes.length > MAX_SECRET_FILE_BYTES) throw tooLarge(); // it grew after the check
    return bytes.toString('utf8');
  } finally {
    await handle.close();
  }
}

/**
 * The file's bytes from the start, `limit + 1` at most (one more than allowed, to tell that it is too large), read
 * into a buffer of the size `stat` gave, which grows only if the file grew since. Not one buffer of `limit + 1` per
 * read: every connection reads its secrets, and a zeroed 64 KiB buffer per connection stayed in the daemon's RSS
 * after it was freed (1,000 idle loops after an apply: 144 → 108 KiB per loop at 10 s, 115 → 77 KiB idle).
 */
export async function readAtMost(handle: FileHandle, limit: number, sizeHint: number): Promise<Buffer> {
  let bytes = Buffer.alloc(Math.min(sizeHint, limit) + 1);
  let length = 0;
  for (;;) {
    const { bytesRead } = await handle.read(bytes, length, bytes.length - length, length);
    length += bytesRead;
    // a short read is the end of the file; a full buffer of limit + 1 is already too large
    if (length < bytes.length || length > limit) return bytes.subarray(0, length);
    const grown = Buffer.alloc(Math.min(bytes.length * 2, limit + 1));
    bytes.copy(grown, 0, 0, length);
    bytes = grown;
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

  async resolve(reference: string, kind: SecretKind = 'password'): Promise<string> {
    const ref = parseSecretRef(reference);
    if (!ref) throw new SecretError(`${reference} is not a secret reference`);
    let value: string;
    if (ref.scheme === 'env') {
      if (!ref.name.startsWith(this.policy.envPrefix)) {
        throw new SecretError(
          `${reference} is not allowed: environment secrets must start with ${this.policy.envPrefix} ` +
            '(--secret-env-prefix)',
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
      value = kind === 'pem' ? text.trim() : text.replace(/\r?\n$/, '');
    }
    if (value.length === 0) throw new SecretError(`${reference} is empty`);
    if (value.length > MAX_LENGTH[kind])
      throw new SecretError(`${reference} is ${value.length} characters long; at most ${MAX_LENGTH[kind]} are allowed`);
    if (kind === 'pem' ? value.includes('\0') : /[\r\n\0]/.test(value))
      throw new SecretError(`${reference} contains a ${kind === 'pem' ? '' : 'line break or '}NUL character`);
    this.sensitive(value);
    // a key's lines, so that no part of it shows either
    if (kind === 'pem') for (const line of value.split(/\r?\n/)) if (!line.startsWith('-----')) this.sensitive(line);
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
    for (const [reference, kind] of secretReferences(spec)) values.set(reference, await this.resolve(reference, kind));
    for (const value of values.values()) this.sensitive(value, spec.auth.user);
    return values;
  }

  /** The access token of a server's OAuth2 grant, from the daemon's credentials (`accessTokens` of the policy). */
  accessToken(spec: ServerSpec, secrets: ReadonlyMap<string, string>, rejected?: string): Promise<AccessToken> {
    if (!this.policy.accessTokens)
      return Promise.reject(new MailError('config', 'OAuth2 grants are run by the daemon only', { code: 'oauth2' }));
    return this.policy.accessTokens.accessToken(spec, secrets, rejected);
  }
}

/** An OAuth2 access token and when it expires (epoch ms). */
export interface AccessToken {
  accessToken: string;
  expiresAt: number;
}

/** Where access tokens come from: the daemon's credentials (cached per credential, refreshed once for all). */
export interface AccessTokenSource {
  /**
   * A valid access token for the OAuth2 grant of `spec` (`secrets`: its resolved references); a fresh one when the
   * cached one is `rejected` (a server refused it). Throws MailError.
   */
  accessToken(spec: ServerSpec, secrets: ReadonlyMap<string, string>, rejected?: string): Promise<AccessToken>;
}

/** Every reference of a server and what it holds (a reference used for two fields gets the laxer kind). */
export function secretReferences(spec: ServerSpec): Map<string, SecretKind> {
  const out = new Map<string, SecretKind>();
  const add = (reference: string | undefined, kind: SecretKind) => {
    if (reference === undefined) return;
    const had = out.get(reference);
    if (!had || MAX_LENGTH[kind] > MAX_LENGTH[had]) out.set(reference, kind);
  };
  if (spec.auth.type === 'basic') add(spec.auth.password, 'password');
  else {
    const o = spec.auth.oauth2;
    for (const reference of [o.accessToken, o.clientSecret, o.refreshToken]) add(reference, 'token');
    for (const reference of [o.clientCertificate, o.clientKey]) add(reference, 'pem');
  }
  return out;
}

/** Digest of a server's resolved secrets, kept in memory to notice rotation; never written anywhere. */
export function secretDigest(values: ReadonlyMap<string, string>): string {
  const hash = createHash('sha256');
  for (const [reference, value] of [...values].sort(([a], [b]) => (a < b ? -1 : 1)))
    hash.update(`${reference}\0${value}\0`);
  return hash.digest('hex');
}
