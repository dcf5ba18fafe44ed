/** The private PostgreSQL of the test harness: logins, admin work, restarts, dumps, TLS. */
import { existsSync } from 'node:fs';
import net from 'node:net';
import { Client, DatabaseError, type ClientConfig } from 'pg';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startPostgres, type Postgres } from './postgres.js';
import { rejectionOf } from './expect.js';

let db: Postgres;
const clients: Client[] = [];

/** A connected client as the application role over TCP (closed after the suite). */
async function connect(extra: ClientConfig = {}): Promise<Client> {
  const c = new Client({
    host: db.host,
    port: db.port,
    user: db.user,
    password: db.password,
    database: db.database,
    ...extra,
  });
  c.on('error', () => {}); // a cut connection also emits 'error'; the tests look at the failed queries
  clients.push(c);
  await c.connect();
  return c;
}

test.before(async () => {
  const started = Date.now();
  db = await startPostgres();
  console.log(`startPostgres(): ${Date.now() - started} ms (PostgreSQL ${db.version})`);
});

test.after(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => {})));
  await db?.stop();
});

test('the app role logs in over TCP with PGPASSWORD; the URL carries no password', async () => {
  assert.is(db.url, `postgres://mailctl@127.0.0.1:${db.port}/mailctl`);
  assert.not.match(db.url, db.password);
  assert.ok(db.password.length >= 20);
  const saved = process.env.PGPASSWORD;
  process.env.PGPASSWORD = db.env.PGPASSWORD;
  try {
    const c = await connect({ connectionString: db.url, user: undefined, password: undefined, database: undefined });
    const { rows } = await c.query<{ usr: string; db: string; port: number }>(
      'select current_user as usr, current_database() as db, inet_server_port() as port',
    );
    assert.equal(rows[0], { usr: 'mailctl', db: 'mailctl', port: db.port });
  } finally {
    if (saved === undefined) delete process.env.PGPASSWORD;
    else process.env.PGPASSWORD = saved;
  }
});

test('a wrong password fails with 28P01', async () => {
  const err = await rejectionOf(connect({ password: `${db.password}x` }));
  assert.instance(err, DatabaseError);
  assert.is(err.code, '28P01');
});

test('admin(): superuser over the socket; the app role is no superuser and owns its database', async () => {
  const [me] = await db.admin('select current_user as usr, inet_server_port() as port');
  assert.equal(me, { usr: 'postgres', port: null }, 'Unix socket, so no server port');
  const rows = await db.admin(
    `select r.rolsuper, pg_get_userbyid(d.datdba) as owner from pg_roles r, pg_database d
     where r.rolname = 'mailctl' and d.datname = 'mailctl'`,
  );
  assert.equal(rows, [{ rolsuper: false, owner: 'mailctl' }]);
  assert.equal(await db.admin('select 1 as a; select 2 as b'), [{ b: 2 }], 'rows of the last statement');
});

test('createDatabase(): the app role owns it and can create tables there', async () => {
  await db.createDatabase('second');
  const c = await connect({ database: 'second' });
  await c.query('create table t (x int)');
  const [row] = await db.admin(`select tableowner from pg_tables where tablename = 't'`, 'second');
  assert.equal(row, { tableowner: 'mailctl' });
});

test('restart immediate: open connections fail, committed data survives, uncommitted does not', async () => {
  const c = await connect();
  await c.query('create table survive (v text)');
  await c.query(`insert into survive values ('committed')`);
  const open = await connect();
  await open.query('begin');
  await open.query(`insert into survive values ('uncommitted')`);
  const pidBefore = (await c.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]?.pid;

  await db.restart({ mode: 'immediate' });

  const err = await rejectionOf(c.query('select 1'));
  assert.ok(err.message, 'the old connection is dead');
  await rejectionOf(open.query('commit'));
  const after = await connect();
  const { rows } = await after.query<{ v: string }>('select v from survive order by v');
  assert.equal(rows, [{ v: 'committed' }]);
  const pidAfter = (await after.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]?.pid;
  assert.is.not(pidAfter, pidBefore);
  assert.match(await db.log(), 'received immediate shutdown request');
  assert.match(await db.log(), 'database system was interrupted');
});

test('restart fast: a clean shutdown, same port', async () => {
  const c = await connect();
  await db.restart({ mode: 'fast' });
  await rejectionOf(c.query('select 1'));
  const after = await connect();
  assert.is((await after.query<{ port: number }>('select inet_server_port() as port')).rows[0]?.port, db.port);
  assert.match(await db.log(), 'received fast shutdown request');
});

test('dumpDataOnly(): the rows, not the schema', async () => {
  const c = await connect();
  await c.query('create table canary (v text)');
  await c.query(`insert into canary values ('canary-7f3a')`);
  const dump = await db.dumpDataOnly();
  assert.match(dump, 'canary-7f3a');
  assert.match(dump, /COPY public\.canary \(v\) FROM stdin;/);
  assert.not.match(dump, 'CREATE TABLE');
  assert.not.match(await db.dumpDataOnly('second'), 'canary-7f3a');
});

test('TLS: verified against the test CA by IP and name; an untrusting or plaintext client fails', async () => {
  const tls = await startPostgres({ tls: true });
  const base = { port: tls.port, user: tls.user, password: tls.password, database: tls.database };
  const tryClient = async (cfg: ClientConfig) => {
    const c = new Client({ ...base, ...cfg });
    c.on('error', () => {});
    try {
      await c.connect();
      const { rows } = await c.query<{ ssl: boolean }>('select ssl from pg_stat_ssl where pid = pg_backend_pid()');
      return rows[0]?.ssl;
    } finally {
      await c.end().catch(() => {});
    }
  };
  try {
    assert.ok(tls.caFile && existsSync(tls.caFile));
    const ca = tls.caPem;
    assert.is(await tryClient({ host: '127.0.0.1', ssl: { ca } }), true, 'verify-full against 127.0.0.1');
    assert.is(await tryClient({ host: 'localhost', ssl: { ca } }), true, 'verify-full against localhost');
    // verify-ca: the chain is checked, the name is not
    const other = { host: '127.0.0.1', ssl: { ca, servername: 'db.example.com' } };
    assert.is((await rejectionOf(tryClient(other))).code, 'ERR_TLS_CERT_ALTNAME_INVALID');
    assert.is(await tryClient({ ...other, ssl: { ...other.ssl, checkServerIdentity: () => undefined } }), true);

    const untrusting = await rejectionOf(tryClient({ host: '127.0.0.1', ssl: true }));
    assert.is(untrusting.code, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    const plain = await rejectionOf(tryClient({ host: '127.0.0.1', ssl: false }));
    assert.is(plain.code, '28000', 'hostssl only: no pg_hba.conf entry without encryption');
  } finally {
    await tls.stop();
  }
  assert.not.ok(existsSync(tls.dir), 'stop() removes the folder');
});

test('stop(): the server is gone and its folder too', async () => {
  const { dir, port } = db;
  await Promise.all(clients.splice(0).map((c) => c.end().catch(() => {})));
  await db.stop();
  assert.not.ok(existsSync(dir));
  const refused = await new Promise<string>((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => (s.destroy(), resolve('connected')));
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
  assert.is(refused, 'ECONNREFUSED');
});

test.run();
