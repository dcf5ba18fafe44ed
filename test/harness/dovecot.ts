/**
 * A private, throw-away Dovecot 2.3 for tests: IMAP (STARTTLS) + IMAPS + LMTP on free loopback ports,
 * passwd-file users, OAuth2 (passdb oauth2 → introspection served by this process), test CA from ca.ts.
 *
 *   const dv = await startDovecot({ users: { 'a@example.com': 'pw' } });
 *   ... connect to dv.host / dv.ports.imaps with ca = dv.caPem ...
 *   await dv.stop();
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import nodemailer from 'nodemailer';
import { createSelfSignedCert, createTestCa, type TestCa } from './ca.js';
import { startOAuthServer, type OAuthServer } from './oauth.js';
import { renderDovecotConfig } from './dovecot-config.js';
import { freePorts } from './ports.js';

const run = promisify(execFile);

export interface DovecotOptions {
  /** false → `ssl = no`: the plaintext port does not offer STARTTLS and there is no imaps port (ports.imaps = 0). */
  starttls?: boolean;
  /** Initial passwd-file users: { user: password }. */
  users?: Record<string, string>;
  /** Reuse a CA (e.g. shared with an SMTP harness); default: a fresh one in `dir/tls`. */
  ca?: TestCa;
  /** 'self-signed' → the server presents a self-signed cert (DEPTH_ZERO_SELF_SIGNED_CERT for clients). */
  cert?: 'ca' | 'self-signed';
  /** mail_max_userip_connections (default 1000). */
  maxUserIpConnections?: number;
  /**
   * Validate OAuth2 bearer tokens (XOAUTH2 / OAUTHBEARER) by introspection at this endpoint with these client
   * credentials (e.g. `op.introspection` of test/harness/oidc.ts) instead of the built-in token server, whose
   * setAccessToken()/setRefreshToken() then no longer log anyone in.
   */
  introspection?: { url: string; clientId: string; clientSecret: string };
  /** Extra raw lines appended to dovecot.conf. */
  extraConfig?: string;
  /** Keep the temp dir after stop() (also when env MAILCTL_KEEP_DOVECOT=1). */
  keepDir?: boolean;
}

export interface StoredMessage {
  uid: number;
  flags: string[];
  messageId: string | null;
  size: number;
}

export interface Dovecot {
  host: string;
  ports: { imap: number; imaps: number; lmtp: number };
  /** The test CA the server cert is signed by. */
  caFile: string;
  caPem: string;
  ca: TestCa;
  dir: string;
  configFile: string;
  logFile: string;
  /** OAuth2 token endpoint (POST /token, refresh_token grant). */
  oauthUrl: string;
  oauth: OAuthServer;
  pid: number;
  addUser(user: string, pass: string): Promise<void>;
  setAccessToken(token: string, user: string): void;
  setRefreshToken(refreshToken: string, user: string): void;
  createFolder(user: string, folder: string): Promise<void>;
  /** Creates `folder` for each of `users` with one doveadm process (one per user takes ~50 ms each). */
  createFolders(users: string[], folder: string): Promise<void>;
  deliver(to: string | string[], raw: string | Buffer, from?: string): Promise<void>;
  /** Puts messages into the user's INBOX as an MDA does (Maildir tmp/ → new/): thousands a second, unlike LMTP. */
  dropIntoInbox(user: string, raws: string[]): Promise<void>;
  /**
   * The folder's messages. `size`: `physical` (as stored, LF line ends) by default, or `virtual` (RFC822.SIZE: CRLF
   * line ends, what BODY[] returns).
   */
  listMessages(user: string, folder?: string, size?: 'physical' | 'virtual'): Promise<StoredMessage[]>;
  /** Run doveadm against this instance (e.g. ['mailbox', 'list', '-u', user]); returns stdout. */
  doveadm(args: string[]): Promise<string>;
  log(): Promise<string>;
  stop(): Promise<void>;
}

/** Running masters and their temp dirs; whatever stop() did not handle is cleaned up at process exit. */
const live = new Map<ChildProcess, { dir: string; keep: boolean }>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const [c, { dir, keep }] of live) {
      c.kill('SIGTERM');
      if (!keep) rmSync(dir, { recursive: true, force: true });
    }
  });
}

function findBinary(name: string): string | null {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/local/sbin', '/usr/bin', '/sbin'];
  for (const d of dirs) if (d && existsSync(path.join(d, name))) return path.join(d, name);
  return null;
}

