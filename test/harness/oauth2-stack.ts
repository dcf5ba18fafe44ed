/**
 * The OAuth2 test stack: the oidc-provider harness, a private Dovecot whose passdb oauth2 introspects at it, and an
 * SMTP server (XOAUTH2) that does the same, plus logins that say which SASL mechanism Dovecot saw.
 *
 *   const stack = await startOAuth2Stack({ accessTokenTtl: 5 });
 *   await stack.imapLogin('support@example.com', token)  // → 'OAUTHBEARER' (from Dovecot's log)
 *   await stack.close();
 */
import type { ConnectionSettings } from '../../src/adapters/connection.js';
import { verifyImap } from '../../src/adapters/imap.js';
import { verifySmtp } from '../../src/adapters/smtp.js';
import { startDovecot, type Dovecot } from './dovecot.js';
import { startOidcProvider, type OidcOptions, type OidcProvider } from './oidc.js';
import { startSmtpServer, type SmtpTestServer } from './smtp.js';

export interface OAuth2Stack {
  op: OidcProvider;
  dv: Dovecot;
  smtp: SmtpTestServer;
  /** IMAP (implicit TLS) login with the token; resolves with the SASL mechanism Dovecot logged. Throws MailError. */
  imapLogin(user: string, accessToken: string): Promise<string>;
  /** SMTP (STARTTLS) XOAUTH2 login with the token. Throws MailError. */
  smtpLogin(user: string, accessToken: string): Promise<void>;
  close(): Promise<void>;
}

export interface OAuth2StackOptions extends OidcOptions {
  /** Extra dovecot.conf lines, e.g. `auth_mechanisms = plain login xoauth2` to withhold OAUTHBEARER. */
  dovecotConfig?: string;
}

export async function startOAuth2Stack(opts: OAuth2StackOptions = {}): Promise<OAuth2Stack> {
  const op = await startOidcProvider(opts);
  const dv = await startDovecot({
    introspection: op.introspection,
    ...(opts.dovecotConfig && { extraConfig: opts.dovecotConfig }),
  }).catch(async (err: unknown) => {
    await op.close();
    throw err;
  });
  const smtp = await startSmtpServer({ ca: dv.ca, introspection: op.introspection });

  const imapSettings = (user: string, accessToken: string): ConnectionSettings => ({
    host: dv.host,
    port: dv.ports.imaps,
    tls: true,
    allowPlaintext: false,
    caPem: dv.caPem,
    auth: { user, accessToken },
  });
  let loginLines = 0; // "Login:" lines of Dovecot's log already looked at
  return {
    op,
    dv,
    smtp,
    async imapLogin(user, accessToken) {
      await verifyImap(imapSettings(user, accessToken));
      // the log process writes asynchronously: wait for this login's line
      for (let i = 0; i < 100; i++) {
        const logins = (await dv.log()).split('\n').filter((l) => l.includes('imap-login: Info: Login: '));
        const mine = logins.slice(loginLines).find((l) => l.includes(`user=<${user}>`));
        if (mine) {
          loginLines = logins.length;
          return /method=([A-Z0-9-]+)/.exec(mine)?.[1] ?? 'unknown';
        }
        await new Promise((r) => setTimeout(r, 20));
      }
      throw new Error(`Dovecot logged no login of ${user}`);
    },
    smtpLogin: (user, accessToken) =>
      verifySmtp({
        host: smtp.host,
        port: smtp.port,
        tls: false,
        allowPlaintext: false,
        caPem: smtp.caPem,
        auth: { user, accessToken },
      }),
    async close() {
      await smtp.stop();
      await dv.stop();
      await op.close();
    },
  };
}
