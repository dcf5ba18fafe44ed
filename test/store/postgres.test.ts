/**
 * The store contract against the PostgreSQL store (one private PostgreSQL, one schema per test), then what only a
 * database store does: migrations (once, under concurrent starts; a newer schema refused), start-up errors that name
 * the store, unavailability while running (a restart, a partition that holds packets) and recovery, the lease and its
 * fencing, NOTIFY after a commit with rows, the token's hash only, TLS by sslmode, the passfile.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { STORE_TABLES } from '../../src/config/sinks.js';
import { LocalState } from '../../src/store/local.js';
import { LeaseLostError, StoreError, StoreUnavailableError } from '../../src/store/errors.js';
import {
  CHECKPOINT_FORMAT_VERSION,
  OUTBOX_FINISHED_KEPT,
  type Checkpoint,
  type MailboxRef,
  type Store,
} from '../../src/store/ports.js';
import { INBOUND_CHANNEL, LATEST_VERSION, openPostgresStore } from '../../src/store/postgres/index.js';
import { startPostgres, type Postgres } from '../harness/postgres.js';
import { startTcpProxy } from '../harness/tcp-proxy.js';
import { contractTests, LOCK_CHILD } from './contract.js';
import { rejectionOf } from '../harness/expect.js';
import { eventually } from '../harness/mailctl.js';
import { isOverdue } from '../../src/runtime/group/takeover.js';

const db: Postgres = await startPostgres();
process.env.PGPASSWORD = db.password; // the lock test's child process inherits it
const folders: string[] = [];
let schemas = 0;
let children = 0;

const localDir = async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'mailctl-pg-local-'));
  folders.push(dir);
  return dir;
};

/** Opens the store of `schema` (and a state folder of its own unless given), on `url` (default: the database). */
async function open(schema: string, o: { url?: string; dir?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Store> {
  return openPostgresStore({
    url: o.url ?? db.url,
    schema,
    local: new LocalState(o.dir ?? (await localDir())),
    env: o.env ?? { PGPASSWORD: db.password },
  });
}

contractTests('postgres', {
  async fresh() {
    const schema = `contract_${++schemas}`;
    const dir = await localDir();
    return { location: `${schema} ${dir}`, open: () => open(schema, { dir }) };
  },
  holdsQueueRows: true,
  token: 'given',
  // each child is another daemon: a state folder of its own, the same store
  lockChild: (location) => [
    '--import',
    'tsx',
    LOCK_CHILD,
    'postgres',
    db.url,
    location.split(' ')[0]!,
    `${location.split(' ')[1]}-other-${++children}`,
  ],
  cleanup: () => Promise.resolve(),
});

const mailbox: MailboxRef = { server: 'imap/a', type: 'imap', shortName: 'a', identity: 'id-a', folder: 'INBOX' };
const checkpoint = (lastUid: number): Checkpoint => ({
  formatVersion: CHECKPOINT_FORMAT_VERSION,
  server: mailbox.server,
  identity: mailbox.identity,
  folder: mailbox.folder,
  uidValidity: '7',
  lastUid,
  pending: {},
  copyIntent: null,
  quarantined: {},
  updatedAt: '',
});

/** An outbound message for smtp/a with the id `id`. */
const message = (id: string) => ({
  id,
  messageId: `<${id}@example.com>`,
  server: 'smtp/a',
  from: 'a@example.com',
  to: ['c@example.org'],
  cc: [],
  bcc: [],
  subject: 's',
  text: 't',
  kind: 'agent' as const,
  attachments: [],
  createdAt: new Date().toISOString(),
});

const t = suite('postgres store');
const opened: Store[] = [];
const track = async (p: Promise<Store>) => {
  const s = await p;
  opened.push(s);
  return s;
};
t.after(async () => {
  for (const s of opened) await s.close().catch(() => undefined);
  await db.stop();
  await Promise.all(folders.map((d) => rm(d, { recursive: true, force: true })));
});

t('migrations: a fresh schema gets exactly the store tables; two daemons starting together migrate once', async () => {
  await Promise.all([track(open('together')), track(open('together')), track(open('together'))]);
  const tables = await db.admin(
    `SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'together' ORDER BY 1`,
    db.database,
  );
  assert.equal(
    tables.map((r) => r.name),
    [...STORE_TABLES].sort(),
  );
  const versions = await db.admin(`SELECT version FROM together.migrations ORDER BY 1`, db.database);
  assert.equal(
    versions.map((r) => r.version),
    Array.from({ length: LATEST_VERSION }, (_, i) => i + 1),
  );
});

t('a schema newer than this mailctl knows is refused, naming the versions', async () => {
  await track(open('newer'));
  await db.admin(
    `INSERT INTO newer.migrations (version, name) VALUES (${LATEST_VERSION + 1}, 'from the future')`,
    db.database,
  );
  const err = await rejectionOf(open('newer'));
  assert.instance(err, StoreError);
  assert.is(err.code, 'store-schema-newer');
  assert.match(err.message, `version ${LATEST_VERSION + 1}, newer than this mailctl knows (${LATEST_VERSION})`);
});

t('start: an unreachable store and a wrong password are errors naming the store and the reason', async () => {
  const closed = await startTcpProxy({ host: '127.0.0.1', port: 1 });
  const port = closed.port;
  await closed.close(); // nothing listens there now
  const unreachable = await rejectionOf(open('x', { url: `postgres://mailctl@127.0.0.1:${port}/mailctl` }));
  assert.instance(unreachable, StoreUnavailableError);
  assert.match(unreachable.message, `postgres://mailctl@127.0.0.1:${port}/mailctl (schema x)`);
  assert.match(unreachable.message, 'connection refused (ECONNREFUSED)');
  const wrong = await rejectionOf(open('x', { env: { PGPASSWORD: `${db.password}-wrong` } }));
  assert.instance(wrong, StoreUnavailableError);
  assert.match(wrong.message, `postgres://mailctl@127.0.0.1:${db.port}/mailctl (schema x)`);
  assert.match(wrong.message, 'password authentication failed for user "mailctl" (SQLSTATE 28P01)');
  assert.not.match(wrong.message, db.password);
  const none = await rejectionOf(open('x', { env: {} }));
  assert.match(none.message, 'set PGPASSWORD or a PGPASSFILE');
});

t('a passfile (PGPASSFILE) gives the password; one that others may read is ignored, as libpq does', async () => {
  const dir = await localDir();
  const file = path.join(dir, 'pgpass');
  await writeFile(file, `# comment\nother:*:*:*:nope\n127.0.0.1:${db.port}:*:mailctl:${db.password}\n`, {
    mode: 0o600,
  });
  await track(open('passfile', { env: { PGPASSFILE: file } }));
  await writeFile(path.join(dir, 'open'), `*:*:*:*:${db.password}\n`, { mode: 0o644 });
  const ignored = await rejectionOf(open('passfile', { env: { PGPASSFILE: path.join(dir, 'open') } }));
  assert.match(ignored.message, 'set PGPASSWORD or a PGPASSFILE');
});

t('a database restart: calls fail as unavailable, the store says why, and it answers again by itself', async () => {
  const store = await track(open('restart'));
  await store.inbound.commit(mailbox, { checkpoint: checkpoint(1) });
  assert.is(store.health.problem(), null);
  // a transaction open across the restart (exclusive holds one while its function runs)
  const err = await rejectionOf(
    store.credentials.exclusive('oauth2/0123456789ab', () => db.restart({ mode: 'immediate' })),
  );
  assert.instance(err, StoreUnavailableError);
  assert.match(err.message, 'the store postgres://mailctl@127.0.0.1');
  assert.ok(store.health.problem(), 'the store knows it is unavailable');
  await store.health.whenAvailable();
  assert.is(store.health.problem(), null);
  await store.inbound.commit(mailbox, { checkpoint: checkpoint(3) });
  assert.is((await store.inbound.load(mailbox))?.lastUid, 3);
});

t('a partition that holds packets: a call fails within the query timeout, and recovers after it heals', async () => {
  const proxy = await startTcpProxy({ host: db.host, port: db.port });
  try {
    const store = await track(open('partition', { url: `postgres://mailctl@127.0.0.1:${proxy.port}/mailctl` }));
    await store.inbound.commit(mailbox, { checkpoint: checkpoint(1) });
    proxy.blackhole();
    const started = Date.now();
    const err = await rejectionOf(store.inbound.load(mailbox));
    assert.instance(err, StoreUnavailableError);
    assert.ok(Date.now() - started < 15_000, `failed after ${Date.now() - started} ms`);
    assert.ok(store.health.problem());
    proxy.heal();
    await store.health.whenAvailable();
    assert.is((await store.inbound.load(mailbox))?.lastUid, 1);
  } finally {
    await proxy.close();
  }
});

t('the lease: a daemon whose lease was taken over is fenced off; its writes fail and it is told', async () => {
  const store = await track(open('fenced'));
  const lock = await store.lock();
  const lost: LeaseLostError[] = [];
  lock.onLost((err) => lost.push(err));
  await store.inbound.commit(mailbox, { checkpoint: checkpoint(1) });
  // what another daemon does once this one's lease expired
  await db.admin(`UPDATE fenced.leases SET holder = 'another', epoch = epoch + 1`, db.database);
  const err = await rejectionOf(store.inbound.commit(mailbox, { checkpoint: checkpoint(2) }));
  assert.instance(err, LeaseLostError);
  assert.is(lost.length, 1);
  assert.is((await store.inbound.load(mailbox))?.lastUid, 1, 'the fenced write changed nothing');
  await lock.release();
});

const member = (id: string) => ({ id, pid: process.pid, host: 'h', url: `http://${id}`, ttlS: 3, sinkShared: false });

t(
  'a group: one live process per replica id; a mailbox lease is taken with epoch + 1, and the old holder is fenced off',
  async () => {
    const a = await track(open('group_fence'));
    const b = await track(open('group_fence'));
    await a.group!.join(member('a'));
    const refused = await rejectionOf(
      (await track(open('group_fence'))).group!.join(member('a')), // another state folder, the same id, a live row
    );
    assert.is(refused.code, 'lock-held');
    await b.group!.join(member('b'));
    const fenced: string[] = [];
    a.group!.onFenced((name) => fenced.push(name));
    const [held] = await a.group!.acquire(['imap/a']);
    assert.equal(held, { name: 'imap/a', epoch: 1 });
    a.group!.hold([held!]);
    assert.equal(await b.group!.acquire(['imap/a']), [], 'a live lease is not taken');
    await a.inbound.commit(mailbox, { checkpoint: checkpoint(1) });
    // a's heartbeat renews it; then it stops renewing (frozen): the lease expires by the database's clock
    assert.equal((await a.group!.heartbeat(null)).leases, [{ name: 'imap/a', epoch: 1 }]);
    await db.admin(`UPDATE group_fence.leases SET expires_at = now() WHERE name = 'imap/a'`, db.database);
    const [taken] = await b.group!.acquire(['imap/a']);
    assert.equal(taken, { name: 'imap/a', epoch: 2 });
    b.group!.hold([taken!]);
    const err = await rejectionOf(a.inbound.commit(mailbox, { checkpoint: checkpoint(2) }));
    assert.is(err.code, 'fenced');
    assert.equal(fenced, ['imap/a'], 'the fenced write is reported (the metric, the loop stops)');
    assert.is((await b.inbound.load(mailbox))?.lastUid, 1, 'the fenced write changed nothing');
    await b.inbound.commit(mailbox, { checkpoint: checkpoint(3) });
    assert.equal((await a.group!.heartbeat(null)).leases, [], 'a learns at its next heartbeat that it holds nothing');
    assert.is(
      await rejectionOf(a.inbound.commit(mailbox, { checkpoint: checkpoint(4) })).then((e) => e.code),
      'fenced',
    );
    await b.group!.leave();
    assert.equal((await a.group!.acquire(['imap/a']))[0]?.epoch, 3, 'a lease given up is taken at once');
    await a.group!.leave();
  },
);

t("a heartbeat is announced to the others and tells each other member's silence and TTL", async () => {
  const a = await track(open('group_beat'));
  const b = await track(open('group_beat'));
  await a.group!.join(member('a'));
  await b.group!.join(member('b'));
  const heard: string[] = [];
  await b.group!.listen((channel, payload) => channel === 'beat' && heard.push(payload));
  await eventually(async () => (await a.group!.heartbeat(null), heard.includes('a')), 5000, "a's heartbeat announced");
  const [peer] = (await b.group!.heartbeat(null)).peers;
  assert.is(peer?.id, 'a');
  assert.ok(peer!.silentS >= 0 && peer!.silentS < 2, `just heard: ${peer!.silentS} s`);
  assert.is(peer!.ttlS, 3);
  assert.not.ok(isOverdue(peer!));
  // a falls silent: as if its last heartbeat were 2.2 s ago, past its renewal due at TTL/3 = 1 s and the margin
  await db.admin(
    `UPDATE group_beat.replicas SET heartbeat_at = now() - interval '2.2 s', expires_at = now() + interval '0.8 s'
     WHERE id = 'a'`,
    db.database,
  );
  const beat = await b.group!.heartbeat(null);
  assert.ok(isOverdue(beat.peers[0]!), JSON.stringify(beat.peers));
  assert.equal(beat.members, ['a', 'b'], 'overdue is not gone: its row has not expired');
  await a.group!.leave();
  assert.equal((await b.group!.heartbeat(null)).peers, [], 'a member that left is no peer');
  await b.group!.leave();
});

t('the lease fences the outbox too: a message accepted after a takeover is refused and not stored', async () => {
  const store = await track(open('fenced_outbox'));
  const lock = await store.lock();
  await store.outbox.load(Date.now());
  await store.outbox.accept([message('00000000-0000-4000-8000-000000000001')]);
  await db.admin(`UPDATE fenced_outbox.leases SET holder = 'another', epoch = epoch + 1`, db.database);
  assert.instance(
    await rejectionOf(store.outbox.accept([message('00000000-0000-4000-8000-000000000002')])),
    LeaseLostError,
  );
  const record = {
    id: '00000000-0000-4000-8000-000000000001',
    event: 'done' as const,
    at: new Date().toISOString(),
    messageId: '<x>',
    server: 'smtp/a',
  };
  assert.instance(await rejectionOf(store.outbox.record([record])), LeaseLostError);
  const rows = await db.admin(`SELECT id, finished_at FROM fenced_outbox.outbox`, db.database);
  assert.equal(rows, [{ id: '00000000-0000-4000-8000-000000000001', finished_at: null }]);
  await lock.release();
});

t(
  'the outbox forgets finished messages beyond the newest it keeps while it runs, not only at the next load',
  async () => {
    const store = await track(open('outbox_trim'));
    await store.outbox.load(Date.now());
    const ids = Array.from(
      { length: OUTBOX_FINISHED_KEPT + 150 },
      (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
    );
    await store.outbox.accept(ids.map(message));
    const at = Date.now() - 60_000;
    await store.outbox.record(
      ids.map((id, i) => ({
        id,
        event: 'done' as const,
        at: new Date(at + i).toISOString(),
        messageId: `<${id}>`,
        server: 'smtp/a',
      })),
    );
    const [row] = await db.admin(`SELECT count(*)::int AS n, min(id) AS oldest FROM outbox_trim.outbox`, db.database);
    assert.equal(row, { n: OUTBOX_FINISHED_KEPT, oldest: ids[150] });
  },
);

t('a commit with rows notifies each queue once, after it commits', async () => {
  const store = await track(open('notify'));
  await store.inbound.prepareQueue('inbound_messages');
  const listener = new Client({ connectionString: db.url, password: db.password });
  await listener.connect();
  const seen: string[] = [];
  listener.on('notification', (n) => seen.push(n.payload ?? ''));
  await listener.query(`LISTEN ${INBOUND_CHANNEL}`);
  const row = (uid: number, queue: string) => ({
    table: 'inbound_messages',
    key: `a.7.${uid}.00000000`,
    queue,
    server: 'imap/a',
    folder: 'INBOX',
    uidValidity: '7',
    uid,
    messageId: `<${uid}@x>`,
    from: ['c@example.org'],
    to: ['a@example.com', 'b@example.com'],
    cc: [],
    subject: 'Hello',
    date: '2026-12-01T10:00:00.000Z',
    autoReply: false,
    receivedAt: new Date().toISOString(),
    source: Buffer.from(`Subject: Hello ${uid}\r\n\r\nbody\r\n`),
  });
  try {
    await store.inbound.commit(mailbox, {
      checkpoint: checkpoint(3),
      rows: [row(1, 'billing'), row(2, 'general'), row(3, 'billing')],
    });
    for (let i = 0; i < 50 && seen.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(
      seen.map((p) => JSON.parse(p) as unknown).sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))),
      [
        { schema: 'notify', table: 'inbound_messages', queue: 'billing' },
        { schema: 'notify', table: 'inbound_messages', queue: 'general' },
      ],
    );
    const rows = await db.admin(
      `SELECT key, queue, uid_validity, uid, from_addr, to_addrs, source, claimed_at
       FROM notify.inbound_messages ORDER BY uid`,
      db.database,
    );
    assert.equal(rows[1], {
      key: 'a.7.2.00000000',
      queue: 'general',
      uid_validity: '7',
      uid: '2',
      from_addr: 'c@example.org',
      to_addrs: ['a@example.com', 'b@example.com'],
      source: Buffer.from('Subject: Hello 2\r\n\r\nbody\r\n'),
      claimed_at: null,
    });
  } finally {
    await listener.end();
  }
});

t('the API token: the database keeps its hash only', async () => {
  const store = await track(open('token'));
  const token = 'canary-token-5f1d0c8e2b7a4e61a9d3';
  await store.lock().then(async (lock) => {
    await store.token.establish(token);
    await lock.release();
  });
  const dump = await db.dumpDataOnly();
  assert.not.match(dump, token);
  assert.match(dump, (await import('node:crypto')).createHash('sha256').update(token).digest('hex'));
});

t(
  'TLS by sslmode (libpq meanings): verify-full and verify-ca need the CA, require does not, disable is refused',
  async () => {
    const tls = await startPostgres({ tls: true });
    const env = { PGPASSWORD: tls.password };
    const base = `postgres://mailctl@localhost:${tls.port}/mailctl`;
    const tryOpen = (query: string) => track(open('tls', { url: `${base}?${query}`, env }));
    try {
      await tryOpen(`sslmode=verify-full&sslrootcert=${tls.caFile}`);
      await tryOpen(`sslmode=verify-ca&sslrootcert=${tls.caFile}`);
      await tryOpen('sslmode=require');
      const untrusted = await rejectionOf(tryOpen('sslmode=verify-full'));
      assert.instance(untrusted, StoreUnavailableError);
      assert.match(untrusted.message, 'TLS:');
      // localhost is loopback: no TLS unless asked for, and this server accepts none without it
      const plain = await rejectionOf(tryOpen(''));
      assert.match(plain.message, 'no pg_hba.conf entry');
    } finally {
      await tls.stop();
    }
  },
);

t.run();
