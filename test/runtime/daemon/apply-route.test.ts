/** `POST /v1/apply` reads the request defensively: the trigger it records in the apply log is at most 1 KiB. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { ApplyRequest, ApplyResult } from '../../../src/api/apply.js';
import { applyRoutes } from '../../../src/runtime/daemon/routes/apply.js';

test('a trigger of any length is recorded at most 1 KiB', async () => {
  const asked: ApplyRequest[] = [];
  const routes = applyRoutes({
    reconcile: (request) => {
      asked.push(request);
      return Promise.resolve({ outcome: 'no-changes' } as ApplyResult);
    },
    state: () => ({ servers: {}, bindings: {}, revision: null }),
    storeKind: 'file',
    status: () => {
      throw new Error('not asked');
    },
    draining: () => false,
  });
  const apply = routes.find((r) => r.method === 'POST' && r.path === '/v1/apply')!;
  const url = new URL('http://localhost/v1/apply');
  const req = { headers: {} } as never; // a plain JSON answer, no progress stream
  await apply.handler(req, { trigger: 'ci-job' }, url);
  await apply.handler(req, { trigger: 't'.repeat(5_000_000) }, url);
  assert.is(asked[0]!.trigger, 'ci-job');
  assert.ok(Buffer.byteLength(asked[1]!.trigger) <= 1024);
});

test.run();
