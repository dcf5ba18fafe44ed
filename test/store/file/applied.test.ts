/** The file store's apply log is rotated (10 MiB, 3 old files kept): it never grows without bound. */
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  APPLY_LOG_FILE,
  APPLY_LOG_KEEP,
  APPLY_LOG_ROTATE_BYTES,
  FileAppliedStore,
} from '../../../src/store/file/applied.js';

let dir: string;

test.before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'mailctl-applied-'));
});

test.after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const entry = (n: number) => ({
  time: new Date(1_800_000_000_000 + n * 1000).toISOString(),
  trigger: 'watch',
  revision: null,
  planDigest: `digest-${n}`,
  result: 'applied',
  servers: { 'imap/support': 'update' },
});

test('the defaults: rotated at 10 MiB, three old files kept', () => {
  assert.is(APPLY_LOG_ROTATE_BYTES, 10 * 1024 * 1024);
  assert.is(APPLY_LOG_KEEP, 3);
});

test('rotation keeps the newest files, none beyond its size; recent entries read across them', async () => {
  const bytes = 2048;
  const store = new FileAppliedStore(dir, { bytes, keep: 3 });
  const N = 120; // ~20 files' worth
  for (let n = 1; n <= N; n++) await store.appendLog(entry(n));
  const files = (await readdir(dir)).filter((f) => f.startsWith(APPLY_LOG_FILE)).sort();
  assert.equal(files, [APPLY_LOG_FILE, `${APPLY_LOG_FILE}.1`, `${APPLY_LOG_FILE}.2`, `${APPLY_LOG_FILE}.3`]);
  for (const f of files) assert.ok((await stat(path.join(dir, f))).size <= bytes, f);
  const recent = await store.recentLog(30);
  assert.equal(
    recent.map((e) => e.planDigest),
    Array.from({ length: 30 }, (_, i) => `digest-${N - 29 + i}`),
  );
  const all = await store.recentLog(10_000);
  assert.ok(all.length < N && all.length > 3 * 10, `${all.length} entries kept`);
  assert.is(all.at(-1)?.planDigest, `digest-${N}`);
});

test.run();
