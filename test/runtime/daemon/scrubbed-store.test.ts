/**
 * The scrubbing wrapper around the store, on the file store: what inbound processing stores about a message (a retry's
 * last error, a quarantine reason) and the apply log's trigger reach the state folder scrubbed.
 */
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { scrubbingStore } from '../../../src/runtime/daemon/scrubbed-store.js';
import { REDACTED, SecretScrubber } from '../../../src/runtime/daemon/scrubber.js';
import { openFileStore } from '../../../src/store/file/index.js';
import { LocalState } from '../../../src/store/local.js';
import { CHECKPOINT_FORMAT_VERSION, type MailboxRef } from '../../../src/store/ports.js';

const SECRET = 'Quarantine-Canary/31d7+';
const USER = 'support@example.com';
const blob = Buffer.from(`\0${USER}\0${SECRET}`).toString('base64');

let dir: string;
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

test('checkpoint errors, quarantine reasons and the apply log are stored scrubbed', async () => {
  const scrubber = new SecretScrubber();
  scrubber.add(SECRET, USER);
  const store = scrubbingStore(await openFileStore(new LocalState(path.join(dir, 'state'))), scrubber);
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
  const checkpoint = await store.inbound.load(mailbox);
  assert.is(checkpoint?.pending['1']?.lastError, `webhook said ${REDACTED}`);
  assert.is(checkpoint?.quarantined['2']?.detail, `AUTH PLAIN ${REDACTED}`);
  assert.is((await store.applied.recentLog(1))[0]?.trigger, `cli ${REDACTED}`);
  const text = await folderText();
  for (const form of [SECRET, blob, encodeURIComponent(SECRET)]) assert.not.ok(text.includes(form), form);
});

test.run();
