/**
 * Scrubbing what the daemon stores and answers: the texts that may quote a server (a failed server's reason, a retry's
 * error, a quarantine reason, the apply log's trigger, outbox replies) are scrubbed on the file store; configuration
 * (references, user names, bindings) is kept as written even when a password happens to be part of it, since plans
 * compare it.
 */
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { scrubAnswer } from '../../../src/runtime/daemon/http.js';
import { scrubbingStore } from '../../../src/runtime/daemon/scrubbed-store.js';
import { REDACTED, SecretScrubber } from '../../../src/runtime/daemon/scrubber.js';
import { openFileStore } from '../../../src/store/file/index.js';
import { LocalState } from '../../../src/store/local.js';
import { CHECKPOINT_FORMAT_VERSION, type AppliedRecord, type MailboxRef } from '../../../src/store/ports.js';
import { imapSpec } from '../../plan/specs.js';

const SECRET = 'support-pass/31d7+';
const USER = 'support@example.com';
const blob = Buffer.from(`\0${USER}\0${SECRET}`).toString('base64');
/** A reference whose path happens to contain the password. */
const REFERENCE = `\${file:/run/secrets/${SECRET}word}`;

let dir: string;
const scrubber = new SecretScrubber();
scrubber.add(SECRET, USER);

test.before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'mailctl-scrubbed-'));
});
test.after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function folderText(): Promise<string> {
  const names = await readdir(dir, { recursive: true });
  const files = await Promise.all(
    names.map(async (n) => ((await stat(path.join(dir, n))).isFile() ? readFile(path.join(dir, n), 'utf8') : '')),
  );
  return files.join('\n');
}

const record = (): AppliedRecord => {
  const spec = imapSpec('support', { auth: { type: 'basic', user: USER, password: REFERENCE } });
  const binding = { host: 'imap.example.com', port: 993, tls: true, allowPlaintext: false, boundBy: 'imap/support' };
  return {
    appliedAt: '2026-01-01T00:00:00Z',
    revision: null,
    desiredDigest: 'd',
    state: {
      servers: {
        'imap/support': {
          config: { spec },
          status: 'disabled',
          disabledReason: `verification failed: auth: 535 you sent AUTH PLAIN ${blob}`,
        },
      },
      bindings: { [REFERENCE]: [binding] },
    },
    identities: { keyId: 'k', bindings: { 'hmac-of-the-value': [binding] } },
  };
};

test('stored: reasons, errors, the trigger and outbox replies scrubbed; configuration as written', async () => {
  const store = scrubbingStore(await openFileStore(new LocalState(path.join(dir, 'state'))), scrubber);
  await store.applied.write(record());
  const mailbox: MailboxRef = {
    server: 'imap/support',
    type: 'imap',
    shortName: 'support',
    identity: 'x',
    folder: 'INBOX',
  };
  await store.inbound.commit(mailbox, {
    checkpoint: {
      formatVersion: CHECKPOINT_FORMAT_VERSION,
      server: mailbox.server,
      identity: mailbox.identity,
      folder: mailbox.folder,
      uidValidity: '1',
      lastUid: 2,
      pending: { '1': { attempts: 1, nextAttemptAt: 0, lastError: `webhook said ${encodeURIComponent(SECRET)}` } },
      copyIntent: null,
      quarantined: {
        '2': { reason: 'rejected', detail: `AUTH PLAIN ${blob}`, at: '2026-01-01T00:00:00Z', messageId: null },
      },
      updatedAt: '2026-01-01T00:00:00Z',
    },
  });
  await store.applied.appendLog({
    time: '2026-01-01T00:00:00Z',
    trigger: `cli ${SECRET}`,
    revision: null,
    planDigest: 'd',
    result: 'applied',
    servers: {},
  });
  await store.outbox.load(Date.now());
  await store.outbox.record([
    {
      id: 'm',
      event: 'failed',
      at: '2026-01-01T00:00:00Z',
      messageId: '<m@x>',
      server: 'smtp/a',
      reply: `554 ${blob}`,
    },
  ]);
  const stored = await store.applied.read();
  const expected = record();
  expected.state.servers['imap/support']!.disabledReason =
    `verification failed: auth: 535 you sent AUTH PLAIN ${REDACTED}`;
  assert.equal(stored, expected);
  const checkpoint = await store.inbound.load(mailbox);
  assert.is(checkpoint?.pending['1']?.lastError, `webhook said ${REDACTED}`);
  assert.is(checkpoint?.quarantined['2']?.detail, `AUTH PLAIN ${REDACTED}`);
  assert.is((await store.applied.recentLog(1))[0]?.trigger, `cli ${REDACTED}`);
  await store.outbox.close();
  const text = await folderText();
  for (const form of [blob, encodeURIComponent(SECRET), `cli ${SECRET}`]) assert.not.ok(text.includes(form), form);
});

test('answered: every string scrubbed but the configuration, in one pass', () => {
  const state = record().state;
  const answer = scrubAnswer({ formatVersion: '1', state, note: `quoted ${SECRET}`, list: [SECRET, 1, null] }, (t) =>
    scrubber.scrub(t),
  ) as any;
  assert.equal(answer.state.servers['imap/support'].config, state.servers['imap/support']!.config);
  assert.equal(answer.state.bindings, state.bindings);
  assert.match(answer.state.servers['imap/support'].disabledReason, /AUTH PLAIN \[REDACTED\]$/);
  assert.is(answer.note, `quoted ${REDACTED}`);
  assert.equal(answer.list, [REDACTED, 1, null]);
});

test.run();
