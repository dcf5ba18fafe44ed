/**
 * An SMTP submission server for tests (npm smtp-server) on a free loopback port:
 * AUTH PLAIN/LOGIN/XOAUTH2, TLS with a cert from the test CA (STARTTLS or implicit TLS),
 * records every accepted message, and can be told to fail the next N messages (or to quote a failed AUTH line).
 */
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import { createTestCa, type TestCa } from './ca.js';

export interface SmtpServerOptions {
  /** Implicit TLS (SMTPS, "port 465" style). Default false. */
  secure?: boolean;
  /** Offer STARTTLS on the plaintext port (default true; ignored when secure). false = no STARTTLS at all. */
  starttls?: boolean;
  /** Password users: { user: password }. */
  users?: Record<string, string>;
  /** XOAUTH2 access tokens: { token: user }. */
  tokens?: Record<string, string>;
  /**
   * Also accept XOAUTH2 tokens that this RFC 7662 endpoint says are active for the user (`username`, else `sub`),
   * asking with these client credentials (client_secret_post), e.g. `op.introspection` of test/harness/oidc.ts.
   */
  introspection?: { url: string; clientId: string; clientSecret: string };
  /** Test CA for the server certificate (default: a fresh one). */
  ca?: TestCa;
  /** Let clients send mail without AUTH. Default false. */
  authOptional?: boolean;
  /** Quote the client's AUTH PLAIN line in the 535 reply to a wrong password, as some servers do. */
  quoteAuth?: boolean;
}

export interface ReceivedMessage {
  envelope: { mailFrom: string | null; rcptTo: string[] };
  raw: Buffer;
  messageId: string | null;
  user: string | undefined;
}

export type FailStage = 'mail' | 'rcpt' | 'data';

export interface SmtpTestServer {
  host: string;
  port: number;
  caPem: string;
  caFile: string;
  ca: TestCa;
  messages: ReceivedMessage[];
  /** Errors emitted by the server ('error' events), e.g. clients that gave up during TLS. */
  errors: Error[];
  /** Counters of AUTH attempts, for assertions. */
  authAttempts: { ok: number; failed: number };
  addUser(user: string, pass: string): void;
  setAccessToken(token: string, user: string): void;
  /**
   * Make the next `n` transactions fail with `code text` (e.g. 451, '4.3.0 try later').
   * stage 'data' (default) answers the end of DATA; 'rcpt' answers every RCPT TO of the transaction;
   * 'mail' answers MAIL FROM.
   */
  failNext(n: number, code: number, text: string, stage?: FailStage): void;
  stop(): Promise<void>;
}

function smtpError(code: number, text: string): Error {
  return Object.assign(new Error(text), { responseCode: code });
}

function messageIdOf(raw: Buffer): string | null {
  const head = raw.subarray(0, Math.max(0, raw.indexOf('\r\n\r\n')) || raw.length).toString('utf8');
  const m = /^message-id:[ \t]*(.*(?:\r?\n[ \t].*)*)/im.exec(head);
  return m?.[1]?.replace(/\r?\n[ \t]*/g, ' ').trim() || null;
}

/** The user an introspection endpoint says `token` is active for, or undefined. */
async function introspect(
  client: { url: string; clientId: string; clientSecret: string },
  token: string,
): Promise<string | undefined> {
  const res = await fetch(client.url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: new URLSearchParams({ token, client_id: client.clientId, client_secret: client.clientSecret }),
    signal: AbortSignal.timeout(5000),
  });
  if (!res.ok) throw new Error(`introspection answered HTTP ${res.status}`);
  const info = (await res.json()) as { active?: unknown; username?: unknown; sub?: unknown };
  if (info.active !== true) return undefined;
  const user = info.username ?? info.sub;
  return typeof user === 'string' ? user : undefined;
}

