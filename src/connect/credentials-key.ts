/**
 * The daemon's credentials key: 32 random bytes, kept base64 in a file that is read like a secret. Each use derives a
 * key of its own from it (HKDF-SHA256 with the use's name), so one file serves every use without one weakening another:
 *  - secret identities: HMAC-SHA256 of a secret's value, by which credential bindings are kept besides the reference
 *    (another reference holding a bound secret is a rebind);
 *  - kept credentials: AES-256-GCM of a credential the daemon keeps (an OAuth2 refresh token), its id as associated
 *    data.
 * `--credentials-key-file` names the file. With the file store the daemon creates one in its state folder when the flag
 * is absent; a store shared by several daemons has none of its own, and they must all be given the same file.
 */
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { link, lstat, open, rm } from 'node:fs/promises';
import path from 'node:path';
import { readSecretFile } from './secrets.js';

export const CREDENTIALS_KEY_BYTES = 32;
const NONCE_BYTES = 12;

/** What AES-256-GCM made of a credential (all base64). */
export interface SealedCredential {
  ciphertext: string;
  nonce: string;
  tag: string;
}

/** A key file that is missing, unreadable or not 32 bytes of base64. */
export class CredentialsKeyError extends Error {
  readonly code = 'credentials-key';
}

const derive = (key: Buffer, use: string, bytes = 32): Buffer =>
  Buffer.from(hkdfSync('sha256', key, Buffer.alloc(0), `mailctl/v1 ${use}`, bytes));

export class CredentialsKey {
  private readonly identityKey: Buffer;
  private readonly sealingKey: Buffer;
  /** Names the key without revealing it, so what was made under another key is recognised as such. */
  readonly id: string;

  private constructor(key: Buffer) {
    this.identityKey = derive(key, 'secret identity');
    this.sealingKey = derive(key, 'kept credential');
    this.id = derive(key, 'key id', 8).toString('hex');
  }

  /** The key in a file's text (base64 of exactly 32 bytes; surrounding white space ignored). */
  static parse(text: string, where: string): CredentialsKey {
    const trimmed = text.trim();
    const bytes = Buffer.from(trimmed, 'base64');
    if (bytes.length !== CREDENTIALS_KEY_BYTES || bytes.toString('base64') !== trimmed)
      throw new CredentialsKeyError(
        `${where} must hold ${CREDENTIALS_KEY_BYTES} random bytes in base64 (e.g. openssl rand -base64 ` +
          `${CREDENTIALS_KEY_BYTES})`,
      );
    return new CredentialsKey(bytes);
  }

  /** The text of a new key file. */
  static generate(): string {
    return `${randomBytes(CREDENTIALS_KEY_BYTES).toString('base64')}\n`;
  }

  /** HMAC-SHA256 of a secret value (hex): equal values have equal identities, and nothing of the value shows. */
  identityOf(value: string): string {
    return createHmac('sha256', this.identityKey).update(value, 'utf8').digest('hex');
  }

  seal(plaintext: string, associatedData: string): SealedCredential {
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.sealingKey, nonce);
    cipher.setAAD(Buffer.from(associatedData, 'utf8'));
    const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return {
      ciphertext: ciphertext.toString('base64'),
      nonce: nonce.toString('base64'),
      tag: cipher.getAuthTag().toString('base64'),
    };
  }

  /** The plaintext of `sealed`; throws when it was changed, sealed under another key or for other associated data. */
  open(sealed: SealedCredential, associatedData: string): string {
    const decipher = createDecipheriv('aes-256-gcm', this.sealingKey, Buffer.from(sealed.nonce, 'base64'));
    decipher.setAAD(Buffer.from(associatedData, 'utf8'));
    decipher.setAuthTag(Buffer.from(sealed.tag, 'base64'));
    return Buffer.concat([decipher.update(Buffer.from(sealed.ciphertext, 'base64')), decipher.final()]).toString(
      'utf8',
    );
  }
}

export interface KeyFileOptions {
  /** Create the file (0600) with a new key when it does not exist: the store's own key file, never a given one. */
  create: boolean;
  /** How the file is named in messages (`--credentials-key-file`, or the state folder's file). */
  what: string;
  warn?: (message: string) => void;
  /** Called with the key file's text, e.g. to scrub it from logs. */
  onRead?: (text: string) => void;
}

/** Writes a new key file at once or not at all (a crash never leaves half a key), never replacing one. */
async function createKeyFile(file: string): Promise<void> {
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(4).toString('hex')}.tmp`);
  const handle = await open(temp, 'wx', 0o600);
  try {
    await handle.writeFile(CredentialsKey.generate());
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await link(temp, file).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err; // made meanwhile: that one is the key
    });
    const dir = await open(path.dirname(file), 'r');
    await dir.sync().finally(() => dir.close());
  } finally {
    await rm(temp, { force: true });
  }
}

/** Reads the credentials key from `file`, first creating it when `create` says so and it does not exist. */
export async function loadCredentialsKey(file: string, options: KeyFileOptions): Promise<CredentialsKey> {
  const missing = await lstat(file).then(
    () => false,
    (err: NodeJS.ErrnoException) => err.code === 'ENOENT',
  );
  if (options.create && missing) await createKeyFile(file);
  const text = await readSecretFile(file, {
    what: options.what,
    ...(options.warn && { warn: options.warn }),
  }).catch((err: Error) => {
    throw new CredentialsKeyError(err.message);
  });
  options.onRead?.(text.trim());
  return CredentialsKey.parse(text, options.what);
}
