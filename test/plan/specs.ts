/** Complete server specs for plan tests: every field filled in, as the config loader would after defaults. */
import type { ImapServerSpec, SmtpServerSpec } from '../../src/config/model.js';

const envName = (shortName: string) => shortName.toUpperCase().replace(/-/g, '_');

export function imapSpec(shortName: string, over: Partial<ImapServerSpec> = {}): ImapServerSpec {
  return {
    type: 'imap',
    name: `${shortName} inbox`,
    shortName,
    host: 'imap.example.com',
    port: 993,
    tls: true,
    allowPlaintext: false,
    auth: { type: 'basic', user: `${shortName}@example.com`, password: `\${env:${envName(shortName)}_PASSWORD}` },
    role: 'agent',
    enabled: true,
    folder: 'INBOX',
    storageFolder: 'ContactStorage',
    disableCompression: false,
    flow: 'main',
    pollSchedule: '* * * * *',
    backfill: 'unseen',
    maxMessageSize: 41_943_040,
    ...over,
  };
}

export function smtpSpec(shortName: string, over: Partial<SmtpServerSpec> = {}): SmtpServerSpec {
  return {
    type: 'smtp',
    name: `${shortName} outbound`,
    shortName,
    host: 'smtp.example.com',
    port: 465,
    tls: true,
    allowPlaintext: false,
    auth: { type: 'basic', user: `${shortName}@example.com`, password: `\${env:${envName(shortName)}_SMTP_PASSWORD}` },
    role: 'agent',
    enabled: true,
    additionalFromAddresses: [],
    ...over,
  };
}
