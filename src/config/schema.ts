import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsImport from 'ajv-formats';
import { isIP } from 'node:net';
import schemaJson from '../../schema/mailctl.schema.json' with { type: 'json' };
import type { EmailFlow, EmailServer } from '../generated/mailctl.js';
import { clip, diagnostic, type Diagnostic } from './diagnostics.js';
import { describePath, locate, type ParsedDocument } from './parse.js';
import { looksLikeReference } from './secret-ref.js';

const addFormats = addFormatsImport.default; // CJS default export under NodeNext

export const schema = schemaJson;

const HOSTNAME =
  /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;
export const isIpLiteral = (host: string): boolean => isIP(host.replace(/^\[(.*)\]$/, '$1')) !== 0;

function buildValidators(): { server: ValidateFunction<EmailServer>; flow: ValidateFunction<EmailFlow> } {
  const ajv = new Ajv2020({ strict: true, allErrors: true, discriminator: true });
  addFormats(ajv, ['email', 'uri', 'hostname']);
  ajv.addFormat('host', (host: string) => HOSTNAME.test(host) || isIpLiteral(host));
  ajv.addSchema(schemaJson);
  const get = <T>(def: string) => ajv.getSchema<T>(`${schemaJson.$id}#/$defs/${def}`)!;
  return { server: get<EmailServer>('EmailServer'), flow: get<EmailFlow>('EmailFlow') };
}

let validators: ReturnType<typeof buildValidators> | undefined;
const getValidators = () => (validators ??= buildValidators());

/** Compiles the validators now (a few hundred ms of CPU), so the first check does not pay for it. */
export function warmValidators(): void {
  getValidators();
}

/** Per document: a file with 100,000 unknown keys gets a readable report, not 100,000 lines. */
const MAX_SCHEMA_DIAGNOSTICS = 20;

const IMAP_ONLY = [
  'folder',
  'storageFolder',
  'sniServerName',
  'disableCompression',
  'flow',
  'pollSchedule',
  'backfill',
  'maxMessageSize',
];
const SECRET_FIELDS = new Set([
  'password',
  'clientSecret',
  'clientCertificate',
  'clientKey',
  'refreshToken',
  'accessToken',
  'secret',
]);

type Segment = string | number;
const pointerToPath = (pointer: string): Segment[] =>
  pointer === ''
    ? []
    : pointer
        .slice(1)
        .split('/')
        .map((s) => (/^(0|[1-9]\d*)$/.test(s) ? Number(s) : s.replace(/~1/g, '/').replace(/~0/g, '~')));

function valueAt(value: unknown, path: readonly Segment[]): unknown {
  let current = value;
  for (const segment of path)
    current = current && typeof current === 'object' ? (current as Record<string, unknown>)[segment] : undefined;
  return current;
}

/** Shows a value in a message, except where it may be a secret. */
function shown(path: readonly Segment[], value: unknown): string {
  if (SECRET_FIELDS.has(String(path.at(-1)))) return 'the value';
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

const hint = (field: string, candidates: readonly string[]): string => {
  const best = candidates
    .map((c) => ({ c, d: editDistance(field.toLowerCase(), c.toLowerCase()) }))
    .sort((a, b) => a.d - b.d)[0];
  return best && best.d <= 2 ? ` (did you mean "${best.c}"?)` : '';
};

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const current = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1));
      previous = current;
    }
  }
  return row[b.length]!;
}

interface Translated {
  path: Segment[];
  atKey: boolean;
  code: string;
  message: string;
}

