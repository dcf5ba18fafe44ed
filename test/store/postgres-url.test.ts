/** The store URL with libpq's meanings (src/store/postgres/url.ts): what is accepted, refused, and how TLS is set up. */
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { StoreError } from '../../src/store/errors.js';
import { describeStoreUrl, parseStoreUrl, passwordFor, tlsOptions } from '../../src/store/postgres/url.js';

const refusal = (url: string): StoreError => {
  try {
    parseStoreUrl(url);
  } catch (err) {
    assert.instance(err, StoreError);
    return err as StoreError;
  }
  throw new Error(`${url} was accepted`);
};

test('the parts of a URL; postgresql:// too; defaults as libpq has them', () => {
  assert.equal(parseStoreUrl('postgres://app@db.example.com:6543/mail'), {
    host: 'db.example.com',
    port: 6543,
    user: 'app',
    database: 'mail',
    sslmode: 'verify-full',
  });
  const short = parseStoreUrl('postgresql://app@db.example.com');
  assert.equal([short.port, short.database], [5432, 'app'], 'port 5432; the database is named after the user');
  assert.is(parseStoreUrl('postgres://a%40b@h/d%20b').user, 'a@b');
  assert.is(parseStoreUrl('postgres://a%40b@h/d%20b').database, 'd b');
  const v6 = parseStoreUrl('postgres://app@[::1]:5433/mail');
  assert.equal([v6.host, v6.port, v6.sslmode], ['::1', 5433, 'disable']);
  assert.equal(
    parseStoreUrl('postgres://app@h/d?sslmode=verify-ca&sslrootcert=/ca.pem&connect_timeout=3&application_name=x'),
    {
      host: 'h',
      port: 5432,
      user: 'app',
      database: 'd',
      sslmode: 'verify-ca',
      sslrootcert: '/ca.pem',
      connectTimeoutS: 3,
      applicationName: 'x',
    },
  );
});

test('sslmode defaults to verify-full, but to disable for loopback addresses and Unix sockets', () => {
  for (const host of ['127.0.0.1', '127.10.0.3', 'localhost', '[::1]'])
    assert.is(parseStoreUrl(`postgres://a@${host}/d`).sslmode, 'disable', host);
  for (const host of ['db', '10.0.0.5', '128.0.0.1', 'localhost.example.com', '[2001:db8::1]'])
    assert.is(parseStoreUrl(`postgres://a@${host}/d`).sslmode, 'verify-full', host);
  const socket = parseStoreUrl('postgres://a@%2Frun%2Fpostgresql/d');
  assert.equal([socket.host, socket.sslmode], ['/run/postgresql', 'disable']);
  assert.is(parseStoreUrl('postgres://a@/d?host=/run/postgresql').host, '/run/postgresql');
  assert.is(describeStoreUrl(socket), 'postgres://a@:5432/d?host=/run/postgresql');
});

test('a password in the URL is refused, and never repeated', () => {
  for (const url of ['postgres://app:s3cret-pw@h/d', 'postgres://app:@h/d', 'postgres://app@h/d?password=s3cret-pw']) {
    const err = refusal(url);
    assert.is(err.code, 'store-url');
    assert.match(err.message, 'PGPASSWORD or a PGPASSFILE');
    assert.not.match(err.message, 's3cret');
  }
});

test('refused: allow and prefer (silent plaintext), unknown modes and parameters, TLS over a socket, bad parts', () => {
  assert.match(refusal('postgres://a@h/d?sslmode=prefer').message, 'falls back to an unencrypted connection');
  assert.match(refusal('postgres://a@h/d?sslmode=allow').message, 'falls back to an unencrypted connection');
  assert.match(refusal('postgres://a@h/d?sslmode=verify').message, 'not one of disable, require');
  assert.match(refusal('postgres://a@h/d?sslcert=/c.pem').message, 'parameter "sslcert" is not supported');
  assert.match(refusal('postgres://a@/d?host=/run/pg&sslmode=require').message, 'cannot apply to a Unix socket');
  assert.match(refusal('postgres://a@h1,h2/d').message, 'malformed host');
  assert.match(refusal('postgres://a@h:99999/d').message, 'out of range');
  assert.match(refusal('postgres://a@h/d?connect_timeout=0').message, 'connect_timeout');
  assert.match(refusal('mysql://a@h/d').message, 'postgres://USER@HOST:PORT/DATABASE');
  assert.match(refusal('postgres://a@/d').message, 'names no host');
});

test('TLS by mode: disable none; require unverified (verified as verify-ca with a root certificate); verify-ca skips the name; verify-full checks it', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'mailctl-url-'));
  try {
    const ca = path.join(dir, 'ca.pem');
    await writeFile(ca, '-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n');
    const tls = (query: string) => tlsOptions(parseStoreUrl(`postgres://a@db.example.com/d?${query}`));
    assert.is(tls('sslmode=disable'), false);
    assert.equal(tls('sslmode=require'), { rejectUnauthorized: false });
    const requireWithRoot = tls(`sslmode=require&sslrootcert=${ca}`) as Record<string, unknown>;
    assert.is(requireWithRoot.rejectUnauthorized, true);
    assert.type(requireWithRoot.checkServerIdentity, 'function');
    const verifyCa = tls(`sslmode=verify-ca&sslrootcert=${ca}`) as Record<string, unknown>;
    assert.is(verifyCa.rejectUnauthorized, true);
    assert.match(String(verifyCa.ca), 'BEGIN CERTIFICATE');
    assert.is((verifyCa.checkServerIdentity as () => unknown)(), undefined, 'any name');
    const verifyFull = tls(`sslmode=verify-full&sslrootcert=${ca}`) as Record<string, unknown>;
    assert.equal(Object.keys(verifyFull).sort(), ['ca', 'rejectUnauthorized'], "Node's own name check");
    assert.equal(tls('sslmode=verify-full&sslrootcert=system'), { rejectUnauthorized: true }, 'the system CAs');
    assert.equal(tls(''), { rejectUnauthorized: true }, 'the default for a remote host');
    assert.throws(() => tls(`sslmode=verify-full&sslrootcert=${dir}/missing.pem`), /cannot read sslrootcert/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('the password: PGPASSWORD, else the first matching passfile line (wildcards, escapes; ignored when others may read it)', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'mailctl-url-'));
  try {
    const url = parseStoreUrl('postgres://app@db.example.com:5432/mail');
    assert.is(passwordFor(url, { PGPASSWORD: 'from-env' }), 'from-env');
    const file = path.join(dir, 'pgpass');
    await writeFile(
      file,
      [
        '# comment',
        'db.example.com:5432:other:app:not-this-db',
        'db.example.com:*:mail:app:pa\\:ss\\\\word',
        '*:*:*:*:too-late',
      ].join('\n'),
      { mode: 0o600 },
    );
    assert.is(passwordFor(url, { PGPASSFILE: file }), 'pa:ss\\word');
    assert.is(passwordFor(parseStoreUrl('postgres://x@y/z'), { PGPASSFILE: file }), 'too-late');
    const socket = parseStoreUrl('postgres://app@/mail?host=/run/pg');
    await writeFile(path.join(dir, '.pgpass'), 'localhost:5432:mail:app:via-socket\n', { mode: 0o600 });
    assert.is(passwordFor(socket, { HOME: dir }), 'via-socket', '~/.pgpass; a socket matches "localhost"');
    await writeFile(file, '*:*:*:*:readable\n');
    await chmod(file, 0o640);
    assert.is(passwordFor(url, { PGPASSFILE: file }), null);
    assert.is(passwordFor(url, {}), null);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test.run();
