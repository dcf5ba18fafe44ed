/** YAML builders for tests: realistic server and flow documents with only the fields a test cares about changed. */

export interface ServerFixture {
  shortName: string;
  user: string;
  port: number;
  host?: string;
  tls?: boolean;
  allowPlaintext?: boolean;
  caFile?: string;
  password: string;
  name?: string;
  enabled?: boolean;
  folder?: string;
  storageFolder?: string;
  flow?: string;
  pollSchedule?: string;
  extra?: string;
  /** The lines of the `auth:` block instead of basic auth with `password` (e.g. an oauth2 block). */
  auth?: string[];
}

function common(type: 'imap' | 'smtp', f: ServerFixture): string {
  return [
    'kind: EmailServer',
    `type: ${type}`,
    `name: ${JSON.stringify(f.name ?? `${type} ${f.shortName}`)}`,
    `shortName: ${f.shortName}`,
    `host: ${f.host ?? 'localhost'}`,
    `port: ${f.port}`,
    `tls: ${f.tls ?? false}`,
    ...(f.allowPlaintext ? ['allowPlaintext: true'] : []),
    ...(f.caFile ? [`tlsCaFile: ${f.caFile}`] : []),
    'auth:',
    ...(f.auth ?? ['  type: basic', `  user: ${f.user}`, `  password: "${f.password}"`]),
    ...(f.enabled === false ? ['enabled: false'] : []),
    ...(f.extra ? [f.extra] : []),
  ].join('\n');
}

export function imapYaml(f: ServerFixture): string {
  return [
    common('imap', f),
    `flow: ${f.flow ?? 'main'}`,
    ...(f.folder ? [`folder: ${f.folder}`] : []),
    ...(f.storageFolder ? [`storageFolder: ${f.storageFolder}`] : []),
    ...(f.pollSchedule ? [`pollSchedule: "${f.pollSchedule}"`] : []),
    '',
  ].join('\n');
}

export function smtpYaml(f: ServerFixture): string {
  return `${common('smtp', f)}\n`;
}

/** The flow of flowYaml, delivering into the PostgreSQL store's queue table `table` instead of a directory. */
export function postgresFlowYaml(name = 'main', table = 'inbound_messages'): string {
  return flowYaml(name).replace('deliver:\n  directory: queues\n', `deliver:\n  postgres: { table: ${table} }\n`);
}

export function flowYaml(name = 'main', directory = 'queues'): string {
  return [
    'kind: EmailFlow',
    `name: ${name}`,
    'routes:',
    '  - queue: billing',
    '    when:',
    '      subject: "*invoice*"',
    '  - queue: general',
    'deliver:',
    `  directory: ${directory}`,
    '',
  ].join('\n');
}

/** `0042` style numbers: a search for one matches exactly one server. */
export const pad4 = (n: number) => String(n).padStart(4, '0');

/** `count` SMTP servers saved as disabled (`smtp/relay-0000` …, hosts `smtp-relay-0000.example.net` …): a big folder. */
export function disabledRelays(count: number, password: string): string {
  return Array.from({ length: count }, (_, i) =>
    smtpYaml({
      shortName: `relay-${pad4(i)}`,
      name: `Relay ${pad4(i)}`,
      user: `relay-${pad4(i)}@example.com`,
      host: `smtp-relay-${pad4(i)}.example.net`,
      port: 587,
      password,
      enabled: false,
    }),
  ).join('---\n');
}

/** A customer's plain message to `to` as an MDA receives it (CRLF line ends). */
export function customerMessage(m: { to: string; id: string; subject: string; body: string }): string {
  return [
    'From: Customer <customer@example.org>',
    `To: ${m.to}`,
    `Subject: ${m.subject}`,
    `Message-ID: ${m.id}`,
    'Date: Sat, 28 Nov 2026 10:00:00 +0000',
    '',
    m.body,
    '',
  ].join('\r\n');
}
