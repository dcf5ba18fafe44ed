/**
 * Maps imapflow / nodemailer / Node errors to a MailError with a FailureClass and a human message.
 * Messages are built from known fields; any server text that is quoted is passed through `redact()`,
 * so a password or token given in `ctx.secrets` never ends up in a message.
 */
import {
  MailError,
  secretOf,
  type ConnectionSettings,
  type FailureClass,
  type MailErrorOptions,
} from './connection.js';
import { capText } from './text.js';

export interface ClassifyContext {
  /** Where we were connecting to, for the message ("connection refused by host:port"). */
  host?: string | undefined;
  port?: number | undefined;
  user?: string | undefined;
  /** Whether the connection used implicit TLS (changes the hints on greeting timeouts / TLS mix-ups). */
  tls?: boolean | undefined;
  /** Whether OAuth2 was used (changes the wording of auth failures). */
  oauth2?: boolean | undefined;
  /** Strings that must never appear in a message (passwords, tokens, client secrets). */
  secrets?: ReadonlyArray<string | undefined> | undefined;
}

/** The context for `classifyMailError` of a connection: where it went, and the secret to keep out of messages. */
export function errorContext(settings: ConnectionSettings): ClassifyContext {
  return {
    host: settings.host,
    port: settings.port,
    user: settings.auth.user,
    tls: settings.tls,
    oauth2: 'accessToken' in settings.auth,
    secrets: [secretOf(settings.auth)],
  };
}

type Rec = Record<string, unknown>;

const CERT_UNTRUSTED = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
  'CERT_REJECTED',
  'INVALID_CA',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'PATH_LENGTH_EXCEEDED',
  'INVALID_PURPOSE',
]);
const CERT_INVALID = new Set([
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_REVOKED',
  'ERROR_IN_CERT_NOT_BEFORE_FIELD',
  'ERROR_IN_CERT_NOT_AFTER_FIELD',
  'CERT_CHAIN_TOO_LONG',
  'HOSTNAME_MISMATCH',
]);
const NET_CODES = new Set([
  'ECONNRESET',
  'EPIPE',
  'ECONNABORTED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENETDOWN',
  'EADDRNOTAVAIL',
  'NoConnection',
  'EConnectionClosed',
  'ClosedAfterConnectText',
  'ClosedAfterConnectTLS',
  'ECONNECTION',
  'StateLogout',
  'PollFailed',
  'EPROTOCOL',
]);
const TIMEOUT_CODES = new Set([
  'ETIMEDOUT',
  'CONNECT_TIMEOUT',
  'ETIMEOUT',
  'ESOCKETTIMEDOUT',
  'UPGRADE_TIMEOUT',
  'UND_ERR_CONNECT_TIMEOUT',
  'LockTimeout',
]);
const CONFIG_CODES = new Set([
  'MissingServerExtension',
  'ECONFIG',
  'ENOAUTH',
  'ERR_INVALID_URL',
  'UnsupportedProxyAddress',
  'UnsupportedTransportOption',
  'ProxyError',
  'EPROXY',
  'InstanceReused',
  'ERR_INVALID_ARG_TYPE',
  'ERR_INVALID_ARG_VALUE',
]);

/** Failures of this machine's files, not of a server: what each code means. */
const LOCAL_CODES: ReadonlyMap<string, string> = new Map([
  ['ENOSPC', 'no space left on device'],
  ['EDQUOT', 'disk quota exceeded'],
  ['EROFS', 'read-only file system'],
  ['EACCES', 'permission denied'],
  ['EPERM', 'operation not permitted'],
  ['ENAMETOOLONG', 'file name too long'],
]);
/** EACCES and EPERM also come from sockets (a firewall refusing `connect`): local only on a file. */
const SOCKET_SYSCALLS: ReadonlySet<string> = new Set(['connect', 'bind', 'listen', 'getaddrinfo', 'getnameinfo']);

/** Replace every secret with `***`. */
export function redact(text: string, secrets: ReadonlyArray<string | undefined> = []): string {
  let out = text;
  for (const s of secrets) if (s && s.length >= 3) out = out.split(s).join('***');
  return out;
}

