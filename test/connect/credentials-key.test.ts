/**
 * The credentials key: read like a secret, created once (0600) when it is the store's own, 32 bytes of base64 or
 * refused; identities that depend on the value and the key only; AES-256-GCM that refuses what was changed.
 */
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CredentialsKey, loadCredentialsKey } from '../../src/connect/credentials-key.js';

let root: string;
test.before(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'mailctl-key-'));
});
test.after(async () => {
  await rm(root, { recursive: true, force: true });
});

const failure = (work: Promise<unknown>) =>
  work.then(
    () => 'resolved',
    (err: Error) => err.message,
  );

test("the store's own key file is created once, 0600, and read back the same", async () => {
  const file = path.join(root, 'credentials-key');
  const seen: string[] = [];
  const first = await loadCredentialsKey(file, { create: true, what: 'the key', onRead: (t) => seen.push(t) });
  assert.is((await stat(file)).mode & 0o777, 0o600);
  assert.is(Buffer.from((await readFile(file, 'utf8')).trim(), 'base64').length, 32);
  const again = await loadCredentialsKey(file, { create: true, what: 'the key' });
  assert.is(again.id, first.id);
  assert.is(again.identityOf('pw'), first.identityOf('pw'));
  assert.equal(seen, [(await readFile(file, 'utf8')).trim()]);
});

test('a given key file is never created, and one that is not 32 bytes of base64 is refused', async () => {
  const missing = path.join(root, 'given-missing');
  assert.match(
    await failure(loadCredentialsKey(missing, { create: false, what: '--credentials-key-file x' })),
    /does not exist/,
  );
  for (const text of ['short', Buffer.alloc(31).toString('base64'), `${Buffer.alloc(32).toString('base64')}!!`]) {
    await writeFile(path.join(root, 'bad'), text, { mode: 0o600 });
    assert.match(
      await failure(loadCredentialsKey(path.join(root, 'bad'), { create: false, what: '--credentials-key-file x' })),
      /--credentials-key-file x must hold 32 random bytes in base64/,
    );
  }
});

test('a key file others may read is used, with a warning', async () => {
  const file = path.join(root, 'readable-key');
  await writeFile(file, CredentialsKey.generate(), { mode: 0o644 });
  const warnings: string[] = [];
  await loadCredentialsKey(file, { create: false, what: 'k', warn: (m) => warnings.push(m) });
  assert.match(warnings.join('\n'), /readable by group or others/);
});

test('identities: equal values under one key are equal; other values or another key differ; no value shows', () => {
  const a = CredentialsKey.parse(CredentialsKey.generate(), 'a');
  const b = CredentialsKey.parse(CredentialsKey.generate(), 'b');
  assert.is(a.identityOf('Secret-1'), a.identityOf('Secret-1'));
  assert.is.not(a.identityOf('Secret-1'), a.identityOf('Secret-2'));
  assert.is.not(a.identityOf('Secret-1'), b.identityOf('Secret-1'));
  assert.is.not(a.id, b.id);
  assert.match(a.identityOf('Secret-1'), /^[0-9a-f]{64}$/);
});

test('sealing: a credential opens with its key and associated data only, and not once changed', () => {
  const key = CredentialsKey.parse(CredentialsKey.generate(), 'k');
  const sealed = key.seal('refresh-token-value', 'oauth2/0123456789ab');
  assert.not.match(JSON.stringify(sealed), 'refresh-token-value');
  assert.is(key.open(sealed, 'oauth2/0123456789ab'), 'refresh-token-value');
  assert.throws(() => key.open(sealed, 'oauth2/ffffffffffff'));
  assert.throws(() => CredentialsKey.parse(CredentialsKey.generate(), 'other').open(sealed, 'oauth2/0123456789ab'));
  const flipped = Buffer.from(sealed.ciphertext, 'base64');
  flipped[0]! ^= 1;
  assert.throws(() => key.open({ ...sealed, ciphertext: flipped.toString('base64') }, 'oauth2/0123456789ab'));
});

test.run();
