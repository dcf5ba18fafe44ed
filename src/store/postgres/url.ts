/**
 * The store URL (`--store postgres://USER@HOST:PORT/DB?sslmode=…`) → a node-postgres connection, with libpq's meanings
 * implemented here rather than left to node-postgres (which maps `sslmode` differently):
 *  - a password in the URL (`user:pw@`, `?password=`) is refused: it would show in `ps`; it comes from `PGPASSWORD`,
 *    else the passfile (`PGPASSFILE`, default `~/.pgpass`, ignored when others may read it, as libpq does);
 *  - `sslmode`: `disable`; `require` (encrypted, not verified — verified as `verify-ca` when `sslrootcert` is given);
 *    `verify-ca` (the chain, not the name); `verify-full` (chain and name). `sslrootcert` is a PEM file, or `system`
 *    for the system's CAs (also what `verify-*` use without it). The default is `verify-full`, except for loopback
 *    addresses and Unix sockets, where it is `disable`. `allow` and `prefer` are refused: they fall back to plaintext
 *    without saying so;
 *  - a Unix socket is a host that starts with `/` (`?host=/run/postgresql`, or percent-encoded in the URL).
 */
import { readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ConnectionOptions } from 'node:tls';
import { StoreError } from '../errors.js';

export type SslMode = 'disable' | 'require' | 'verify-ca' | 'verify-full';

export interface StoreUrl {
  host: string;
  port: number;
  user: string;
  database: string;
  sslmode: SslMode;
  /** PEM file of the CAs to trust, or `system`; absent: the system's CAs. */
  sslrootcert?: string;
  connectTimeoutS?: number;
  applicationName?: string;
}

const PARAMS = new Set(['sslmode', 'sslrootcert', 'connect_timeout', 'application_name', 'host']);
const MODES: readonly string[] = ['disable', 'require', 'verify-ca', 'verify-full'];

/** What `--store-schema` and queue tables may be called: a PostgreSQL name that needs no quoting. */
export const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;

export const isStoreUrl = (text: string): boolean => /^postgres(ql)?:\/\//i.test(text);

const isSocket = (host: string): boolean => host.startsWith('/');

/** 127.0.0.0/8, ::1 and localhost: the connection never leaves the machine. */
const isLoopbackHost = (host: string): boolean =>
  host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);

function decode(part: string, what: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw new StoreError('store-url', `the store URL has a malformed ${what}`);
  }
}