/** Turns one ajv error into a message a person can act on; null for umbrella errors that sub-errors explain. */
function translate(error: ErrorObject, document: Record<string, unknown>, kind: string): Translated | null {
  const path = pointerToPath(error.instancePath);
  const where = describePath(path);
  const value = valueAt(document, path);
  const params = error.params as Record<string, unknown>;
  switch (error.keyword) {
    case 'if':
    case 'oneOf':
    case 'anyOf':
    case 'discriminator':
      return error.keyword === 'discriminator'
        ? {
            path: [...path, 'type'],
            atKey: false,
            code: 'invalid-value',
            message: `${where}.type must be "basic" or "oauth2"`,
          }
        : null;
    case 'required': {
      const field = String(params.missingProperty);
      return {
        path,
        atKey: false,
        code: 'missing-field',
        message: `${path.length ? where : kind} is missing the required field "${field}"`,
      };
    }
    case 'additionalProperties': {
      const field = String(params.additionalProperty);
      const known = Object.keys(valueAt(schemaPropertiesFor(kind, path), []) ?? {});
      if (known.includes(field)) {
        // A field of the other variant, e.g. `password` under auth.type oauth2.
        const variant = valueAt(document, [...path, 'type']) ?? '?';
        return {
          path: [...path, field],
          atKey: true,
          code: 'field-not-for-type',
          message:
            `"${field}" does not apply to ${where}.type ` +
            `${typeof variant === 'string' ? variant : JSON.stringify(variant)}`,
        };
      }
      return {
        path: [...path, field],
        atKey: true,
        code: 'unknown-field',
        message:
          `unknown field "${clip(field)}" in ` +
          `${path.length ? where : kind}${field.length <= 64 ? hint(field, known) : ''}`,
      };
    }
    case 'false schema': {
      const field = String(path.at(-1));
      const type = String((document as { type?: unknown }).type);
      const message =
        field === 'reauthenticateOnSave'
          ? 'reauthenticateOnSave applies only to servers with auth.type oauth2'
          : IMAP_ONLY.includes(field)
            ? `"${field}" applies only to imap servers, and this server has type ${type}`
            : `"${field}" applies only to smtp servers, and this server has type ${type}`;
      return { path, atKey: true, code: 'field-not-for-type', message };
    }
    case 'const':
    case 'enum': {
      const field = String(path.at(-1));
      if (field === 'apiVersion')
        return {
          path,
          atKey: false,
          code: 'invalid-api-version',
          message: 'apiVersion must be "mailctl/v1" (or left out)',
        };
      if (field === 'role' && error.keyword === 'const')
        return {
          path,
          atKey: false,
          code: 'field-not-for-type',
          message: 'role: template is only for smtp servers (the server that sends company emails)',
        };
      const allowed = (params.allowedValues as unknown[] | undefined) ?? [params.allowedValue];
      return {
        path,
        atKey: false,
        code: 'invalid-value',
        message: `${where} must be ${allowed.map((v) => JSON.stringify(v)).join(' or ')}, not ${shown(path, value)}`,
      };
    }
    case 'pattern': {
      const field = String(path.at(-1));
      if (SECRET_FIELDS.has(field)) {
        return typeof value === 'string' && looksLikeReference(value)
          ? {
              path,
              atKey: false,
              code: 'invalid-secret-reference',
              message: `${where} is not a valid secret reference; write \${env:NAME} or \${file:/absolute/path}`,
            }
          : {
              path,
              atKey: false,
              code: 'literal-secret',
              message:
                `${where} must be a secret reference, not the secret itself: remove it from the file and write ` +
                `\${env:MAILCTL_SECRET_NAME} or \${file:/run/secrets/name}`,
            };
      }
      return {
        path,
        atKey: false,
        code: 'invalid-value',
        message: `${where} ${patternMeaning(field)}, not ${shown(path, value)}`,
      };
    }
    case 'format':
      return {
        path,
        atKey: false,
        code: 'invalid-value',
        message: `${where} must be ${formatMeaning(String(params.format))}, not ${shown(path, value)}`,
      };
    case 'type':
      return {
        path,
        atKey: false,
        code: 'invalid-type',
        message:
          `${where} must be ${article(String(params.type))}, not ` +
          `${describeType(value, SECRET_FIELDS.has(String(path.at(-1))))}`,
      };
    case 'minProperties':
    case 'maxProperties':
      if (path.at(-1) === 'deliver')
        return {
          path,
          atKey: false,
          code: 'invalid-sink',
          message: 'deliver needs exactly one sink: directory, webhook or postgres',
        };
      if (path.at(-1) === 'oauth2')
        return {
          path,
          atKey: false,
          code: 'missing-field',
          message: `${where} needs an accessToken, or a grant: clientId and tokenUrl (or a provider)`,
        };
      return { path, atKey: false, code: 'invalid-value', message: `${where} ${error.message ?? 'is invalid'}` };
    default:
      return { path, atKey: false, code: 'invalid-value', message: `${where} ${error.message ?? 'is invalid'}` };
  }
}

type SchemaNode = {
  $ref?: string;
  properties?: Record<string, SchemaNode>;
  items?: SchemaNode;
  oneOf?: SchemaNode[];
  anyOf?: SchemaNode[];
  allOf?: SchemaNode[];
};

/** The schema node and its alternatives (`$ref`, `oneOf`, `anyOf`), flattened. */
function alternatives(node: SchemaNode | undefined, out: SchemaNode[] = []): SchemaNode[] {
  if (!node || typeof node !== 'object' || out.length > 50) return out;
  if (node.$ref?.startsWith('#/$defs/'))
    alternatives((schemaJson.$defs as unknown as Record<string, SchemaNode>)[node.$ref.slice(8)], out);
  out.push(node);
  for (const branch of [...(node.oneOf ?? []), ...(node.anyOf ?? [])]) alternatives(branch, out);
  return out;
}

