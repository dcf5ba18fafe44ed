// The TypeScript types in src/generated are generated from schema/*.schema.json and committed: fail when they are stale.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const REPO = fileURLToPath(new URL('../../', import.meta.url));

test('src/generated matches schema/ (node scripts/gen-types.mjs --check)', () => {
  const run = spawnSync(process.execPath, ['scripts/gen-types.mjs', '--check'], {
    cwd: REPO,
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.is(
    run.status,
    0,
    `gen-types --check failed (run \`npm run gen:types\` and commit src/generated):\n${run.stdout}${run.stderr}`,
  );
});

test.run();
