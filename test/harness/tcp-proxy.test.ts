/** The partition proxy of the test harness, between node-postgres and the private PostgreSQL (and a plain echo server). */
import net from 'node:net';
import { Client, type ClientConfig } from 'pg';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startPostgres, type Postgres } from './postgres.js';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js';

let db: Postgres;
let proxy: TcpProxy;
const clients: Client[] = [];

function client(extra: ClientConfig = {}): Client {
  const c = new Client({
    host: proxy.host,
    port: proxy.port,
    user: db.user,
    password: db.password,
    database: db.database,
    ...extra,
  });
  c.on('error', () => {}); // a cut connection also emits 'error'; the tests look at the failed calls
  clients.push(c);
  return c;
}

/** How a promise settles, and after how long; a test fails instead of hanging when it is still open after `ms`. */
async function settle(
  p: Promise<unknown>,
  ms: number,
): Promise<{ ok: boolean; error?: Error & { code?: string }; ms: number }> {
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still pending after ${ms} ms`)), ms);
  });
  try {
    await Promise.race([p, limit]);
    return { ok: true, ms: Date.now() - started };
  } catch (err) {
    const error = err as Error & { code?: string };
    if (/^still pending after/.test(error.message)) throw error;
    return { ok: false, error, ms: Date.now() - started };
  } finally {
    clearTimeout(timer);
  }
}

async function until(cond: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

const backendAlive = async (pid: number) =>
  (await db.admin(`select count(*)::int as n from pg_stat_activity where pid = ${pid}`))[0]?.n === 1;

test.before(async () => {
  // a backend busy in pg_sleep() notices a dead client only at this interval (otherwise when it next writes)
  db = await startPostgres({ extraConfig: "client_connection_check_interval = '100ms'" });
  proxy = await startTcpProxy({ host: db.host, port: db.port });
});

test.after.each(() => {
  proxy.heal();
});

test.after(async () => {
  await Promise.all(clients.map((c) => settle(c.end(), 2000).catch(() => {})));
  await proxy?.close();
  await db?.stop();
});

test('forwarding: queries go through and connections() counts them', async () => {
  const c = client();
  await c.connect();
  const { rows } = await c.query<{ port: number }>('select inet_server_port() as port');
  assert.equal(rows, [{ port: db.port }]);
  assert.is(proxy.connections(), 1);
  await c.end();
  await until(() => proxy.connections() === 0);
});

test('blackhole: query_timeout fires in time, nothing hangs, and end() returns at once', async () => {
  const c = client({ query_timeout: 500 });
  await c.connect();
  proxy.blackhole();
  const q = await settle(c.query('select 1'), 5000);
  assert.not.ok(q.ok);
  assert.is(q.error?.message, 'Query read timeout');
  assert.ok(q.ms >= 450 && q.ms < 1500, `failed after ${q.ms} ms`);
  assert.ok((await settle(c.end(), 1000)).ok, 'end() after a timed-out query destroys the socket');
});

test('blackhole: statement_timeout does not fire (the server cannot answer); held bytes go through at heal()', async () => {
  const c = client({ statement_timeout: 300 });
  await c.connect();
  proxy.blackhole();
  const q = c.query<{ x: number }>('select 42 as x');
  const pending = await settle(q, 1500).catch((err: Error) => err);
  assert.instance(pending, Error);
  assert.match((pending as Error).message, 'still pending after 1500 ms');
  proxy.heal();
  const healed = await settle(q, 2000);
  assert.ok(healed.ok, healed.error?.message);
  assert.equal((await q).rows, [{ x: 42 }]);
});

test('blackhole: a new connection hangs until connectionTimeoutMillis; after heal() a new client works', async () => {
  proxy.blackhole();
  const c = client({ connectionTimeoutMillis: 500 });
  const r = await settle(c.connect(), 5000);
  assert.not.ok(r.ok);
  assert.match(r.error?.message ?? '', /timeout/i);
  assert.ok(r.ms >= 450 && r.ms < 1500, `failed after ${r.ms} ms`);
  proxy.heal();
  const fresh = client({ connectionTimeoutMillis: 2000 });
  await fresh.connect();
  assert.equal((await fresh.query('select 1 as one')).rows, [{ one: 1 }]);
});

test('reset: an in-flight query gets ECONNRESET at once, the server loses the session, new connections are reset', async () => {
  const c = client();
  await c.connect();
  const pid = (await c.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
  const q = c.query('select pg_sleep(10)');
  await new Promise((r) => setTimeout(r, 100));
  proxy.reset();
  const r = await settle(q, 1000);
  assert.not.ok(r.ok);
  assert.is(r.error?.code, 'ECONNRESET');
  assert.ok(r.ms < 500, `failed after ${r.ms} ms`);
  assert.is(proxy.connections(), 0);
  // the server side got an RST too
  await until(async () => !(await backendAlive(pid)), 3000);

  const refused = await settle(client().connect(), 1000);
  assert.is(refused.error?.code, 'ECONNRESET');
  proxy.heal();
  const fresh = client();
  await fresh.connect();
  assert.equal((await fresh.query('select 2 as two')).rows, [{ two: 2 }]);
});

test('a plain TCP service: a large payload both ways (back-pressure) and half-closes go through', async () => {
  const echo = net.createServer({ allowHalfOpen: true }, (s) => {
    let n = 0;
    s.on('data', (d: Buffer) => (n += d.length));
    s.on('end', () => s.end(`got ${n}`)); // answers only after the client's FIN
  });
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
  const p = await startTcpProxy({ host: '127.0.0.1', port: (echo.address() as net.AddressInfo).port });
  try {
    const reply = await new Promise<string>((resolve, reject) => {
      const s = net.connect({ host: p.host, port: p.port, allowHalfOpen: true });
      let text = '';
      s.on('data', (d: Buffer) => (text += d.toString()));
      s.on('end', () => resolve(text));
      s.on('error', reject);
      s.end(Buffer.alloc(8 << 20, 1));
    });
    assert.is(reply, `got ${8 << 20}`);
  } finally {
    await p.close();
    echo.close();
  }
});

test('close(): every connection is cut and the port is closed', async () => {
  const p = await startTcpProxy({ host: db.host, port: db.port });
  const c = new Client({ host: p.host, port: p.port, user: db.user, password: db.password, database: db.database });
  c.on('error', () => {});
  await c.connect();
  const q = c.query('select pg_sleep(10)');
  await p.close();
  assert.is((await settle(q, 1000)).error?.code, 'ECONNRESET');
  const again = await settle(
    new Promise<void>((resolve, reject) => net.connect(p.port, '127.0.0.1', () => resolve()).on('error', reject)),
    1000,
  );
  assert.is(again.error?.code, 'ECONNREFUSED');
});

test.run();
