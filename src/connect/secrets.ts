import { createHash } from 'node:crypto';
import { readFile, realpath } from 'node:fs/promises';
import path from 'node:path';
import type { ServerSpec } from '../config/model.js';
import { parseSecretRef } from '../config/secret-ref.js';
import { MailError } from '../adapters/connection.js';

/** Longest secret value the product accepts (the UI's password field). */
export const MAX_SECRET_LENGTH = 255;

export interface SecretPolicy {
  /** `${file:}` references must resolve below this folder. */
  secretsDir: string;
  /** `${env:}` references must name variables with this prefix. */
  envPrefix: string;
  env: NodeJS.ProcessEnv;
  /** Called with every value resolved (and the login it belongs to, when known), e.g. to scrub it from logs. */
  onResolved?: (value: string, user?: string) => void;
}

/** A reference that cannot or may not be resolved: a configuration problem, never retried hot. */
export class SecretError extends MailError {
  constructor(message: string) {
    super('config', message, { code: 'secret' });
  }
}

/**
 * Resolves secret references inside the daemon only. Confined to `--secrets-dir` and `--secret-env-prefix`, so a
 * changed file cannot make the daemon read and send an arbitrary file or variable. Messages name the reference, never
 * the value.
 */
export class SecretResolver {
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
      const root = await realpath(this.policy.secretsDir).catch(() => path.resolve(this.policy.secretsDir));
      const target = await realpath(ref.path).catch(() => null);
      if (target === null) throw new SecretError(`${reference}: the file does not exist`);
      if (!target.startsWith(root + path.sep)) {
        throw new SecretError(
          `${reference} is not allowed: secret files must be inside ${this.policy.secretsDir} (--secrets-dir)`,
        );
      }
      value = (
        await readFile(target, 'utf8').catch(() => {
          throw new SecretError(`${reference}: the file cannot be read`);
        })
      ).replace(/\r?\n$/, '');
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
