/**
 * A private, throw-away PostgreSQL for tests: its own cluster (initdb) in a temp dir, TCP on a free loopback port
 * with scram-sha-256 for an application role, the superuser over the Unix socket in that dir (peer), optional TLS
 * with a certificate from the test CA.
 *
 *   const db = await startPostgres({ tls: true });
 *   const client = new Client({ host: db.host, port: db.port, user: db.user, password: db.password,
 *                               database: db.database, ssl: { ca: db.caPem } });
 *   await db.admin('select 1');
 *   await db.stop();
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync, readdirSync, rmSync, statSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Client, escapeIdentifier, escapeLiteral } from 'pg';
import { createTestCa, type TestCa } from './ca.js';
import { freePort } from './ports.js';

const run = promisify(execFile);

export interface PostgresOptions {
  /** `ssl = on` with a certificate from the test CA for localhost and 127.0.0.1; TCP clients must then use TLS. */
  tls?: boolean;
  /** Reuse a CA (e.g. one shared with Dovecot); default: a fresh one in `dir/tls/ca`. Only with `tls`. */
  ca?: TestCa;
  /** Application role (default `mailctl`). */
  user?: string;
  /** Database owned by the application role (default: the role's name). */
  database?: string;
  /** Extra raw lines for postgresql.conf (e.g. `max_connections = 20`). */
  extraConfig?: string;
  /** Keep the temp dir after stop() (also when env MAILCTL_KEEP_PG=1). */
  keepDir?: boolean;
}

export interface Postgres {
  host: string;
  port: number;
  database: string;
  user: string;
  password: string;
  /** `postgres://user@host:port/database`: no password (that comes from `env.PGPASSWORD` or `password`). */
  url: string;
  env: { PGPASSWORD: string };
  /** The test CA that signed the server certificate (with `tls`). */
  caFile?: string;
  caPem?: string;
  /** Server major version, e.g. 15. */
  version: number;
  dir: string;
  logFile: string;
  /** Run SQL as the superuser over the Unix socket (default database `postgres`); the rows of the last statement. */
  admin(sql: string, database?: string): Promise<Record<string, unknown>[]>;
  /** Create a database owned by the application role. */
  createDatabase(name: string): Promise<void>;
  /**
   * Stop and start again on the same port. `immediate` (default): no shutdown checkpoint, crash recovery at start,
   * like a crash; `fast`: clean shutdown. Either way every open connection is cut.
   */
  restart(opts?: { mode?: 'immediate' | 'fast' }): Promise<void>;
  /** `pg_dump --data-only` of a database (default: `database`) as text. */
  dumpDataOnly(database?: string): Promise<string>;
  log(): Promise<string>;
  stop(): Promise<void>;
}

interface Bins {
  initdb: string;
  postgres: string;
  pgDump: string;
}

const SUPERUSER = 'postgres';
const keepAll = () => process.env.MAILCTL_KEEP_PG === '1';

/** Running postmasters and their temp dirs; whatever stop() did not handle is cleaned up at process exit. */
const live = new Map<ChildProcess, { dir: string; keep: boolean }>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const [c, { dir, keep }] of live) {
      c.kill('SIGQUIT'); // immediate shutdown: the postmaster takes its backends down with it
      if (!keep) rmSync(dir, { recursive: true, force: true });
    }
  });
}

function findBins(): Bins | null {
  // Debian keeps each major's server binaries in /usr/lib/postgresql/<major>/bin, off PATH: the newest wins
  const root = '/usr/lib/postgresql';
  const majors = existsSync(root)
    ? readdirSync(root)
        .filter((d) => /^\d+$/.test(d))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  const dirs = [...majors.map((m) => path.join(root, m, 'bin')), ...(process.env.PATH ?? '').split(':')];
  for (const d of dirs) {
    if (!d) continue;
    const bins = {
      initdb: path.join(d, 'initdb'),
      postgres: path.join(d, 'postgres'),
      pgDump: path.join(d, 'pg_dump'),
    };
    if (Object.values(bins).every((b) => existsSync(b))) return bins;
  }
  return null;
}

