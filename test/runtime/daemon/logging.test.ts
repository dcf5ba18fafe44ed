/**
 * Redaction at the log sink: every form of a registered secret (raw, JSON-escaped, URL-encoded, base64 at any byte
 * offset, the SASL AUTH PLAIN and XOAUTH2 blobs) is gone from what pino writes, plus `redact` paths, the readable
 * terminal format and imapflow's quieter levels.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createLogging, prettyLine } from '../../../src/runtime/daemon/logging.js';
import { imapLogger } from '../../../src/adapters/imap-log.js';
import { base64Cores, REDACTED, SecretScrubber } from '../../../src/runtime/daemon/scrubber.js';

const CANARY = 'CANARY-pass/w+rd "7f3a9d"';
const USER = 'support@example.com';

function capture(level = 'trace', pretty = false) {
  const lines: string[] = [];
  const logging = createLogging({ level, pretty, out: { write: (t: string) => lines.push(t) } });
  return { ...logging, text: () => lines.join('') };
}

const forms = (secret: string): Record<string, string> => ({
  raw: secret,
  urlEncoded: encodeURIComponent(secret),
  formEncoded: new URLSearchParams({ p: secret }).toString(),
  authPlain: Buffer.from(`\0${USER}\0${secret}`).toString('base64'),
  xoauth2: Buffer.from(`user=${USER}\x01auth=Bearer ${secret}\x01\x01`).toString('base64'),
  // the secret inside a larger base64 blob at each of the three byte offsets, without knowing what precedes it
  offset0: Buffer.from(`abc${secret}xyz`).toString('base64'),
  offset1: Buffer.from(`ab${secret}xyz`).toString('base64'),
  offset2: Buffer.from(`a${secret}xyz`).toString('base64'),
});

function leaks(text: string, secret: string): string[] {
  const found = base64Cores(secret).filter((core) => text.includes(core));
  if (text.includes(secret)) found.push('raw');
  if (text.includes(encodeURIComponent(secret))) found.push('url');
  if (text.includes(JSON.stringify(secret).slice(1, -1))) found.push('json');
  return found;
}

test('the test can fail: without registration every form leaks', () => {
  const { log, text } = capture();
  log.info(forms(CANARY), 'unregistered');
  assert.ok(leaks(text(), CANARY).length >= 4, text());
});

test('a registered secret is scrubbed in every form, in fields and in messages', () => {
  const { log, scrubber, text } = capture();
  scrubber.add(CANARY, USER);
  const f = forms(CANARY);
  log.info(f, `C: AUTHENTICATE PLAIN ${f.authPlain}`);
  log.child({ server: 'imap/support', loop: 'poll' }).trace({ data: f.offset2 }, `login ${CANARY}`);
  const out = text();
  assert.equal(leaks(out, CANARY), [], out);
  for (const [name, value] of Object.entries(f)) assert.not.ok(out.includes(value), `${name} leaked: ${out}`);
  assert.ok(out.includes(REDACTED));
  assert.ok(out.includes('"server":"imap/support"') && out.includes('"loop":"poll"'), 'child bindings are kept');
});

test('the resolver hook: a value registered without user is still found inside SASL blobs', () => {
  const scrubber = new SecretScrubber();
  scrubber.add('s3cr3t-token-value-1234');
  const blob = Buffer.from(`user=someone@example.com\x01auth=Bearer s3cr3t-token-value-1234\x01\x01`).toString(
    'base64',
  );
  const out = scrubber.scrub(`AUTHENTICATE XOAUTH2 ${blob}`);
  assert.not.ok(out.includes(blob));
  assert.equal(leaks(out, 's3cr3t-token-value-1234'), []);
  assert.ok(out.startsWith('AUTHENTICATE XOAUTH2 '), 'unrelated text stays');
});

test('registering again adds nothing; a secret containing another is replaced whole', () => {
  const scrubber = new SecretScrubber();
  scrubber.add('hunter2-and-more', 'a@example.com');
  const size = scrubber.size;
  for (let i = 0; i < 3; i++) scrubber.add('hunter2-and-more', 'a@example.com');
  assert.is(scrubber.size, size);
  scrubber.add('hunter2');
  assert.is(scrubber.scrub('pw=hunter2-and-more, old=hunter2'), `pw=${REDACTED}, old=${REDACTED}`);
});

test('redact paths cover credential-shaped fields whatever their value', () => {
  const { log, text } = capture();
  log.info(
    {
      auth: { user: USER, pass: 'p1', password: 'p2', accessToken: 't1', refreshToken: 't2', clientSecret: 't3' },
      password: 'p3',
    },
    'fields',
  );
  const out = text();
  for (const v of ['"p1"', '"p2"', '"p3"', '"t1"', '"t2"', '"t3"']) assert.not.ok(out.includes(v), `${v} in ${out}`);
  assert.ok(out.includes(USER));
});

test('terminal output is one readable line per entry, also scrubbed', () => {
  const { log, scrubber, text } = capture('info', true);
  scrubber.add(CANARY, USER);
  log.child({ server: 'imap/support', loop: 'poll' }).warn({ class: 'auth' }, `auth failed for ${CANARY}`);
  const out = text();
  assert.match(
    out,
    /^\d\d:\d\d:\d\d\.\d{3} {2}WARN {3}imap\/support poll {2}auth failed for \[REDACTED\] {2}class="auth"\n$/,
  );
  assert.is(prettyLine('not json'), 'not json');
});

test("imapflow's info becomes debug and its debug trace", () => {
  const { log, text } = capture('debug');
  const imap = imapLogger(log);
  imap.info({ msg: 'C: SELECT INBOX' });
  imap.debug({ msg: 'S: * OK' });
  imap.warn({ msg: 'connection error' });
  const entries = text()
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { level: number; msg: string; component: string });
  assert.equal(
    entries.map((e) => [e.level, e.msg]),
    [
      [20, 'C: SELECT INBOX'],
      [40, 'connection error'],
    ],
  );
  assert.is(entries[0]!.component, 'imapflow');
  // imapflow asks before it serializes a response for the log: at debug, its debug and trace are off
  assert.equal(
    ['trace', 'debug', 'info', 'warn'].map((l) => imap.isLevelEnabled(l)),
    [false, false, true, true],
  );
  assert.ok(imapLogger(capture('trace').log).isLevelEnabled('trace'));
});

test.run();
