/**
 * MIME on both sides, through nodemailer's own parsers and composer: address lists and encoded words of inbound
 * headers, and the source of an outbound message built from structured fields.
 */
import libmime from 'libmime';
import addressparser from 'nodemailer/lib/addressparser';
import MailComposer from 'nodemailer/lib/mail-composer';
import type { SendMailOptions } from 'nodemailer';

/** The bare addresses of an address-list header (groups flattened); throws on input it cannot parse. */
export const parseAddressList = (text: string): string[] =>
  addressparser(text, { flatten: true }).map((a) => a.address);

/** Decodes RFC 2047 encoded words (`=?utf-8?B?…?=`); throws on input it cannot decode. */
export const decodeEncodedWords = (text: string): string => libmime.decodeWords(text);

/** The MIME source nodemailer builds from these fields (the same bytes it sends). */
export const composeMime = (fields: SendMailOptions): Promise<Buffer> => new MailComposer(fields).compile().build();