async function ensurePostgres(): Promise<Bins> {
  let bins = findBins();
  if (!bins && process.getuid?.() === 0 && existsSync('/usr/bin/apt-get')) {
    process.stderr.write(
      '[test harness] PostgreSQL not found: running apt-get update && apt-get install -y postgresql\n',
    );
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    await run('apt-get', ['update'], { env, maxBuffer: 64 << 20 });
    await run('apt-get', ['install', '-y', 'postgresql'], { env, maxBuffer: 64 << 20 });
    bins = findBins();
  }
  if (bins) return bins;
  throw new Error(
    'These tests need a PostgreSQL server (initdb, postgres, pg_dump): install the package "postgresql" ' +
      '(Debian/Ubuntu: apt-get install postgresql, and run the tests as root or as a user that may run initdb) ' +
      'or put the bin folder of a PostgreSQL installation on PATH.',
  );
}

async function osUser(name: string): Promise<{ uid: number; gid: number }> {
  try {
    const [uid, gid] = await Promise.all([run('id', ['-u', name]), run('id', ['-g', name])]);
    return { uid: Number(uid.stdout), gid: Number(gid.stdout) };
  } catch (err) {
    throw new Error(`running PostgreSQL as root needs the OS user "${name}" (the postgresql package creates it)`, {
      cause: err,
    });
  }
}

/**
 * A temp base the postgres OS user can reach: as root, os.tmpdir() may sit under a folder only root may enter
 * (e.g. TMPDIR=/root/tmp), and initdb then fails with "Permission denied".
 */
function tempBase(): string {
  const base = os.tmpdir();
  if (process.getuid?.() !== 0) return base;
  for (let d = base; ; d = path.dirname(d)) {
    if ((statSync(d).mode & 0o001) === 0) return '/tmp';
    if (d === path.dirname(d)) return base;
  }
}

function onPath(name: string): string | null {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/bin', '/bin'];
  for (const d of dirs) if (d && existsSync(path.join(d, name))) return path.join(d, name);
  return null;
}

/**
 * As root, initdb and postgres (which refuse to run as root) run as the postgres OS user, through setpriv
 * (util-linux); its --pdeathsig makes the postmaster shut down at once if this test process dies without cleaning up.
 */
function asServerUser(cmd: string, args: string[], pdeathsig: boolean): [string, string[]] {
  const setpriv = onPath('setpriv');
  if (process.getuid?.() === 0) {
    if (!setpriv) throw new Error('running PostgreSQL as root needs setpriv (Debian package util-linux)');
    const prefix = [`--reuid=${SUPERUSER}`, `--regid=${SUPERUSER}`, '--init-groups'];
    return [setpriv, [...prefix, ...(pdeathsig ? ['--pdeathsig', 'SIGQUIT'] : []), '--', cmd, ...args]];
  }
  return setpriv && pdeathsig ? [setpriv, ['--pdeathsig', 'SIGQUIT', '--', cmd, ...args]] : [cmd, args];
}

const quoteConf = (s: string) => `'${s.replace(/'/g, "''")}'`;

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