async function ensureDovecot(): Promise<{ dovecot: string; doveadm: string }> {
  const find = () => ({
    dovecot: findBinary('dovecot'),
    doveadm: findBinary('doveadm'),
    imap: existsSync('/usr/lib/dovecot/imap'),
    lmtp: existsSync('/usr/lib/dovecot/lmtp'),
  });
  let found = find();
  const complete = () => !!found.dovecot && !!found.doveadm && found.imap && found.lmtp;
  if (!complete() && process.getuid?.() === 0 && existsSync('/usr/bin/apt-get')) {
    process.stderr.write(
      '[test harness] Dovecot not found: running apt-get update && apt-get install -y dovecot-imapd dovecot-lmtpd\n',
    );
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    await run('apt-get', ['update'], { env, maxBuffer: 64 << 20 });
    await run('apt-get', ['install', '-y', 'dovecot-imapd', 'dovecot-lmtpd'], { env, maxBuffer: 64 << 20 });
    found = find();
  }
  if (complete()) return { dovecot: found.dovecot!, doveadm: found.doveadm! };
  throw new Error(
    'These tests need Dovecot 2.3 with IMAP and LMTP: install the packages "dovecot-imapd" and "dovecot-lmtpd" ' +
      '(Debian/Ubuntu: apt-get install dovecot-imapd dovecot-lmtpd) and run the tests as root. ' +
      `Missing: ${[
        !found.dovecot && 'dovecot',
        !found.doveadm && 'doveadm',
        !found.imap && '/usr/lib/dovecot/imap',
        !found.lmtp && '/usr/lib/dovecot/lmtp',
      ]
        .filter(Boolean)
        .join(', ')}`,
  );
}

/**
 * passdb oauth2 settings for introspection. Dovecot 2.3 POSTs `token=…&client_id=…&client_secret=…` (empty when the
 * settings are unset), i.e. client_secret_post, the client authentication RFC 7662 servers such as oidc-provider
 * require. (Credentials in the URL, `http://id:secret@host/…`, also work: its HTTP client sends them as Basic.)
 */
function introspectionSettings(url: string, client?: { clientId: string; clientSecret: string }): string {
  const lines = [`introspection_mode = post`, `introspection_url = ${url}`, `force_introspection = yes`];
  if (client) lines.push(`client_id = ${client.clientId}`, `client_secret = ${client.clientSecret}`);
  lines.push(`username_attribute = username`, `active_attribute = active`, `active_value = true`);
  return `${lines.join('\n')}\n`;
}

/** Wait until the wall-clock second changes (+ a little), see writeUser. */
async function waitNextSecond(): Promise<void> {
  await new Promise((r) => setTimeout(r, 1000 - (Date.now() % 1000) + 20));
}

function passwdLine(user: string, pass: string): string {
  if (/[:\s/]/.test(user) || user.startsWith('.') || /[:\n\r]/.test(pass))
    throw new Error(`user/password not representable in passwd-file: ${user}`);
  return `${user}:{PLAIN}${pass}\n`;
}

