/**
 * `npm run demo [-- --once] [-- --store postgres]`: the whole product on one machine. Starts the test harness's private
 * Dovecot and SMTP server on free loopback ports, points a copy of examples/servers.d at them, runs the daemon, and
 * walks through validate → plan → apply → status, inbound mail (one message per route and an auto-reply), a reply and
 * a template email, and where each ended up. `--store postgres`: the same tour with the daemon's state in a private
 * PostgreSQL and the flows delivering into its queue table, whose rows it shows (and claims one, as a consumer does).
 * Keeps running until Ctrl-C; `--once` stops after the tour.
 */
import { randomBytes } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { isMap, parseAllDocuments, type Document } from 'yaml';
import { startDovecot, type Dovecot } from '../test/harness/dovecot.js';
import { cli, createWorkspace, eventually, startDaemon, type Workspace } from '../test/harness/mailctl.js';
import { startPostgres, type Postgres } from '../test/harness/postgres.js';
import { startSmtpServer, type SmtpTestServer } from '../test/harness/smtp.js';

const once = process.argv.includes('--once');
const storeArg = process.argv[process.argv.indexOf('--store') + 1];
const onPostgres = process.argv.includes('--store') && storeArg === 'postgres';
if (process.argv.includes('--store') && !onPostgres) {
  process.stderr.write('demo: --store takes "postgres" (the default is the state folder)\n');
  process.exit(1);
}
const EXAMPLES = path.resolve('examples/servers.d');
const ACCOUNTS: Record<string, string> = {
  'support@example.com': 'support-demo-password',
  'sales@example.com': 'sales-demo-password',
};
const STORAGE = 'ContactStorage';

const bold =
  process.stdout.isTTY && !process.env.NO_COLOR ? (t: string) => `\u001b[1m${t}\u001b[22m` : (t: string) => t;
const say = (text: string) => process.stdout.write(`\n${bold(`== ${text}`)}\n`);
const show = (text: string) => process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);

async function mailctl(ws: Workspace, args: string[]): Promise<string> {
  show(`$ mailctl ${args.join(' ')}`);
  const r = await cli(args, ws.env);
  show(`${r.stdout}${r.stderr}`.trim());
  show(`(exit ${r.code})`);
  return r.stdout;
}

/** Points one example document at the local servers, keeping its comments. */
function rewrite(
  doc: Document,
  env: { dovecot: Dovecot; smtp: SmtpTestServer; secret: (name: string) => string },
): void {
  if (!isMap(doc.contents)) return;
  const kind = doc.get('kind');
  if (kind === 'EmailFlow') {
    if (onPostgres) {
      doc.set('deliver', doc.createNode({ postgres: { table: 'inbound_messages' } }));
      return;
    }
    const dir = doc.getIn(['deliver', 'directory']);
    if (typeof dir === 'string' && path.isAbsolute(dir))
      doc.setIn(['deliver', 'directory'], `inbound/${path.basename(dir)}`);
    return;
  }
  const type = doc.get('type');
  const user = String(doc.getIn(['auth', 'user']));
  doc.set('host', 'localhost');
  doc.set('tls', false); // STARTTLS required, with the harness's private CA
  doc.set('port', type === 'imap' ? env.dovecot.ports.imap : env.smtp.port);
  doc.set('tlsCaFile', env.dovecot.caFile);
  if (doc.getIn(['auth', 'type']) === 'basic') doc.setIn(['auth', 'password'], `\${file:${env.secret(user)}}`);
  else {
    doc.setIn(['auth', 'oauth2', 'tokenUrl'], env.dovecot.oauthUrl);
    doc.setIn(['auth', 'oauth2', 'clientSecret'], `\${file:${env.secret(`${user}-client-secret`)}}`);
    doc.setIn(['auth', 'oauth2', 'refreshToken'], `\${file:${env.secret(`${user}-refresh-token`)}}`);
  }
}

const sampleMail = (from: string, to: string, subject: string, extra = ''): string =>
  [
    `From: ${from}`,
    `To: ${to}`,
    `Subject: ${subject}`,
    `Message-ID: <${Math.random().toString(36).slice(2)}@demo.example>`,
    `Date: ${new Date().toUTCString()}`,
    extra,
    '',
    `Hello, this is "${subject}".`,
    '',
  ]
    .filter((l, i) => l !== '' || i > 4)
    .join('\r\n');

