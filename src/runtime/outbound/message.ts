/**
 * The outbound message as the API accepts it: strict validation (unknown fields, types, and any line break or control
 * character in a header field are refused, so no header can be injected), and the MIME source nodemailer builds from
 * the structured fields. Every check is linear in its input and every header field has a length limit, so a hostile
 * request is refused at once without blocking the event loop.
 */
import { composeMime } from '../../adapters/mime.js';
import { isInboundKey, MAX_KEY_LENGTH } from '../../config/keys.js';
import type { OutboundAttachment, OutboundRequest } from '../../api/outbound.js';
import type { StoredOutboundMessage } from '../../store/ports.js';
import { HttpError } from '../daemon/http.js';

export type { OutboundRequest } from '../../api/outbound.js';

/** What the outbox stores: the request plus what was decided when it was accepted. */
export type OutboundMessage = StoredOutboundMessage;

const FIELDS = new Set(['from', 'to', 'cc', 'bcc', 'subject', 'text', 'html', 'inReplyTo', 'kind', 'attachments']);
/** CR, LF, NUL, other C0 controls (tab allowed), DEL, and the Unicode line/paragraph separators. */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL = /[\u0000-\u0008\u000a-\u001f\u007f\u2028\u2029]/;
/** One side of an address: a single character class, so the test is linear (no backtracking between parts). */
const ADDRESS_PART = /^[^\s@<>",;:()[\]\\]+$/;
/** RFC 5321's path limit (256 with the angle brackets). */
export const MAX_ADDRESS_LENGTH = 254;
/** RFC 5322's line limit: a longer Subject is not a subject. */
export const MAX_SUBJECT_LENGTH = 998;
/** File names and MIME types (RFC 6838: 127 + 1 + 127). */
const MAX_NAME_LENGTH = 255;
export const OUTBOUND_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** The `=` padding is the only thing after the data, so the parts never compete for the same characters. */
const BASE64 = /^[A-Za-z0-9+/\r\n]*(?:=[\r\n]*){0,2}$/;
const CONTENT_TYPE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$/;

const bad = (message: string) => new HttpError(400, message);

/** A value for a message: whole when short, else its start (a refusal never echoes a hostile value). */
const quoted = (text: string) => JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}…` : text);

function headerText(field: string, value: unknown, max: number, { optional = false } = {}): string | undefined {
  if (value === undefined && optional) return undefined;
  if (typeof value !== 'string') throw bad(`"${field}" must be a string`);
  if (value.length > max) throw bad(`"${field}" is longer than ${max} characters`);
  if (CONTROL.test(value))
    throw bad(`"${field}" contains a line break or control character; refused (header injection)`);
  return value;
}

/** A bare `local@domain` of at most 254 characters. */
export function isAddress(text: string): boolean {
  if (text.length > MAX_ADDRESS_LENGTH) return false;
  const at = text.indexOf('@');
  return at > 0 && ADDRESS_PART.test(text.slice(0, at)) && ADDRESS_PART.test(text.slice(at + 1));
}

function address(field: string, value: unknown): string {
  const text = headerText(field, value, MAX_ADDRESS_LENGTH)!;
  if (!isAddress(text))
    throw bad(`"${field}": ${quoted(text)} is not an email address (give a bare address like agent@example.com)`);
  return text;
}

function addressList(field: string, value: unknown, required: boolean): string[] {
  if (value === undefined) {
    if (required) throw bad(`"${field}" is required`);
    return [];
  }
  const list = Array.isArray(value) ? value : [value];
  if (required && list.length === 0) throw bad(`"${field}" needs at least one address`);
  return list.map((v, i) => address(`${field}[${i}]`, v));
}

function attachmentsOf(value: unknown): OutboundAttachment[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw bad('"attachments" must be a list of {name, contentType, content}');
  return value.map((a: unknown, i) => {
    if (typeof a !== 'object' || a === null) throw bad(`attachments[${i}] must be an object`);
    const { name, contentType, content, ...rest } = a as Record<string, unknown>;
    if (Object.keys(rest).length) throw bad(`attachments[${i}]: unknown field "${Object.keys(rest)[0]}"`);
    const n = headerText(`attachments[${i}].name`, name, MAX_NAME_LENGTH)!;
    if (!n || /[/\\]/.test(n)) throw bad(`attachments[${i}].name must be a file name without folders`);
    const type = headerText(`attachments[${i}].contentType`, contentType, MAX_NAME_LENGTH)!;
    if (!CONTENT_TYPE.test(type))
      throw bad(`attachments[${i}].contentType ${quoted(type)} is not a MIME type like application/pdf`);
    if (typeof content !== 'string' || !BASE64.test(content)) throw bad(`attachments[${i}].content must be base64`);
    return { name: n, contentType: type, content };
  });
}

/** Validates a `POST /v1/outbound` body. Throws HttpError(400). */
export function parseOutboundRequest(body: unknown): OutboundRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw bad('the body must be a JSON object');
  const raw = body as Record<string, unknown>;
  const unknown = Object.keys(raw).filter((k) => !FIELDS.has(k));
  if (unknown.length) throw bad(`unknown field(s): ${unknown.join(', ')} (allowed: ${[...FIELDS].join(', ')})`);
  const kind = raw.kind ?? 'agent';
  if (kind !== 'agent' && kind !== 'template') throw bad('"kind" must be "agent" or "template"');
  if (raw.text !== undefined && typeof raw.text !== 'string') throw bad('"text" must be a string');
  if (raw.html !== undefined && typeof raw.html !== 'string') throw bad('"html" must be a string');
  if (raw.text === undefined && raw.html === undefined) throw bad('give "text" or "html"');
  const inReplyTo = headerText('inReplyTo', raw.inReplyTo, MAX_KEY_LENGTH, { optional: true });
  if (inReplyTo !== undefined && !isInboundKey(inReplyTo))
    throw bad(`"inReplyTo" must be an inbound key like support.1700000000.42.0a1b2c3d, not ${quoted(inReplyTo)}`);
  return {
    ...(raw.from !== undefined && { from: address('from', raw.from) }),
    to: addressList('to', raw.to, true),
    cc: addressList('cc', raw.cc, false),
    bcc: addressList('bcc', raw.bcc, false),
    subject: headerText('subject', raw.subject ?? '', MAX_SUBJECT_LENGTH)!,
    ...(typeof raw.text === 'string' && { text: raw.text }),
    ...(typeof raw.html === 'string' && { html: raw.html }),
    ...(inReplyTo !== undefined && { inReplyTo }),
    kind,
    attachments: attachmentsOf(raw.attachments),
  };
}

/** The envelope recipients: To, Cc and Bcc. */
export const recipientsOf = (m: OutboundMessage): string[] => [...m.to, ...m.cc, ...m.bcc];

/**
 * nodemailer's structured fields for a message: no Bcc header (the envelope carries those recipients), the stored
 * Message-ID and Date (a resend after a crash is recognisable), no X-Mailer.
 */
export function mailFieldsOf(m: OutboundMessage) {
  return {
    from: m.from,
    to: m.to,
    ...(m.cc.length && { cc: m.cc }),
    subject: m.subject,
    ...(m.text !== undefined && { text: m.text }),
    ...(m.html !== undefined && { html: m.html }),
    messageId: m.messageId,
    date: new Date(m.createdAt),
    ...(m.inReplyToMessageId && { inReplyTo: m.inReplyToMessageId, references: [m.inReplyToMessageId] }),
    attachments: m.attachments.map((a) => ({
      filename: a.name,
      contentType: a.contentType,
      content: Buffer.from(a.content, 'base64'),
    })),
    xMailer: false as const,
  };
}

/** Builds the MIME source from the structured fields (for a sent copy whose send happened before a restart). */
export function composeMessage(m: OutboundMessage): Promise<Buffer> {
  return composeMime(mailFieldsOf(m));
}