/** What providers write when they throttle a login or a connection (Microsoft 365, Gmail, Dovecot and others). */
const THROTTLED_TEXT = new RegExp(
  [
    '\\[THROTTLED\\]',
    'Request is throttled',
    'Backoff Time',
    'too many (simultaneous |concurrent )?connections',
    'Maximum number of connections',
    'connection rate',
    'rate limit',
    'too many (login|auth|messages|requests)',
  ].join('|'),
  'i',
);

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

/** "Suggested Backoff Time: 92415 milliseconds", "try again in 30 seconds", "retry after 2 minutes" → ms. */
export function parseRetryAfterMs(text: string): number | undefined {
  const backoff = /Backoff Time[:=\s]+(\d+)/i.exec(text);
  if (backoff) return Number(backoff[1]);
  const m =
    /(?:retry|try again)\s+(?:after|in)\s+(\d+)\s*(ms|milliseconds?|s|secs?|seconds?|m|mins?|minutes?)?\b/i.exec(text);
  if (!m) return undefined;
  const n = Number(m[1]);
  const unit = (m[2] ?? 's').toLowerCase();
  return unit.startsWith('ms') || unit.startsWith('milli') ? n : unit.startsWith('m') ? n * 60_000 : n * 1000;
}

function where(ctx: ClassifyContext, e: Rec): string {
  const host = ctx.host ?? str(e.host) ?? str(e.hostname) ?? str(e.address);
  const port = ctx.port ?? (typeof e.port === 'number' ? e.port : undefined);
  return host ? (port ? `${host}:${port}` : host) : 'the server';
}

/** All server-provided text of an error, joined (for pattern matching only). */
function serverText(e: Rec): string {
  const parts = [e.message, e.responseText, e.reason, typeof e.response === 'string' ? e.response : undefined];
  return parts.filter((p): p is string => typeof p === 'string').join(' | ');
}

function throttled(e: Rec, text: string, responseCode: number | undefined): { retryAfterMs?: number } | null {
  const src = String((e.serverResponseCode as string | undefined) ?? '').toUpperCase();
  const hit =
    e.code === 'ETHROTTLE' ||
    src === 'THROTTLED' ||
    src === 'LIMIT' ||
    THROTTLED_TEXT.test(text) ||
    responseCode === 421 ||
    (responseCode !== undefined &&
      responseCode >= 400 &&
      responseCode < 500 &&
      /\b4\.7\.\d+\b/.test(text) &&
      /rate|limit|too many|throttl|try (again )?later/i.test(text));
  if (!hit) return null;
  const hint = typeof e.throttleReset === 'number' ? e.throttleReset : parseRetryAfterMs(text);
  return hint !== undefined ? { retryAfterMs: hint } : {};
}

function tlsCertMessage(code: string, reason: string, at: string): string | null {
  if (CERT_UNTRUSTED.has(code)) {
    return (
      `certificate not trusted: ${reason} (${code}) from ${at}; if the server uses a private CA, configure its ` +
      'CA file'
    );
  }
  if (CERT_INVALID.has(code)) return `certificate not valid: ${reason} (${code}) from ${at}`;
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return (
      `certificate name mismatch (${code}) at ${at}: ${reason}; set servername to a name the certificate is ` +
      'issued for'
    );
  }
  return null;
}