async function main(): Promise<void> {
  say('Starting a private Dovecot and SMTP server on free loopback ports');
  const dovecot = await startDovecot({ users: ACCOUNTS });
  const smtp = await startSmtpServer({ ca: dovecot.ca, users: ACCOUNTS });
  dovecot.oauth.onMint((token, user) => smtp.setAccessToken(token, user));
  dovecot.setRefreshToken('demo-refresh-token', 'noreply@example.com');
  show(
    `Dovecot: IMAP localhost:${dovecot.ports.imap} (STARTTLS), LMTP :${dovecot.ports.lmtp}; SMTP localhost:${smtp.port}`,
  );

  const ws = await createWorkspace();
  let pg: Postgres | null = null;
  let storeArgs: string[] = [];
  if (onPostgres) {
    say("Starting a private PostgreSQL for the daemon's state (--store postgres)");
    pg = await startPostgres();
    const tokenFile = path.join(ws.root, 'api-token');
    const keyFile = path.join(ws.root, 'credentials-key');
    await writeFile(tokenFile, `${randomBytes(24).toString('base64url')}\n`, { mode: 0o600 });
    await writeFile(keyFile, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
    storeArgs = ['--store', pg.url, '--token-file', tokenFile, '--credentials-key-file', keyFile];
    show(
      `PostgreSQL ${pg.version} on ${pg.host}:${pg.port}; the daemon runs with ${storeArgs.join(' ')} (PGPASSWORD set)`,
    );
  }
  const storageFolders = new Map<string, string>();
  const secrets = new Map<string, string>([
    ...Object.entries(ACCOUNTS),
    ['noreply@example.com-client-secret', 'demo-client-secret'],
    ['noreply@example.com-refresh-token', 'demo-refresh-token'],
  ]);
  const secretFile = (name: string) => path.join(ws.secretsDir, name.replace(/[^A-Za-z0-9.-]/g, '_'));
  for (const [name, value] of secrets) await writeFile(secretFile(name), value, { mode: 0o600 });
  for (const file of (await readdir(EXAMPLES)).filter((f) => f.endsWith('.yaml'))) {
    const docs = parseAllDocuments(await readFile(path.join(EXAMPLES, file), 'utf8'));
    const list = Array.isArray(docs) ? docs : [];
    for (const doc of list) {
      rewrite(doc, { dovecot, smtp, secret: secretFile });
      // The product refuses to start a poller whose storage folder is missing: create each one, as an admin would.
      if (doc.get('type') === 'imap') {
        const user = String(doc.getIn(['auth', 'user']));
        storageFolders.set(user, String((doc.get('storageFolder') as string | undefined) ?? STORAGE));
        await dovecot.createFolder(user, storageFolders.get(user)!);
      }
    }
    await writeFile(path.join(ws.dir, file), list.map((d) => d.toString()).join('---\n'));
  }
  show(`A copy of examples/servers.d pointed at them: ${ws.dir}`);

  say('validate: the folder is checked offline');
  await mailctl(ws, ['validate', '--dir', ws.dir]);
  say('plan: what a first deployment would do (offline, no secret is read)');
  await mailctl(ws, ['plan', '--dir', ws.dir, '--state', 'empty']);

  say('run: the daemon starts (it watches the folder; nothing runs before the first apply)');
  const daemon = await startDaemon(ws, ['--no-watch', '--log-level', 'warn', ...storeArgs], pg?.env ?? {});
  show(`daemon listening on ${daemon.url}, ${pg ? `store ${pg.url}, local` : ''} state folder ${ws.stateDir}`);
  say('apply: every server is verified against the real servers, then its loop starts');
  await mailctl(ws, ['apply', '--dir', ws.dir]);
  await eventually(
    async () =>
      JSON.parse((await cli(['status', '--json'], ws.env)).stdout).servers.every(
        (s: { state: string }) => s.state === 'running',
      ),
    30_000,
    'all loops running',
  );
  say('status');
  await mailctl(ws, ['status']);

  say('Inbound: customers write; each message goes to its queue, into the storage folder, and is marked read');
  const samples: [string, string, string, string?][] = [
    ['ceo@bigcustomer.example', 'support@example.com', 'Our account (VIP route)'],
    ['anna@example.net', 'support@example.com', 'Urgent request (X-Priority route)', 'X-Priority: 1 (Highest)'],
    ['bob@example.net', 'billing@example.com, support@example.com', 'Question (billing by address)'],
    ['carol@example.net', 'support@example.com', 'Refund for invoice 42 (billing by subject)'],
    ['dave@example.net', 'support@example.com', 'The app crashes (default route)'],
    ['erin@example.net', 'support@example.com', 'Out of office (auto-reply)', 'Auto-Submitted: auto-replied'],
    ['frank@partner.example', 'sales@example.com', 'Reseller terms (partners route)'],
    ['grace@example.net', 'sales@example.com', 'Price list please (default route)'],
  ];
  for (const [from, to, subject, extra] of samples) {
    const rcpt = to.includes('sales@') ? 'sales@example.com' : 'support@example.com';
    await dovecot.deliver(rcpt, sampleMail(from, to, subject, extra ?? ''), from);
    show(`delivered: ${subject}`);
  }
  /** What reached the queues: files under the state folder's `inbound/`, or rows of the store's queue table. */
  const inbound = path.join(ws.stateDir, 'inbound');
  const queued = async (): Promise<{ queue: string; key: string; subject: string; autoReply: boolean }[]> => {
    if (pg)
      return (
        await pg.admin(
          'SELECT server, queue, key, subject, auto_reply FROM mailctl.inbound_messages ORDER BY server, queue, key',
          pg.database,
        )
      ).map((r) => ({
        queue: `${String(r.server).replace('imap/', '')}/${String(r.queue)}`,
        key: String(r.key),
        subject: String(r.subject),
        autoReply: r.auto_reply === true,
      }));
    const found: { queue: string; key: string; subject: string; autoReply: boolean }[] = [];
    for (const flow of await readdir(inbound).catch(() => [] as string[])) {
      for (const queue of await readdir(path.join(inbound, flow)).catch(() => [] as string[])) {
        for (const file of (await readdir(path.join(inbound, flow, queue)).catch(() => [] as string[])).filter((f) =>
          f.endsWith('.json'),
        )) {
          const meta = JSON.parse(await readFile(path.join(inbound, flow, queue, file), 'utf8')) as {
            subject: string;
            autoReply: boolean;
          };
          found.push({
            queue: `${flow}/${queue}`,
            key: file.replace(/\.json$/, ''),
            subject: meta.subject,
            autoReply: meta.autoReply,
          });
        }
      }
    }
    return found;
  };
  const arrived = await eventually(
    async () => ((await queued()).length >= samples.length ? queued() : null),
    60_000,
    'every sample in its queue',
  );
  say(
    pg
      ? 'Where they ended up (rows of mailctl.inbound_messages)'
      : `Where they ended up (queue files under ${inbound})`,
  );
  for (const { queue, key, subject, autoReply } of arrived.sort((a, b) => (a.queue < b.queue ? -1 : 1))) {
    show(
      `${queue.padEnd(24)} ${subject.padEnd(44)} ${pg ? key : `${key}.{eml,json}`}${autoReply ? '  (auto-reply)' : ''}`,
    );
  }
  if (pg) {
    say('A consumer claims the oldest unclaimed row of a queue (README: the PostgreSQL sink)');
    const claim = `UPDATE mailctl.inbound_messages SET claimed_at = now(), claimed_by = 'agent-desk-1'
      WHERE key = (SELECT key FROM mailctl.inbound_messages WHERE queue = 'support' AND claimed_at IS NULL
                   ORDER BY received_at LIMIT 1 FOR UPDATE SKIP LOCKED)
      RETURNING key, subject, claimed_by`;
    show(claim.replace(/\s+/g, ' '));
    for (const row of await pg.admin(claim, pg.database)) show(`claimed: ${String(row.key)} "${String(row.subject)}"`);
  }
  for (const [user, folder] of storageFolders) {
    const inbox = await dovecot.listMessages(user, 'INBOX');
    const stored = await dovecot.listMessages(user, folder);
    show(
      `${user}: ${inbox.filter((m) => m.flags.includes('\\Seen')).length}/${inbox.length} INBOX messages \\Seen, ${stored.length} in ${folder}`,
    );
  }

  say(
    'Outbound: an agent replies (sent from the address the customer wrote to) and the company sends a template email',
  );
  const key = arrived.find((a) => a.subject.startsWith('The app crashes'))!.key;
  await mailctl(ws, [
    'send',
    '--in-reply-to',
    key,
    '--to',
    'dave@example.net',
    '--subject',
    'Re: The app crashes',
    '--text',
    'Thanks, Dave: update to 2.1 and it is fixed.',
  ]);
  await mailctl(ws, [
    'send',
    '--template',
    '--to',
    'erin@example.net',
    '--subject',
    'Reset your password',
    '--text',
    'Use this link to choose a new password.',
  ]);
  await eventually(() => smtp.messages.length >= 2, 30_000, 'both emails at the SMTP server');
  for (const m of smtp.messages)
    show(`SMTP server received: from ${m.envelope.mailFrom} to ${m.envelope.rcptTo.join(', ')} (${m.messageId})`);
  const sentCopies = await eventually(
    async () => {
      const stored = await dovecot.listMessages('support@example.com', storageFolders.get('support@example.com'));
      return stored.some((m) => m.messageId === smtp.messages[0]?.messageId) ? stored : null;
    },
    30_000,
    'the sent copy of the reply in the storage folder',
  );
  const copy = sentCopies.find((m) => m.messageId === smtp.messages[0]?.messageId)!;
  show(
    `support@example.com ${storageFolders.get('support@example.com')} now holds ${sentCopies.length} messages, including the sent reply (flags: ${copy.flags.join(' ')})`,
  );
  await mailctl(ws, ['outbox', 'list']);

  const stop = async () => {
    await daemon.stop();
    await smtp.stop();
    await dovecot.stop();
    await pg?.stop();
    await ws.cleanup();
  };
  if (once) {
    await stop();
    say('Tour finished (--once)');
    return;
  }
  say(`The daemon keeps running: try  MAILCTL_STATE_DIR=${ws.stateDir} npx mailctl status   (Ctrl-C to stop)`);
  await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
  await stop();
}

main().catch((err) => {
  process.stderr.write(`demo failed: ${(err as Error).message}\n`);
  process.exit(1);
});