/** Ready when postmaster.pid names this child and says "ready" (what `pg_ctl start -w` waits for). */
async function waitReady(dataDir: string, child: ChildProcess, deadline: number): Promise<void> {
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error('postgres exited during startup');
    const lines = (await readFile(path.join(dataDir, 'postmaster.pid'), 'utf8').catch(() => '')).split('\n');
    if (lines[0] === String(child.pid) && lines[7]?.trim() === 'ready') return;
    if (Date.now() > deadline) throw new Error('postgres was not ready in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

export async function startPostgres(opts: PostgresOptions = {}): Promise<Postgres> {
  const bins = await ensurePostgres();
  const root = process.getuid?.() === 0;
  const owner = root ? await osUser(SUPERUSER) : null;
  const keep = !!opts.keepDir || keepAll();
  const user = opts.user ?? 'mailctl';
  const database = opts.database ?? user;
  const password = randomBytes(18).toString('base64url');

  const dir = await mkdtemp(path.join(tempBase(), 'mailctl-pg-'));
  const dataDir = path.join(dir, 'data');
  const logFile = path.join(dir, 'postgres.log');
  const { stdout: versionText } = await run(bins.postgres, ['--version']);
  const version = Number(/ (\d+)/.exec(versionText)?.[1] ?? NaN);

  const server = { child: null as ChildProcess | null, port: 0 };
  try {
    // the socket (and its lock file) goes into `dir`, so the server user must own it
    await chmod(dir, 0o755);
    if (owner) await chown(dir, owner.uid, owner.gid);

    let ssl = '';
    let ca: TestCa | undefined;
    if (opts.tls) {
      const tlsDir = path.join(dir, 'tls');
      await mkdir(tlsDir, { mode: 0o755 });
      ca = opts.ca ?? (await createTestCa(path.join(tlsDir, 'ca')));
      const cert = await ca.issue('postgres');
      const certFile = path.join(tlsDir, 'server.crt');
      const keyFile = path.join(tlsDir, 'server.key');
      await writeFile(certFile, cert.certPem);
      await writeFile(keyFile, cert.keyPem, { mode: 0o600 }); // postgres refuses a key others can read
      if (owner) for (const f of [certFile, keyFile]) await chown(f, owner.uid, owner.gid);
      ssl = `ssl = on\nssl_cert_file = ${quoteConf(certFile)}\nssl_key_file = ${quoteConf(keyFile)}\n`;
    }

    const [initdb, initdbArgs] = asServerUser(
      bins.initdb,
      ['-D', dataDir, '-U', SUPERUSER, '-E', 'UTF8', '--no-locale', '--no-sync', '--auth', 'reject'],
      false,
    );
    await run(initdb, initdbArgs, { cwd: dir, maxBuffer: 16 << 20 }).catch(
      (err: { stdout?: string; stderr?: string }) => {
        throw new Error(`initdb failed:\n${err.stdout ?? ''}${err.stderr ?? ''}`, { cause: err });
      },
    );

    // initdb made these files as the server user (mode 0600); writing over them keeps owner and mode
    await writeFile(
      path.join(dataDir, 'pg_hba.conf'),
      `local all ${SUPERUSER} peer map=admin\n${opts.tls ? 'hostssl' : 'host'} all all 127.0.0.1/32 scram-sha-256\n`,
    );
    await writeFile(path.join(dataDir, 'pg_ident.conf'), `admin ${os.userInfo().username} ${SUPERUSER}\n`);
    const confFile = path.join(dataDir, 'postgresql.conf');
    const baseConf = await readFile(confFile, 'utf8');
    const writeConf = (port: number) =>
      writeFile(
        confFile,
        `${baseConf}\n# private test instance (test/harness/postgres.ts)\n` +
          `listen_addresses = '127.0.0.1'\nport = ${port}\n` +
          `unix_socket_directories = ${quoteConf(dir)}\nunix_socket_permissions = 0700\n` +
          // fsync and full-page writes only matter when the OS crashes; synchronous_commit stays on, or a commit made
          // just before restart({ mode: 'immediate' }) is lost (it waits in WAL buffers that the crash discards)
          `fsync = off\nfull_page_writes = off\nshared_buffers = 32MB\n` +
          `${ssl}${opts.extraConfig ?? ''}\n`,
      );

    /** Start the postmaster; null when it runs, the log of this attempt when its port was taken. */
    const launch = async (): Promise<string | null> => {
      const logFd = openSync(logFile, 'a');
      const logStart = statSync(logFile).size;
      const [cmd, args] = asServerUser(bins.postgres, ['-D', dataDir], true);
      const c = spawn(cmd, args, { cwd: dir, stdio: ['ignore', logFd, logFd] });
      closeSync(logFd);
      live.set(c, { dir, keep });
      installExitHook();
      c.once('exit', () => live.delete(c));
      server.child = c;
      try {
        await waitReady(dataDir, c, Date.now() + 30_000);
        // a forgotten stop() must not keep the test process alive: the exit hook and pdeathsig stop the server then
        c.unref();
        return null;
      } catch (err) {
        c.kill('SIGQUIT');
        if (!(await waitExit(c, 5000))) c.kill('SIGKILL');
        const log = (await readFile(logFile, 'utf8')).slice(logStart);
        if (/could not bind .*Address already in use/.test(log)) return log;
        throw new Error(`could not start postgres (${(err as Error).message})\n${log.slice(-3000)}`, { cause: err });
      }
    };

    // a port found free can be taken before postgres binds it: retry with a new one
    for (let attempt = 1; ; attempt++) {
      server.port = await freePort();
      await writeConf(server.port);
      const clash = await launch();
      if (clash === null) break;
      if (attempt === 3) throw new Error(`could not start postgres: port taken 3 times\n${clash.slice(-3000)}`);
    }

    const port = server.port;
    const admin = async (sql: string, db = 'postgres'): Promise<Record<string, unknown>[]> => {
      const c = new Client({ host: dir, port, user: SUPERUSER, database: db });
      await c.connect();
      try {
        const res = (await c.query(sql)) as unknown;
        const last = (Array.isArray(res) ? res.at(-1) : res) as { rows?: Record<string, unknown>[] } | undefined;
        return last?.rows ?? [];
      } finally {
        await c.end();
      }
    };
    const createDatabase = async (name: string) => {
      await admin(`CREATE DATABASE ${escapeIdentifier(name)} OWNER ${escapeIdentifier(user)}`);
    };
    await admin(`CREATE ROLE ${escapeIdentifier(user)} LOGIN PASSWORD ${escapeLiteral(password)}`);
    await createDatabase(database);

    const halt = async (signal: 'SIGINT' | 'SIGQUIT') => {
      const c = server.child;
      if (!c) return;
      c.kill(signal);
      if (!(await waitExit(c, 15_000))) {
        c.kill('SIGKILL');
        await waitExit(c, 5000);
      }
      server.child = null;
    };
    let stopped = false;
    return {
      host: '127.0.0.1',
      port,
      database,
      user,
      password,
      url: `postgres://${encodeURIComponent(user)}@127.0.0.1:${port}/${encodeURIComponent(database)}`,
      env: { PGPASSWORD: password },
      ...(ca ? { caFile: ca.caFile, caPem: ca.caPem } : {}),
      version,
      dir,
      logFile,
      admin,
      createDatabase,
      async restart({ mode = 'immediate' } = {}) {
        if (stopped) throw new Error('restart() after stop()');
        // what pg_ctl restart -m does (SIGQUIT = immediate, SIGINT = fast), but the postmaster stays our child
        await halt(mode === 'immediate' ? 'SIGQUIT' : 'SIGINT');
        const clash = await launch();
        if (clash !== null) throw new Error(`postgres could not get its port ${port} back\n${clash.slice(-3000)}`);
      },
      async dumpDataOnly(db = database) {
        const { stdout } = await run(bins.pgDump, ['--data-only', '-h', dir, '-p', String(port), '-U', SUPERUSER, db], {
          maxBuffer: 256 << 20,
        });
        return stdout;
      },
      log: () => readFile(logFile, 'utf8').catch(() => ''),
      async stop() {
        if (stopped) return;
        stopped = true;
        await halt('SIGINT');
        if (!keep) await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    if (server.child) {
      server.child.kill('SIGQUIT');
      await waitExit(server.child, 5000);
    }
    if (!keep) await rm(dir, { recursive: true, force: true });
    throw err;
  }
}
