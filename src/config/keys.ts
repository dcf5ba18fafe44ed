/**
 * How a server's shortName appears in message keys and file names, and the inbound key format
 * `<name>.<uidValidity>.<uid>.<hash8>` that `--in-reply-to` and `/v1/stored` take. A shortName may be 250 characters
 * (the schema) but a file name only 255 bytes: a shortName longer than 64 characters is written as its first 48
 * characters, `~`, and the first 8 hex of its sha256, so every key and file name stays short.
 */
import { createHash } from 'node:crypto';

export const MAX_NAME_IN_KEYS = 64;
const KEPT_CHARACTERS = 48;

/** The shortName as keys and file names carry it. */
export function nameInKeys(shortName: string): string {
  if (shortName.length <= MAX_NAME_IN_KEYS) return shortName;
  const hash = createHash('sha256').update(shortName).digest('hex').slice(0, 8);
  return `${shortName.slice(0, KEPT_CHARACTERS)}~${hash}`;
}

/** The longest inbound key: a 250-character name (keys written before names were shortened), two 32-bit numbers. */
export const MAX_KEY_LENGTH = 250 + 1 + 10 + 1 + 10 + 1 + 8;

/**
 * The name part takes every valid shortName (`[A-Za-z0-9][A-Za-z0-9._@+-]*`, so also `@` and `+`) and its shortened
 * form (`~`); bounded repetition and the length check keep the match linear.
 */
const INBOUND_KEY = /^([A-Za-z0-9][A-Za-z0-9._@+~-]{0,249})\.(\d{1,10})\.(\d{1,10})\.([0-9a-f]{8})$/;

export interface InboundKey {
  /** The server's shortName as the key carries it (`nameInKeys`). */
  name: string;
  uidValidity: string;
  uid: number;
  hash: string;
}

export function parseInboundKey(key: string): InboundKey | null {
  if (key.length > MAX_KEY_LENGTH) return null;
  const m = INBOUND_KEY.exec(key);
  return m ? { name: m[1]!, uidValidity: m[2]!, uid: Number(m[3]), hash: m[4]! } : null;
}

export const isInboundKey = (key: string): boolean => parseInboundKey(key) !== null;

/** Does `key`'s name part stand for this shortName (shortened, or whole in a key written before names were)? */
export const keyNameIs = (name: string, shortName: string): boolean =>
  name === nameInKeys(shortName) || name === shortName;