async function waitForGreeting(port: number, child: ChildProcess, deadline: number): Promise<void> {
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error('dovecot exited during startup');
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      let buf = '';
      const done = (v: boolean) => {
        s.destroy();
        resolve(v);
      };
      s.setTimeout(500, () => done(false));
      s.on('data', (c) => {
        buf += c.toString();
        if (buf.includes('\r\n')) done(buf.startsWith('* OK'));
      });
      s.on('error', () => done(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`dovecot did not greet on port ${port} in time`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The processes whose parent is `pid`, and theirs (Linux /proc): Dovecot's login, imap, auth… processes. */
async function descendants(pid: number): Promise<number[]> {
  const parents = new Map<number, number>();
  for (const entry of await readdir('/proc').catch(() => [])) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    // pid (comm) state ppid …: comm may hold spaces and parentheses, so read after the last ')'
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (ppid) parents.set(Number(entry), ppid);
  }
  const found: number[] = [];
  const walk = (parent: number) => {
    for (const [child, ppid] of parents) {
      if (ppid !== parent) continue;
      found.push(child);
      walk(child);
    }
  };
  walk(pid);
  return found;
}

/** Whether `pid` still runs (a zombie, which nobody may reap in a container, does not). */
const alive = (pid: number): boolean => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
};

/**
 * Stops a Dovecot master and everything it started. The master exits at once on SIGTERM, but a session's processes
 * (the imap process, the imap-login process that proxies its TLS) can outlive it by half a minute, still serving the
 * client: a test that stops "the server" must see its connections end. The master is frozen while its children are
 * listed, so it starts none after; those left when it has exited are killed.
 */
async function stopMaster(master: ChildProcess): Promise<void> {
  if (master.exitCode !== null || master.signalCode !== null || master.pid === undefined) return;
  master.kill('SIGSTOP');
  const children = await descendants(master.pid);
  master.kill('SIGTERM');
  master.kill('SIGCONT');
  if (!(await waitExit(master, 5000))) {
    master.kill('SIGKILL');
    await waitExit(master, 2000);
  }
  for (const pid of children.filter(alive)) process.kill(pid, 'SIGKILL');
  for (const deadline = Date.now() + 2000; children.some(alive) && Date.now() < deadline;)
    await new Promise((r) => setTimeout(r, 20));
}

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

export async function startDovecot(opts: DovecotOptions = {}): Promise<Dovecot> {
  if (process.getuid?.() !== 0) throw new Error('startDovecot() runs a private Dovecot as root; run the tests as root');
  const bins = await ensureDovecot();
  const ssl = opts.starttls !== false;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'mailctl-dv-'));
  await chmod(dir, 0o755);
  for (const sub of ['etc', 'tls', 'mail']) await mkdir(path.join(dir, sub), { mode: 0o755 });
  await chown(path.join(dir, 'mail'), 65534, 65534).catch(async () => {
    await run('chown', ['nobody:nogroup', path.join(dir, 'mail')]);
  });

  const ca = opts.ca ?? (await createTestCa());
  const cert =
    opts.cert === 'self-signed' ? await createSelfSignedCert(path.join(dir, 'tls', 'self')) : await ca.issue('dovecot');
  await writeFile(path.join(dir, 'tls', 'server.crt'), cert.certPem);
  await writeFile(path.join(dir, 'tls', 'server.key'), cert.keyPem, { mode: 0o600 });

  // One passwd-file per user (path has %u): Dovecot re-stat()s a passwd-file at most once per second, so a
  // user added to one shared file right after a lookup would stay unknown for up to 1 s; a new file is read at once.
  const usersDir = path.join(dir, 'etc', 'users');
  await mkdir(usersDir, { mode: 0o755 });
  const users = new Map<string, string>();
  const writeUser = async (user: string, pass: string) => {
    const file = path.join(usersDir, user);
    if (users.has(user)) await waitNextSecond(); // same file rewritten: make sure the next stat() sees it
    users.set(user, pass);
    await writeFile(`${file}.tmp`, passwdLine(user, pass), { mode: 0o644 });
    await rename(`${file}.tmp`, file);
  };
  // distinct files: written side by side (a thousand users in well under a second)
  await Promise.all(Object.entries(opts.users ?? {}).map(([u, p]) => writeUser(u, p)));

  const oauth = await startOAuthServer();
  await writeFile(
    path.join(dir, 'etc', 'dovecot-oauth2.conf.ext'),
    introspectionSettings(opts.introspection?.url ?? oauth.introspectionUrl, opts.introspection),
    { mode: 0o644 },
  );

  const configFile = path.join(dir, 'etc', 'dovecot.conf');
  const logFile = path.join(dir, 'dovecot.log');
  const instance = `mailctl-test-${path.basename(dir).slice('mailctl-dv-'.length)}`;
  let child: ChildProcess | undefined;
  let ports: { imap: number; imaps: number; lmtp: number };
  let stderr = '';
  // A port found free can be taken by someone else before Dovecot binds it: retry with new ports.
  for (let attempt = 1; ; attempt++) {
    const [imap, imaps, lmtp] = (await freePorts(3)) as [number, number, number];
    ports = { imap, imaps: ssl ? imaps : 0, lmtp };
    await writeFile(
      configFile,
      renderDovecotConfig({
        dir,
        instance,
        ssl,
        ...ports,
        imaps,
        maxUserIp: opts.maxUserIpConnections ?? 1000,
        extra: opts.extraConfig ?? '',
      }),
    );
    // setpriv --pdeathsig: the master gets SIGTERM if this test process dies without cleaning up.
    const setpriv = findBinary('setpriv');
    const [cmd, args] = setpriv
      ? [setpriv, ['--pdeathsig', 'SIGTERM', bins.dovecot, '-F', '-c', configFile]]
      : [bins.dovecot, ['-F', '-c', configFile]];
    stderr = '';
    const c = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    c.stderr?.on('data', (b: Buffer) => {
      stderr += b.toString();
    });
    live.set(c, { dir, keep: !!opts.keepDir || process.env.MAILCTL_KEEP_DOVECOT === '1' });
    installExitHook();
    c.once('exit', () => live.delete(c));
    try {
      await waitForGreeting(imap, c, Date.now() + 10_000);
      // a forgotten stop() (e.g. a failing before hook) must not keep the test process alive: the exit hook
      // and setpriv's parent-death signal stop the master then
      c.unref();
      (c.stderr as unknown as { unref?: () => void } | null)?.unref?.();
      child = c;
      break;
    } catch (err) {
      c.kill('SIGKILL');
      await waitExit(c, 2000);
      const log = await readFile(logFile, 'utf8').catch(() => '');
      if (attempt < 3 && /Address already in use/.test(stderr + log)) continue;
      await oauth.close();
      if (!opts.keepDir && process.env.MAILCTL_KEEP_DOVECOT !== '1') await rm(dir, { recursive: true, force: true });
      throw new Error(`could not start dovecot (${(err as Error).message})\n${stderr}\n${log.slice(-3000)}`, {
        cause: err,
      });
    }
  }

  const doveadm = async (args: string[]): Promise<string> => {
    try {
      const { stdout } = await run(bins.doveadm, ['-c', configFile, ...args], { maxBuffer: 64 << 20 });
      return stdout;
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new Error(`doveadm ${args.join(' ')} failed: ${e.stderr?.trim() || e.message}`, { cause: err });
    }
  };

  const lmtp = nodemailer.createTransport({
    host: '127.0.0.1',
    port: ports.lmtp,
    lmtp: true,
    ignoreTLS: true,
    secure: false,
    connectionTimeout: 5000,
    greetingTimeout: 5000,
    socketTimeout: 10000,
    logger: false,
  });

  let stopped = false;
  const master = child;
  return {
    host: '127.0.0.1',
    ports,
    caFile: ca.caFile,
    caPem: ca.caPem,
    ca,
    dir,
    configFile,
    logFile,
    oauthUrl: oauth.tokenUrl,
    oauth,
    pid: master.pid ?? 0,
    addUser: writeUser,
    setAccessToken: (token, user) => oauth.setAccessToken(token, user),
    setRefreshToken: (token, user) => oauth.setRefreshToken(token, user),
    async createFolder(user, folder) {
      await doveadm(['mailbox', 'create', '-u', user, folder]);
    },
    async createFolders(users, folder) {
      const list = path.join(dir, 'etc', `users-${randomUUID()}.txt`);
      await writeFile(list, `${users.join('\n')}\n`);
      try {
        await doveadm(['mailbox', 'create', '-F', list, folder]);
      } finally {
        await rm(list, { force: true });
      }
    },
    async deliver(to, raw, from = 'sender@example.org') {
      const rcpts = Array.isArray(to) ? to : [to];
      const info = await lmtp.sendMail({ envelope: { from, to: rcpts }, raw });
      if (info.rejected.length) throw new Error(`LMTP rejected ${info.rejected.join(', ')}: ${info.response}`);
    },
    async dropIntoInbox(user, raws) {
      const root = path.join(dir, 'mail', user);
      for (const sub of ['', 'tmp', 'new', 'cur']) {
        await mkdir(path.join(root, sub), { recursive: true });
        await chown(path.join(root, sub), 65534, 65534);
      }
      await Promise.all(
        raws.map(async (raw) => {
          const name = `${Math.floor(Date.now() / 1000)}.${randomUUID()}.harness`;
          const tmp = path.join(root, 'tmp', name);
          await writeFile(tmp, raw.replace(/\r\n/g, '\n'));
          await chown(tmp, 65534, 65534);
          await rename(tmp, path.join(root, 'new', name));
        }),
      );
    },
    async listMessages(user, folder = 'INBOX', size = 'physical') {
      const out = await doveadm([
        '-f',
        'tab',
        'fetch',
        '-u',
        user,
        `uid flags size.${size} hdr.message-id`,
        'mailbox',
        folder,
        'all',
      ]);
      return out
        .split('\n')
        .slice(1)
        .filter((l) => l.trim() !== '')
        .map((line) => {
          const [uid = '', flags = '', size = '', mid = ''] = line.split('\t');
          return {
            uid: Number(uid),
            flags: flags.split(' ').filter(Boolean),
            size: Number(size),
            messageId: mid.trim() || null,
          };
        });
    },
    doveadm,
    log: () => readFile(logFile, 'utf8').catch(() => ''),
    async stop() {
      if (stopped) return;
      stopped = true;
      lmtp.close();
      await stopMaster(master);
      await oauth.close();
      if (!opts.keepDir && process.env.MAILCTL_KEEP_DOVECOT !== '1') await rm(dir, { recursive: true, force: true });
    },
  };
}
