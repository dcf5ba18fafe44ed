/**
 * SMTP adapter on nodemailer.
 *
 * TLS policy (from ConnectionSettings):
 *  - tls: true                          → implicit TLS (`secure: true`, port 465 style)
 *  - tls: false, allowPlaintext: false  → STARTTLS is REQUIRED (`requireTLS: true`): no STARTTLS → class 'tls'
 *  - tls: false, allowPlaintext: true   → opportunistic: STARTTLS when offered (certificate must verify),
 *                                         plaintext otherwise
 * `ignoreTLS` is never set and certificate verification is never switched off.
 */
import { Transform } from 'node:stream';
import type { PluginFunction } from 'nodemailer/lib/mailer';
import type { XOAuth2ProvisionResultCallback } from 'nodemailer/lib/xoauth2';
import nodemailer, {
  type SendMailOptions,
  type SMTPPoolOptions,
  type SMTPSentMessageInfo,
  type SMTPTransportOptions,
  type Transporter,
} from 'nodemailer';
import { classifyMailError, errorContext } from './classify.js';
import type { ConnectionSettings, OAuth2Login } from './connection.js';

/** bunyan/pino-style logger accepted by nodemailer. */
export interface SmtpLogger {
  debug?(...args: unknown[]): unknown;
  info?(...args: unknown[]): unknown;
  warn?(...args: unknown[]): unknown;
  error?(...args: unknown[]): unknown;
  [level: string]: unknown;
}

export interface SmtpTransportExtra {
  /** Keep connections open and reuse them (nodemailer SMTP pool). Default false. */
  pool?: boolean | undefined;
  /** Pool only: parallel connections (default 2) and messages per connection (default 100). */
  maxConnections?: number | undefined;
  maxMessages?: number | undefined;
  /** Default: no logging. */
  logger?: SmtpLogger | false | undefined;
  /** Defaults: connect 15 s, greeting 10 s, socket 60 s, DNS 10 s. */
  connectionTimeout?: number | undefined;
  greetingTimeout?: number | undefined;
  socketTimeout?: number | undefined;
  dnsTimeout?: number | undefined;
  /** EHLO name (default: nodemailer's, the OS host name). */
  name?: string | undefined;
}

export type SmtpTransport = Transporter<SMTPSentMessageInfo>;

export function smtpTransportOptions(
  settings: ConnectionSettings,
  extra: SmtpTransportExtra = {},
): SMTPTransportOptions | SMTPPoolOptions {
  const auth =
    'pass' in settings.auth ? { user: settings.auth.user, pass: settings.auth.pass } : oauth2Auth(settings.auth);
  const opts: SMTPPoolOptions = {
    host: settings.host,
    port: settings.port,
    secure: settings.tls,
    requireTLS: !settings.tls && !settings.allowPlaintext,
    ignoreTLS: false,
    auth,
    tls: {
      rejectUnauthorized: true,
      ...(settings.caPem ? { ca: settings.caPem } : {}),
      ...(settings.servername ? { servername: settings.servername } : {}),
    },
    logger: extra.logger ?? false,
    connectionTimeout: extra.connectionTimeout ?? 15_000,
    greetingTimeout: extra.greetingTimeout ?? 10_000,
    socketTimeout: extra.socketTimeout ?? 60_000,
    dnsTimeout: extra.dnsTimeout ?? 10_000,
  };
  if (settings.servername) opts.servername = settings.servername;
  if (extra.name) opts.name = extra.name;
  if (extra.pool) {
    opts.pool = true;
    if (extra.maxConnections !== undefined) opts.maxConnections = extra.maxConnections;
    if (extra.maxMessages !== undefined) opts.maxMessages = extra.maxMessages;
  }
  return opts;
}

/**
 * XOAUTH2 for nodemailer. With `renew`, every connection opened after the token's expiry (a pool opens them as it
 * goes, and `verify` opens one) asks for a valid token instead of logging in with the expired one.
 */
function oauth2Auth(login: OAuth2Login): NonNullable<SMTPTransportOptions['auth']> {
  const { renew } = login;
  let current = login.accessToken;
  return {
    type: 'OAuth2',
    user: login.user,
    accessToken: login.accessToken,
    ...(login.expiresAt !== undefined && { expires: login.expiresAt }),
    ...(renew && {
      // `rejected`: the server refused the token it was given (revoked before its expiry)
      provisionCallback: (_user: string, rejected: boolean, done: XOAuth2ProvisionResultCallback) =>
        void renew(rejected ? current : undefined).then(
          (token) => {
            current = token.accessToken;
            done(null, token.accessToken, token.expiresAt);
          },
          (err: Error) => done(err),
        ),
    }),
  };
}

export function createSmtpTransport(settings: ConnectionSettings, extra: SmtpTransportExtra = {}): SmtpTransport {
  const opts = smtpTransportOptions(settings, extra);
  const transport: SmtpTransport = extra.pool
    ? nodemailer.createTransport({ ...opts, pool: true })
    : nodemailer.createTransport(opts);
  // a pooled transport emits 'error' for idle connections that fail; never let that crash the process
  transport.on('error', () => {});
  transport.use('stream', attachCapture);
  return transport;
}

/** The key under which `sendSmtpCapturing` asks the 'stream' plugin below for the bytes nodemailer sends. */
const CAPTURE = 'mailctlCapture';

/** nodemailer 'stream' plugin: taps the compiled message on its way to the server when the sender asked for it. */
const attachCapture: PluginFunction<SMTPSentMessageInfo> = (mail, done) => {
  const onSource = (mail.data as Record<string, unknown>)[CAPTURE];
  if (typeof onSource === 'function') {
    mail.message.transform(() => {
      const chunks: Buffer[] = [];
      return new Transform({
        transform(chunk: Buffer, _encoding, next) {
          chunks.push(chunk);
          next(null, chunk);
        },
        flush(next) {
          (onSource as (source: Buffer) => void)(Buffer.concat(chunks));
          next();
        },
      });
    });
  }
  done();
};

/** Connect, (STARTTLS,) log in, quit. Resolves or throws MailError. */
export async function verifySmtp(settings: ConnectionSettings, extra: SmtpTransportExtra = {}): Promise<void> {
  const transport = createSmtpTransport(settings, { ...extra, pool: false });
  try {
    await transport.verify();
  } catch (err) {
    throw classifyMailError(err, errorContext(settings));
  } finally {
    transport.close();
  }
}

/** Send one message, mapping failures to MailError (e.g. 451 → network, 421 / 4.7.x rate → throttled). */
export async function sendSmtp(
  transport: SmtpTransport,
  settings: ConnectionSettings,
  message: SendMailOptions,
): Promise<SMTPSentMessageInfo> {
  try {
    return await transport.sendMail(message);
  } catch (err) {
    throw classifyMailError(err, errorContext(settings));
  }
}

/**
 * Sends a message built by nodemailer from structured fields and returns the exact MIME source it sent, composed once
 * (the sent copy needs the same bytes; composing them first and sending them raw costs a second pass through
 * nodemailer's streams).
 */
export async function sendSmtpCapturing(
  transport: SmtpTransport,
  settings: ConnectionSettings,
  message: SendMailOptions,
): Promise<{ info: SMTPSentMessageInfo; source: Buffer }> {
  let source: Buffer | null = null;
  const info = await sendSmtp(transport, settings, {
    ...message,
    [CAPTURE]: (s: Buffer) => (source = s),
  } as SendMailOptions);
  if (!source) throw new Error('nodemailer sent the message without passing it through the capture plugin');
  return { info, source };
}