/** Parses and checks a store URL; the errors never repeat a password. */
export function parseStoreUrl(text: string): StoreUrl {
  const m = /^postgres(?:ql)?:\/\/(?:([^@/?#]*)@)?([^/?#]*)(?:\/([^?#]*))?(?:\?([^#]*))?$/i.exec(text);
  if (!m) throw new StoreError('store-url', 'the store must be "file" or a URL postgres://USER@HOST:PORT/DATABASE');
  const [, userinfo = '', hostport = '', dbPart = '', query = ''] = m;
  const params = new URLSearchParams(query);
  if (userinfo.includes(':') || params.has('password'))
    throw new StoreError(
      'store-url',
      'the store URL must not contain a password (it would show in the process list): give it in PGPASSWORD ' +
        'or a PGPASSFILE',
    );
  for (const name of params.keys())
    if (!PARAMS.has(name))
      throw new StoreError(
        'store-url',
        `the store URL parameter "${name}" is not supported (supported: ${[...PARAMS].join(', ')})`,
      );
  const hp = /^(?:\[([^\]]+)\]|([^:,]*))(?::(\d{1,5}))?$/.exec(hostport);
  if (!hp) throw new StoreError('store-url', 'the store URL has a malformed host (one host, optionally :PORT)');
  const host = params.get('host') ?? decode(hp[1] ?? hp[2] ?? '', 'host');
  if (!host) throw new StoreError('store-url', 'the store URL names no host (HOST, or ?host=/socket/folder)');
  const port = hp[3] ? Number(hp[3]) : 5432;
  if (port < 1 || port > 65535) throw new StoreError('store-url', `the store URL's port ${port} is out of range`);
  const user = userinfo ? decode(userinfo, 'user name') : os.userInfo().username;
  const database = decode(dbPart, 'database name') || user;

  const mode = params.get('sslmode') ?? undefined;
  if (mode !== undefined && !MODES.includes(mode))
    throw new StoreError(
      'store-url',
      mode === 'allow' || mode === 'prefer'
        ? `sslmode=${mode} is refused: it falls back to an unencrypted connection without saying so; use ` +
            'require, verify-ca or verify-full (or disable)'
        : `sslmode=${mode} is not one of ${MODES.join(', ')}`,
    );
  const sslmode = (mode ?? (isSocket(host) || isLoopbackHost(host) ? 'disable' : 'verify-full')) as SslMode;
  if (isSocket(host) && sslmode !== 'disable')
    throw new StoreError(
      'store-url',
      `sslmode=${sslmode} cannot apply to a Unix socket (${host}); use sslmode=disable`,
    );
  const sslrootcert = params.get('sslrootcert') ?? undefined;
  const timeout = params.get('connect_timeout');
  const connectTimeoutS = timeout === null ? undefined : Number(timeout);
  if (connectTimeoutS !== undefined && !(Number.isInteger(connectTimeoutS) && connectTimeoutS > 0))
    throw new StoreError('store-url', `connect_timeout must be a whole number of seconds, not "${timeout}"`);
  return {
    host,
    port,
    user,
    database,
    sslmode,
    ...(sslrootcert !== undefined && { sslrootcert }),
    ...(connectTimeoutS !== undefined && { connectTimeoutS }),
    ...(params.has('application_name') && { applicationName: params.get('application_name')! }),
  };
}

/** The store as messages name it: `postgres://user@host:port/db`, never a password. */
export function describeStoreUrl(url: StoreUrl): string {
  const host = isSocket(url.host) ? '' : url.host.includes(':') ? `[${url.host}]` : url.host;
  const socket = isSocket(url.host) ? `?host=${url.host}` : '';
  return `postgres://${encodeURIComponent(url.user)}@${host}:${url.port}/${encodeURIComponent(url.database)}${socket}`;
}

/** A store URL and schema, checked, as messages name them: `postgres://user@host:port/db (schema s)`. */
export function storeLocation(url: string, schema: string): string {
  if (!IDENTIFIER.test(schema))
    throw new StoreError('store-schema', `--store-schema must be a lower-case PostgreSQL name (${IDENTIFIER.source})`);
  return `${describeStoreUrl(parseStoreUrl(url))} (schema ${schema})`;
}

function readPem(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new StoreError(
      'store-url',
      `cannot read sslrootcert ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
    );
  }
}

/** The TLS options node-postgres gets for `sslmode` (false: no TLS). */
export function tlsOptions(url: StoreUrl): false | ConnectionOptions {
  const explicitCa = url.sslrootcert !== undefined && url.sslrootcert !== 'system';
  const ca = explicitCa ? { ca: readPem(url.sslrootcert!) } : {};
  switch (url.sslmode) {
    case 'disable':
      return false;
    case 'require':
      // libpq: with a root certificate given, require verifies the chain as verify-ca does
      return explicitCa
        ? { ...ca, rejectUnauthorized: true, checkServerIdentity: () => undefined }
        : { rejectUnauthorized: false };
    case 'verify-ca':
      return { ...ca, rejectUnauthorized: true, checkServerIdentity: () => undefined };
    case 'verify-full':
      return { ...ca, rejectUnauthorized: true };
  }
}

/** One passfile line's field: `*` matches anything; `\:` and `\\` are escapes. */
function splitPassLine(line: string): string[] {
  const fields: string[] = [];
  let current = '';
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === '\\' && i + 1 < line.length) current += line[++i];
    else if (c === ':' && fields.length < 4) {
      fields.push(current);
      current = '';
    } else current += c;
  }
  fields.push(current);
  return fields;
}

/**
 * The password for a new connection, read at each connection (a rotated secret is used from the next one on):
 * `PGPASSWORD`, else the first matching line of the passfile. null when there is none.
 */
export function passwordFor(url: StoreUrl, env: NodeJS.ProcessEnv): string | null {
  if (env.PGPASSWORD) return env.PGPASSWORD;
  const file = env.PGPASSFILE ?? (env.HOME ? path.join(env.HOME, '.pgpass') : null);
  if (!file) return null;
  let text: string;
  try {
    // libpq ignores a passfile that the group or others may read
    if ((statSync(file).mode & 0o077) !== 0) return null;
    text = readFileSync(file, 'utf8');
  } catch {
    return null;
  }
  // libpq matches a socket connection as the host name "localhost"
  const wanted = [isSocket(url.host) ? 'localhost' : url.host, String(url.port), url.database, url.user];
  for (const line of text.split(/\r?\n/)) {
    if (!line.trim() || line.startsWith('#')) continue;
    const fields = splitPassLine(line);
    if (fields.length !== 5) continue;
    if (wanted.every((w, i) => fields[i] === '*' || fields[i] === w)) return fields[4]!;
  }
  return null;
}