export function classifyMailError(err: unknown, ctx: ClassifyContext = {}): MailError {
  const secrets = ctx.secrets ?? [];
  const mk = (cls: FailureClass, message: string, extra: MailErrorOptions = {}) =>
    new MailError(cls, capText(redact(message, secrets)), extra);

  if (err instanceof MailError) {
    const copy = mk(err.failureClass, err.message, {
      code: err.code,
      responseCode: err.responseCode,
      providerCode: err.providerCode,
    });
    if (err.retryAfterMs !== undefined) copy.retryAfterMs = err.retryAfterMs;
    return copy;
  }
  if (typeof err !== 'object' || err === null) return mk('network', `unexpected failure: ${String(err)}`);

  const e = err as Rec;
  const code = str(e.code);
  const originalCode = str(e.originalCode);
  // nodemailer wraps socket/TLS/DNS errors in its own code and keeps Node's in originalCode
  const nodeCode = originalCode ?? code ?? '';
  const responseCode = typeof e.responseCode === 'number' ? e.responseCode : undefined;
  const message = str(e.message) ?? 'unknown error';
  const reason = str(e.reason) ?? message;
  const text = serverText(e);
  const at = where(ctx, e);
  const user = ctx.user ? ` for user "${ctx.user}"` : '';
  const smtpReply = str(e.response);

  // 1. throttling (checked first: servers often say it in an auth or connection failure)
  const thr = throttled(e, text, responseCode);
  if (thr) {
    const when = thr.retryAfterMs !== undefined ? `; retry after ${Math.ceil(thr.retryAfterMs / 1000)} s` : '';
    const said = str(e.responseText) ?? smtpReply ?? str(e.reason) ?? message;
    return mk('throttled', `${at} is throttling us: ${said}${when}`, {
      code: code ?? str(e.serverResponseCode) ?? 'THROTTLED',
      responseCode,
      ...thr,
    });
  }

  // 2. missing folder
  if (code === 'NotFound' || e.mailboxMissing === true) {
    const m = /Mailbox doesn't exist: ([^(\r\n]+?)\s*(?:\(|$)/.exec(text);
    const folder = str(e.path) ?? m?.[1];
    return mk(
      'folder-missing',
      folder ? `folder "${folder}" does not exist on ${ctx.host ?? at}` : `folder does not exist on ${ctx.host ?? at}`,
      { code: code ?? 'NONEXISTENT' },
    );
  }

  // 3. authentication
  if (e.authenticationFailed === true) {
    if (/login is disabled|LOGINDISABLED/i.test(message)) {
      return mk('tls', `${at} refuses to log in without TLS (LOGINDISABLED); use tls: true or STARTTLS`, {
        code: 'LOGINDISABLED',
      });
    }
    const src = str(e.serverResponseCode);
    if (src === 'UNAVAILABLE') {
      return mk('network', `authentication service of ${at} is temporarily unavailable (UNAVAILABLE)`, { code: src });
    }
    const what = ctx.oauth2 || e.oauthError ? 'OAuth2 access token rejected' : 'authentication failed';
    return mk('auth', `${what}${user} on ${at}${src ? ` (${src})` : ''}`, { code: src ?? 'AUTHENTICATIONFAILED' });
  }
  if (code === 'EAUTH' || code === 'EOAUTH2') {
    const reply = smtpReply ? `: ${smtpReply}` : '';
    if (responseCode === 454 || (responseCode !== undefined && responseCode >= 400 && responseCode < 500)) {
      return mk('network', `temporary authentication failure${user} on ${at}${reply}`, { code, responseCode });
    }
    if (/STARTTLS/i.test(smtpReply ?? '') || responseCode === 538) {
      return mk('tls', `${at} requires TLS before authentication${reply}`, { code, responseCode });
    }
    const what = ctx.oauth2 || code === 'EOAUTH2' ? 'OAuth2 access token rejected' : 'authentication failed';
    return mk('auth', `${what}${user} on ${at}${reply}`, { code, responseCode });
  }

  // 4. TLS
  const certMsg = tlsCertMessage(
    nodeCode,
    str(e.reason) ?? (originalCode ? message.replace(/^[^:]*error: /i, '') : message),
    at,
  );
  if (certMsg) return mk('tls', certMsg, { code: nodeCode });
  if (
    nodeCode.startsWith('ERR_SSL_') ||
    nodeCode === 'ERR_TLS_HANDSHAKE_TIMEOUT' ||
    /wrong version number/i.test(text)
  ) {
    const hint =
      ctx.tls !== false
        ? ' — the port does not speak TLS right away; if it is a plaintext/STARTTLS port (143/587/25) set tls: false'
        : '';
    return mk('tls', `TLS handshake with ${at} failed: ${reason}${hint} (${nodeCode || 'TLS'})`, {
      code: nodeCode || 'TLS',
    });
  }
  if (
    /does not support STARTTLS/i.test(message) ||
    (code === 'ETLS' && /STARTTLS/i.test(String((e.command as string | undefined) ?? '')))
  ) {
    return mk(
      'tls',
      `${at} does not offer STARTTLS; refusing to send credentials in plaintext ` +
        `(set allowPlaintext: true only if that is really intended)`,
      { code: code ?? 'STARTTLS', responseCode },
    );
  }
  if (code === 'STARTTLS_INJECTION') {
    return mk(
      'tls',
      `${at} sent data before the STARTTLS handshake (possible injection attack); refusing to continue`,
      { code },
    );
  }
  if (e.tlsFailed === true || code === 'ETLS') {
    return mk('tls', `TLS with ${at} failed: ${reason}${nodeCode ? ` (${nodeCode})` : ''}`, {
      code: nodeCode || 'TLS',
    });
  }

  // 5. this machine's files (checked before the network: a file error has a syscall too)
  const local = LOCAL_CODES.get(nodeCode);
  const syscall = str(e.syscall);
  if (local && (str(e.path) !== undefined || (syscall !== undefined && !SOCKET_SYSCALLS.has(syscall)))) {
    const what = [syscall, str(e.path)].filter(Boolean).join(' ');
    return mk('local', `${local} (${nodeCode})${what ? `: ${what}` : ''}`, { code: nodeCode });
  }

  // 6. network
  if (nodeCode === 'ECONNREFUSED') return mk('network', `connection refused by ${at}`, { code: nodeCode });
  if (nodeCode === 'ENOTFOUND' || nodeCode === 'EAI_NONAME' || nodeCode === 'EAI_NODATA') {
    const host = ctx.host ?? str(e.hostname) ?? at;
    return mk('network', `host name "${host}" not found (DNS ${nodeCode})`, { code: nodeCode });
  }
  if (nodeCode === 'EAI_AGAIN' || code === 'EDNS') {
    return mk('network', `DNS lookup of "${ctx.host ?? str(e.hostname) ?? at}" failed: ${message} (${nodeCode})`, {
      code: nodeCode,
    });
  }
  if (nodeCode === 'GREETING_TIMEOUT' || /greeting never received/i.test(message)) {
    const hint = ctx.tls === false ? '; if this is an implicit-TLS port (993/465) set tls: true' : '';
    return mk('network', `${at} did not send a greeting in time${hint}`, { code: nodeCode || 'GREETING_TIMEOUT' });
  }
  if (TIMEOUT_CODES.has(nodeCode) || TIMEOUT_CODES.has(code ?? '')) {
    return mk('network', `connection to ${at} timed out (${nodeCode})`, { code: nodeCode });
  }
  if (NET_CODES.has(nodeCode) || NET_CODES.has(code ?? '') || code === 'ESOCKET' || typeof e.syscall === 'string') {
    return mk('network', `connection to ${at} failed: ${reason} (${nodeCode || 'ESOCKET'})`, {
      code: nodeCode || 'ESOCKET',
    });
  }

  // 7. configuration
  if (CONFIG_CODES.has(nodeCode)) return mk('config', `${message} (${nodeCode})`, { code: nodeCode });

  // 8. SMTP replies to MAIL/RCPT/DATA (not throttling, see 1.)
  if (responseCode !== undefined) {
    const reply = smtpReply ?? message;
    if (responseCode >= 400 && responseCode < 500) {
      return mk('network', `${at} temporarily rejected the message: ${reply}`, {
        code,
        responseCode,
        retryAfterMs: parseRetryAfterMs(reply),
      });
    }
    return mk('config', `${at} rejected the message: ${reply}`, { code, responseCode });
  }

  return mk('network', `${message}${code ? ` (${code})` : ''}`, { code });
}