export async function startSmtpServer(opts: SmtpServerOptions = {}): Promise<SmtpTestServer> {
  const ca = opts.ca ?? (await createTestCa());
  const cert = await ca.issue('smtp');
  const users = new Map(Object.entries(opts.users ?? {}));
  const tokens = new Map(Object.entries(opts.tokens ?? {}));
  const messages: ReceivedMessage[] = [];
  const errors: Error[] = [];
  const authAttempts = { ok: 0, failed: 0 };
  let fail: { n: number; code: number; text: string; stage: FailStage } | undefined;
  const failedSessions = new Set<string>(); // transactions already counted in 'rcpt' mode

  const takeFailure = (stage: FailStage, sessionId?: string): Error | undefined => {
    if (!fail || fail.stage !== stage) return undefined;
    if (sessionId && failedSessions.has(sessionId)) return smtpError(fail.code, fail.text);
    if (fail.n <= 0) return undefined;
    fail.n--;
    if (sessionId) failedSessions.add(sessionId);
    return smtpError(fail.code, fail.text);
  };

  const options: SMTPServerOptions = {
    secure: !!opts.secure,
    key: cert.keyPem,
    cert: cert.certPem,
    logger: false,
    authMethods: ['PLAIN', 'LOGIN', 'XOAUTH2'],
    authOptional: !!opts.authOptional,
    allowInsecureAuth: true,
    disabledCommands: !opts.secure && opts.starttls === false ? ['STARTTLS'] : [],
    disableReverseLookup: true,
    closeTimeout: 1000,
    size: 25 * 1024 * 1024,
    onAuth(auth, _session, cb) {
      if (auth.method === 'XOAUTH2') {
        const accept = (user: string | undefined) => {
          if (user && user === auth.username) {
            authAttempts.ok++;
            return cb(null, { user });
          }
          authAttempts.failed++;
          cb(null, { data: { status: '401', schemes: 'bearer', scope: 'https://mail.example.com/' } });
        };
        const known = tokens.get(auth.accessToken ?? '');
        if (known || !opts.introspection) return accept(known);
        introspect(opts.introspection, auth.accessToken ?? '').then(accept, (err: Error) => {
          errors.push(err);
          cb(smtpError(454, '4.7.0 Temporary authentication failure'));
        });
        return;
      }
      const pass = users.get(auth.username ?? '');
      if (pass !== undefined && pass === auth.password) {
        authAttempts.ok++;
        return cb(null, { user: auth.username });
      }
      authAttempts.failed++;
      const blob = Buffer.from(`\0${auth.username ?? ''}\0${auth.password ?? ''}`).toString('base64');
      cb(
        smtpError(
          535,
          `5.7.8 Authentication credentials invalid${opts.quoteAuth ? ` (you sent: AUTH PLAIN ${blob})` : ''}`,
        ),
      );
    },
    onMailFrom(_address, session, cb) {
      failedSessions.delete(session.id);
      cb(takeFailure('mail') ?? null);
    },
    onRcptTo(_address, session, cb) {
      cb(takeFailure('rcpt', session.id) ?? null);
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const err = takeFailure('data');
        if (err) return cb(err);
        const raw = Buffer.concat(chunks);
        const mailFrom = session.envelope.mailFrom;
        messages.push({
          envelope: {
            mailFrom: mailFrom ? mailFrom.address : null,
            rcptTo: session.envelope.rcptTo.map((r) => r.address),
          },
          raw,
          messageId: messageIdOf(raw),
          user: typeof session.user === 'string' ? session.user : undefined,
        });
        cb(null, 'OK: message queued');
      });
    },
  };
  const server = new SMTPServer(options);
  server.on('error', (err: Error) => errors.push(err)); // without it a client giving up mid-TLS crashes the process

  await new Promise<void>((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  server.server.unref(); // a forgotten stop() must not keep the test process alive
  const addr = server.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    host: '127.0.0.1',
    port,
    caPem: ca.caPem,
    caFile: ca.caFile,
    ca,
    messages,
    errors,
    authAttempts,
    addUser: (u, p) => void users.set(u, p),
    setAccessToken: (t, u) => void tokens.set(t, u),
    failNext(n, code, text, stage = 'data') {
      fail = { n, code, text, stage };
      failedSessions.clear();
    },
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