/** Names of the properties the schema allows at `path` of a `kind` document (for did-you-mean hints). */
function schemaPropertiesFor(kind: string, path: readonly Segment[]): Record<string, unknown> | undefined {
  let nodes = alternatives((schemaJson.$defs as unknown as Record<string, SchemaNode>)[kind]);
  for (const segment of path) {
    const next: SchemaNode[] = [];
    for (const node of nodes) {
      const child = typeof segment === 'number' ? node.items : node.properties?.[segment];
      if (child && typeof child === 'object') alternatives(child, next);
    }
    nodes = next;
  }
  const names: Record<string, unknown> = {};
  for (const node of nodes) for (const name of Object.keys(node.properties ?? {})) names[name] = true;
  return names;
}

const article = (type: string) =>
  type === 'integer' ? 'an integer' : type === 'object' ? 'a mapping' : type === 'array' ? 'a list' : `a ${type}`;
/** The kind of a wrong value, and the value itself unless it may be a secret. */
function describeType(value: unknown, secret = false): string {
  if (value === null) return 'empty';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (secret) return `a ${typeof value}`;
  const text = typeof value === 'number' && !Number.isFinite(value) ? String(value) : JSON.stringify(value);
  return `${typeof value} ${text.length > 60 ? `${text.slice(0, 57)}...` : text}`;
}

function patternMeaning(field: string): string {
  switch (field) {
    case 'shortName':
      return 'must start with a letter or digit and contain only letters, digits and . _ @ + -';
    case 'name':
    case 'flow':
      return 'must be lowercase letters, digits and dashes (at most 63, starting with a letter or digit)';
    case 'queue':
      return 'must be lowercase letters, digits, dots, dashes and underscores (at most 63)';
    case 'tlsCaFile':
      return 'must be an absolute path';
    case 'url':
    case 'tokenUrl':
    case 'deviceAuthorizationUrl':
    case 'authorizationUrl':
      return 'must be an http(s) URL';
    case 'tenant':
      return "must be the tenant's directory id (GUID) or domain name";
    default:
      return 'has an invalid form';
  }
}

function formatMeaning(format: string): string {
  switch (format) {
    case 'host':
      return 'a host name or an IP address';
    case 'hostname':
      return 'a host name';
    case 'email':
      return 'an email address';
    case 'uri':
      return 'a URL';
    default:
      return `a valid ${format}`;
  }
}

/**
 * Checks one document against the JSON Schema. Returns the typed resource when valid, otherwise
 * diagnostics positioned on the offending node (or the mapping that lacks a required key).
 */
export function checkSchema(
  parsed: ParsedDocument,
  kind: 'EmailServer' | 'EmailFlow',
): { ok: true; resource: EmailServer | EmailFlow } | { ok: false; diagnostics: Diagnostic[] } {
  const validate = kind === 'EmailServer' ? getValidators().server : getValidators().flow;
  if (validate(parsed.value)) return { ok: true, resource: parsed.value as EmailServer | EmailFlow };
  const seen = new Set<string>();
  const diagnostics: Diagnostic[] = [];
  let notShown = 0;
  for (const error of validate.errors ?? []) {
    // locate() scans a mapping's items and hints compare names: 100,000 unknown keys would take minutes. The
    // first few say enough; the rest are only counted (umbrella errors of oneOf/anyOf/if left out).
    if (diagnostics.length >= MAX_SCHEMA_DIAGNOSTICS) {
      if (!['if', 'oneOf', 'anyOf'].includes(error.keyword)) notShown++;
      continue;
    }
    const t = translate(error, parsed.value, kind);
    if (!t) continue;
    const key = `${t.path.join('/')}|${t.code}`;
    if (seen.has(key)) continue; // anyOf/oneOf branches repeat the same complaint
    seen.add(key);
    diagnostics.push(diagnostic(parsed.file, locate(parsed, t.path, t.atKey), t.code, t.message));
  }
  if (notShown > 0) {
    const last = diagnostics.at(-1)!;
    diagnostics.push({ ...last, message: `${notShown} more problems in this ${kind} are not shown` });
  }
  if (diagnostics.length === 0) {
    diagnostics.push(diagnostic(parsed.file, locate(parsed, []), 'invalid-value', `${kind} is invalid`));
  }
  return { ok: false, diagnostics };
}
