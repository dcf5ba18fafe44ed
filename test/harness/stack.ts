/**
 * The start-up every integration test shares: a private Dovecot with its users (and each user's storage folder), an
 * SMTP server trusting the same CA when asked, a scratch workspace with each user's password as a secret file, and the
 * daemons the test starts — all stopped and removed by `stop()` (the workspace kept with MAILCTL_KEEP_WS=1).
 *
 *   const stack = await startMailStack({ users: { 'a@example.com': 'pw' }, smtp: true });
 *   await stack.ws.writeServer('a.yaml', imapYaml({ ..., password: stack.ref('a@example.com') }));
 *   const daemon = await stack.startDaemon(['--no-watch']);
 *   ...
 *   await stack.stop();
 */
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { startDovecot, type Dovecot, type DovecotOptions } from './dovecot.js';
import { createWorkspace, startDaemon, type DaemonProcess, type Workspace } from './mailctl.js';
import { startPostgres, type Postgres, type PostgresOptions } from './postgres.js';
import { startSmtpServer, type SmtpServerOptions, type SmtpTestServer } from './smtp.js';

export interface MailStackOptions {
  /** Mailbox users and their passwords (Dovecot's; also the SMTP server's unless `smtp.users` says otherwise). */
  users: Record<string, string>;
  /** Folders created before any daemon starts (a storage folder must exist); default: `ContactStorage` for each user. */
  folders?: Record<string, string[]>;
  /** An SMTP server that trusts the same CA: `true` for the same users, or its own options. */
  smtp?: boolean | Omit<SmtpServerOptions, 'ca'>;
  dovecot?: Omit<DovecotOptions, 'users'>;
  /** Where the daemons keep their state: the state folder (default), or a private PostgreSQL started for the stack. */
  store?: 'file' | 'postgres';
  /** Options of the private PostgreSQL (with `store: 'postgres'`). */
  postgres?: PostgresOptions;
}

/** A checkpoint as the store holds it (the stored form: an untried backlog as `backlog` UID ranges). */
export interface StoredCheckpointView {
  lastUid: number;
  uidValidity: string;
  pending: Record<string, unknown>;
  backlog?: string;
  copyIntent: unknown;
  updatedAt: string;
}

export interface MailStack {
  dovecot: Dovecot;
  /** The SMTP server, or null when none was asked for (reading it then is a test's mistake and throws). */
  smtp: SmtpTestServer;
  ws: Workspace;
  store: 'file' | 'postgres';
  /** The PostgreSQL of a `store: 'postgres'` stack (reading it on a file stack is a test's mistake and throws). */
  pg: Postgres;
  /** What `mailctl run` is given for the store (added to every daemon the stack starts), and its environment. */
  storeArgs: string[];
  storeEnv: NodeJS.ProcessEnv;
  /** The checkpoint of `imap/<shortName>` as the store holds it, or null. */
  checkpoint(server: string): Promise<StoredCheckpointView | null>;
  /** `${file:…}` of the user's password, written to the workspace's secrets folder on first use. */
  ref(user: string): Promise<string>;
  /** Starts a daemon on the workspace; stopped by `stop()` if the test has not. */
  startDaemon(args?: string[], env?: NodeJS.ProcessEnv): Promise<DaemonProcess>;
  stop(): Promise<void>;
}

export async function startMailStack(options: MailStackOptions): Promise<MailStack> {
  const dovecot = await startDovecot({ ...options.dovecot, users: options.users });
  const folders = options.folders ?? Object.fromEntries(Object.keys(options.users).map((u) => [u, ['ContactStorage']]));
  // one doveadm process per folder name for all its users, in the order the names first appear (parents first)
  const byName = new Map<string, string[]>();
  for (const [user, names] of Object.entries(folders))
    for (const name of names)
      byName
        .set(name, byName.get(name) ?? [])
        .get(name)!
        .push(user);
  for (const [name, users] of byName) await dovecot.createFolders(users, name);
  const smtpOptions = options.smtp === true ? { users: options.users } : options.smtp || null;
  const smtp = smtpOptions ? await startSmtpServer({ ...smtpOptions, ca: dovecot.ca }) : null;
  const ws = await createWorkspace();
  const refs = new Map<string, string>();
  const daemons: DaemonProcess[] = [];
  const pg = options.store === 'postgres' ? await startPostgres(options.postgres) : null;
  // a PostgreSQL store keeps only the token's hash: the daemons are given the token…
  const tokenFile = path.join(ws.root, 'api-token-given');
  const keyFile = path.join(ws.root, 'credentials-key-given');
  if (pg) {
    await writeFile(tokenFile, `${randomBytes(24).toString('base64url')}\n`, { mode: 0o600 });
    await writeFile(keyFile, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
  }
  // and so are the token and the credentials key: the same files for every daemon on the store
  const storeArgs = pg ? ['--store', pg.url, '--token-file', tokenFile, '--credentials-key-file', keyFile] : [];
  const storeEnv: NodeJS.ProcessEnv = pg ? pg.env : {};
  return {
    dovecot,
    store: pg ? 'postgres' : 'file',
    get pg(): Postgres {
      if (!pg) throw new Error("this stack keeps its state in files (startMailStack({ store: 'postgres' }))");
      return pg;
    },
    storeArgs,
    storeEnv,
    async checkpoint(server) {
      if (!pg) {
        const file = path.join(ws.stateDir, 'inbound', `${server.replace('/', '_')}.json`);
        const text = await readFile(file, 'utf8').catch(() => null);
        return text === null ? null : (JSON.parse(text) as StoredCheckpointView);
      }
      const rows = await pg.admin(
        `SELECT checkpoint FROM mailctl.checkpoints WHERE server = '${server.replace(/'/g, "''")}'`,
        pg.database,
      );
      return (rows[0]?.checkpoint as StoredCheckpointView | undefined) ?? null;
    },
    get smtp(): SmtpTestServer {
      if (!smtp) throw new Error('this stack has no SMTP server (startMailStack({ smtp: true }))');
      return smtp;
    },
    ws,
    async ref(user) {
      const password = options.users[user];
      if (password === undefined) throw new Error(`${user} is not a user of this stack`);
      let ref = refs.get(user);
      if (!ref) refs.set(user, (ref = `\${file:${await ws.writeSecret(`${user}.password`, password)}}`));
      return ref;
    },
    async startDaemon(args = ['--no-watch'], env = {}) {
      const daemon = await startDaemon(ws, [...storeArgs, ...args], { ...storeEnv, ...env });
      daemons.push(daemon);
      return daemon;
    },
    async stop() {
      await Promise.all(daemons.map((d) => d.kill().catch(() => undefined)));
      await smtp?.stop();
      await dovecot.stop();
      await pg?.stop();
      if (process.env.MAILCTL_KEEP_WS !== '1') await ws.cleanup();
    },
  };
}
