/**
 * The fields of an inbound message that routing and the `.json` metadata need, read from the header of its source.
 * The metadata FETCH asks Dovecot only for UID and RFC822.SIZE (kept in the Maildir file name), so each message file is
 * opened once, for its source, instead of once more for an ENVELOPE. Broken headers never throw: an unparsable field
 * is left empty. No field holds a control character (an encoded word can decode to CR LF): the subject has each run
 * of them replaced by a space, an address or a Message-ID with one is not one. The source itself is never changed.
 */
import { createHash } from 'node:crypto';
import { decodeEncodedWords, parseAddressList } from '../../adapters/mime.js';
import { parseHeaders } from './route.js';

/** sha256 of the exact source: with the Message-ID, how a message is recognised after its mailbox was recreated. */
export const contentHash = (source: Uint8Array): string => createHash('sha256').update(source).digest('hex');

export interface MessageFacts {
  from: string[];
  to: string[];
  cc: string[];
  subject: string;
  date: string | null;
  messageId: string | null;
  /** Every header, lower-case name → unfolded values, for routing. */
  headers: Map<string, string[]>;
}

/** parseHeaders reads bytes as latin1 (never fails); display fields are UTF-8 (RFC 6532) or encoded words. */
const utf8 = (latin1: string): string => Buffer.from(latin1, 'latin1').toString('utf8');

/** `local@domain`: what addressparser returns for garbage (`@@@,,,`, `@`, `x@`) is not an address and is left out. */
const ADDRESS = /^[^\s@]+@[^\s@]+$/;
/** C0 (tab, CR and LF too), DEL, C1, and the Unicode line and paragraph separators. */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROLS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g;
const hasControl = (text: string): boolean => new RegExp(CONTROLS.source).test(text);

function addresses(values: readonly string[] | undefined): string[] {
  if (!values?.length) return [];
  try {
    return parseAddressList(utf8(values.join(', ')))
      .map((a) => a.trim())
      .filter((a) => ADDRESS.test(a) && !hasControl(a));
  } catch {
    return [];
  }
}

function decoded(value: string | undefined): string {
  if (value === undefined) return '';
  let text: string;
  try {
    text = decodeEncodedWords(utf8(value));
  } catch {
    text = utf8(value);
  }
  return text.replace(CONTROLS, ' ');
}

function isoDate(value: string | undefined): string | null {
  if (!value) return null;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
}

/**
 * The Message-ID as compared everywhere (the sink, the ledger, the storage-folder lookup after a crash): its first
 * `<…>` token, else the trimmed value; null when absent or empty.
 */
export function messageIdOf(headers: Map<string, string[]>): string | null {
  const value = headers.get('message-id')?.[0]?.trim();
  if (!value) return null;
  const id = /<[^<>\s]+>/.exec(value)?.[0] ?? value;
  return hasControl(id) ? null : id;
}

/** The facts of a message from its source (or just its header block). */
export function messageFacts(source: Uint8Array): MessageFacts {
  const headers = parseHeaders(source);
  return {
    from: addresses(headers.get('from')),
    to: addresses(headers.get('to')),
    cc: addresses(headers.get('cc')),
    subject: decoded(headers.get('subject')?.[0]),
    date: isoDate(headers.get('date')?.[0]),
    messageId: messageIdOf(headers),
    headers,
  };
}
